"""Turn what the create runbook was given into a :class:`~shared.create.policy.CreateRequest` (pure:
no I/O; :func:`request_from_args` is the whole of the runbook's request parsing).

Two sources:

- the Teams flow: the output of Power Automate's "Post adaptive card and wait for a response",
  passed on as-is, plus an ``approval`` object when the flow ran an approval step::

    {"data": {"action": "request_compute_instance", "workspace": "<sub>/<rg>/<ws>", "name": "...",
              "size": "Standard_DS3_v2", "idle_minutes": "60", "cost_center": "CC-4711"},
     "responder": {"objectId", "tenantId", "userPrincipalName", "email", "displayName"},
     "messageId": "...",
     "approval": {"approver": {"objectId", "userPrincipalName"}, "outcome": "Approve"}}

  The requester and the user the CI is assigned to come from ``responder`` (filled in by Teams),
  never from card inputs; ``responder``, ``messageId`` and ``approval`` are read by
  :func:`shared.teams.inbound.read_teams_response`, the one reader of a Teams response. It arrives
  as the webhook's envelope (armoured or not) or ``--request-b64`` (:mod:`shared.automation.webhook`);
- ordinary parameters (an operator, a schedule, the Automation "Create job" API): trusted as given.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple

from shared.automation.webhook import SOURCE_DIRECT, extract_request
from shared.create.policy import NAME_CARD_REGEX, CreateRequest, match_size
from shared.errors import UsageError
from shared.models import GUID as _GUID
from shared.models import WorkspaceRef
from shared.sections import IDLE_MIN_MINUTES, CreateSection
from shared.settings import Settings
from shared.tags import clean_text
from shared.teams.inbound import Approval, check_shared_secret, read_teams_response, read_text

log = logging.getLogger(__name__)

ACTION = "request_compute_instance"

# The parameters that describe a request field by field (an operator, a schedule): not with a Teams body.
FIELD_FLAGS = (
    "name",
    "size",
    "user_object_id",
    "user_tenant_id",
    "requester",
    "owner",
    "approver",
    "cost_center",
    "idle_minutes",
    "workspace_key",
    "workspace_name",
)


class RequestError(ValueError):
    """The request cannot be read; ``reasons`` lists every problem."""

    def __init__(self, reasons: List[str]):
        super().__init__("; ".join(reasons))
        self.reasons = tuple(reasons)


def parse_workspace_key(key: str) -> WorkspaceRef:
    """``<subscriptionId>/<resourceGroup>/<workspaceName>`` → WorkspaceRef; ValueError if malformed."""
    parts = [p.strip() for p in (key or "").split("/")]
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"workspace '{clean_text(key, 80)}' must be written as <subscriptionId>/<resourceGroup>/<workspaceName>")
    if not _GUID.match(parts[0]):
        raise ValueError(f"workspace '{clean_text(key, 80)}': '{clean_text(parts[0], 60)}' is not a subscription id (a GUID)")
    return WorkspaceRef(parts[0].lower(), parts[1], parts[2])


def parse_idle_minutes(value: Any) -> Optional[int]:
    """Idle minutes from a card (a number, or digits as text: Teams sends inputs as text); None if empty."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError("idle_minutes must be a whole number of minutes")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = str(value).strip()
    if not text.isdigit() or len(text) > 6:
        raise ValueError(f"idle_minutes '{clean_text(text, 40)}' is not a whole number of minutes")
    return int(text)


def request_from_teams(body: Any) -> CreateRequest:
    """Read a Teams flow body; raises RequestError with every problem found."""
    reasons: List[str] = []
    envelope = read_teams_response(body, reasons, require_tenant=True, require_name=True)
    if envelope is None:
        raise RequestError(reasons)
    data = envelope.data
    action = _text(data, "action", reasons)
    if action and action != ACTION:
        reasons.append(f"unknown action '{clean_text(action, 60)}': this runbook handles '{ACTION}'")
    workspace = None
    key = _text(data, "workspace", reasons, required=True)
    if key:
        try:
            workspace = parse_workspace_key(key)
        except ValueError as exc:
            reasons.append(str(exc))
    name = _text(data, "name", reasons, required=True) or ""
    size = _text(data, "size", reasons, required=True) or ""
    cost_center = _text(data, "cost_center", reasons) or ""
    idle = None
    try:
        idle = parse_idle_minutes(data.get("idle_minutes"))
    except ValueError as exc:
        reasons.append(str(exc))
    if reasons:
        raise RequestError(reasons)
    who = envelope.responder
    assert workspace is not None and who is not None
    upn = who.user_principal_name or who.email
    return CreateRequest(
        workspace=workspace,
        name=name,
        size=size,
        user_object_id=who.object_id,
        user_tenant_id=who.tenant_id,
        requester=upn,
        owner=upn,  # the owner tag is the responder too: card inputs never name people
        cost_center=cost_center,
        idle_minutes=idle,
        approval=envelope.approval,
        request_id=envelope.message_id,
    )


def _text(data: Any, key: str, reasons: List[str], *, required: bool = False) -> Optional[str]:
    return read_text(data, key, reasons, required=required)


def request_from_args(args: Any, loose: Sequence[Tuple[str, str]], settings: Settings, section: CreateSection) -> CreateRequest:
    """The request the runbook's parameters describe; raises UsageError, RequestError or
    shared.automation.webhook.WebhookInputError.

    ``loose`` holds what :func:`shared.automation.webhook.split_argv` set apart (the webhook's envelope
    or a WebhookData JSON value). A request that came through the webhook must carry the shared secret
    (anyone holding the webhook URL can post); one started through the authenticated job API need not.
    """
    if loose or args.request is not None or args.request_b64 is not None or args.webhook_data is not None:
        given = [f"--{f.replace('_', '-')}" for f in FIELD_FLAGS if getattr(args, f) is not None]
        if given:
            raise UsageError(f"a Teams request carries the whole request; do not combine it with {', '.join(given)}")
        inbound = extract_request(loose, webhook_data=args.webhook_data, request=args.request, request_b64=args.request_b64)
        if inbound.source != SOURCE_DIRECT:
            problem = check_shared_secret(inbound.headers, section.require_shared_secret, settings.teams.shared_secret)
            if problem:
                raise RequestError([problem])
        log.info("Request from %s (%s)", inbound.origin, inbound.source)
        return request_from_teams(inbound.body)
    missing = [f"--{f.replace('_', '-')}" for f in ("name", "size", "user_object_id", "user_tenant_id", "requester") if not getattr(args, f)]
    if missing:
        raise UsageError(f"missing {', '.join(missing)} (or pass the Teams body with --request-b64)")
    return CreateRequest(
        workspace=_workspace_from_args(args),
        name=args.name.strip(),
        size=args.size.strip(),
        user_object_id=args.user_object_id.strip().lower(),
        user_tenant_id=args.user_tenant_id.strip().lower(),
        requester=args.requester.strip(),
        owner=(args.owner or "").strip(),
        cost_center=(args.cost_center or "").strip(),
        idle_minutes=args.idle_minutes,
        approval=approval_from_parameter(args.approver),
    )


def _workspace_from_args(args: Any) -> WorkspaceRef:
    if args.workspace_key:
        if args.workspace_name:
            raise UsageError("give the workspace once: --workspace-key or --workspace-name with --subscription/--resource-group")
        try:
            return parse_workspace_key(args.workspace_key)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    subs, rgs = args.subscription or [], args.resource_group or []
    if not args.workspace_name or len(subs) != 1 or len(rgs) != 1:
        raise UsageError("name the workspace: --workspace-key SUB/RG/WS, or --subscription, --resource-group and --workspace-name once each")
    return parse_workspace_key(f"{subs[0]}/{rgs[0]}/{args.workspace_name}")


def approval_from_parameter(approver: Optional[str]) -> Optional[Approval]:
    """``--approver`` (a UPN or an object id) as an approval given by the operator who ran the runbook."""
    if not approver or not approver.strip():
        return None
    value = approver.strip()
    if _GUID.match(value):
        return Approval(approver_object_id=value.lower())
    return Approval(approver_upn=clean_text(value))


def request_card_context(section: CreateSection, workspaces: Sequence[WorkspaceRef] = (), default_size: Optional[str] = None) -> Dict[str, Any]:
    """Context for ``adaptive_cards/compute_request.json.j2``: the choices the policy allows.

    Sizes that need approval say so in their title; pattern entries of ``allowed_sizes`` cannot be
    offered as choices and are left out.
    """
    sizes = []
    for size in section.choice_sizes():
        gated = match_size(size, section.sizes_needing_approval) is not None
        sizes.append({"title": f"{size} (needs approval)" if gated else size, "value": size})
    return {
        "workspaces": [{"title": f"{w.name} ({w.resource_group})", "value": w.key} for w in workspaces],
        "sizes": sizes,
        "default_size": default_size,
        "name_regex": NAME_CARD_REGEX,
        "default_idle_minutes": section.default_idle_minutes,
        "min_idle_minutes": IDLE_MIN_MINUTES,
        "max_idle_minutes": section.max_idle_minutes,
        "cost_center_required": section.require_cost_center,
    }
