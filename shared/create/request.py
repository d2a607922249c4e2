"""Turn what the create runbook was given into a :class:`~shared.create.policy.CreateRequest` (pure:
no I/O; :func:`shared.create.run.request_from_args` picks the source and calls these).

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
from typing import Any, Dict, List, Mapping, Optional, Sequence

from shared.create.policy import NAME_CARD_REGEX, CreateRequest, match_size
from shared.models import GUID as _GUID
from shared.models import WorkspaceRef, is_resource_group_name, is_workspace_name
from shared.sections import IDLE_MIN_MINUTES, CreateSection
from shared.tags import clean_text
from shared.teams.inbound import Approval, read_teams_response, read_text

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

# What the approval card's Approve / Reject buttons send (posted by the create runbook itself, answered by an
# approver in Teams): {"action": APPROVAL_ACTION, "outcome", "request": <the request's data>, "requester":
# <the requester's responder object>, "request_message_id", "comments"}; the approver is the ``responder``.
APPROVAL_ACTION = "compute_approval"


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
    # The names go into the ARM URL: anything but a well-formed name ("..", "?", "#", spaces, NUL)
    # could point the request somewhere else once the URL is normalised.
    if not is_resource_group_name(parts[1]):
        raise ValueError(f"workspace '{clean_text(key, 80)}': '{clean_text(parts[1], 60)}' is not a resource group name")
    if not is_workspace_name(parts[2]):
        raise ValueError(f"workspace '{clean_text(key, 80)}': '{clean_text(parts[2], 60)}' is not an Azure ML workspace name")
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
    """Read a Teams flow body; raises RequestError with every problem found.

    An approver's press on the approval card (``data.action`` :data:`APPROVAL_ACTION`) is read as the
    original request with ``approval`` = the presser (the Teams ``responder``), their outcome and comment.
    """
    reasons: List[str] = []
    if isinstance(body, Mapping) and isinstance(body.get("data"), Mapping) and body["data"].get("action") == APPROVAL_ACTION:
        return request_from_teams(approval_as_request(body))
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
        requester_email=who.email,
        owner=upn,  # the owner tag is the responder too: card inputs never name people
        cost_center=cost_center,
        idle_minutes=idle,
        approval=envelope.approval,
        request_id=envelope.message_id,
    )


def _text(data: Any, key: str, reasons: List[str], *, required: bool = False) -> Optional[str]:
    return read_text(data, key, reasons, required=required)


def approval_as_request(body: Mapping[str, Any]) -> Dict[str, Any]:
    """The approval card's answer as the request it approves: the request's data and requester from the
    button's data (which the runbook wrote), the approver from the Teams ``responder`` (never typed in)."""
    data = body["data"]
    request, requester, approver = data.get("request"), data.get("requester"), body.get("responder")
    problems = []
    if not isinstance(request, Mapping) or request.get("action") != ACTION:
        problems.append("the approval answer does not carry the request it approves ('data.request')")
    if not isinstance(requester, Mapping):
        problems.append("the approval answer does not say who asked ('data.requester')")
    if not isinstance(approver, Mapping):
        problems.append("the approval answer does not say who answered ('responder' is missing): the Teams flow must pass the card's responder")
    if problems or not isinstance(approver, Mapping) or not isinstance(request, Mapping) or not isinstance(requester, Mapping):
        raise RequestError(problems)
    approval = {"approver": dict(approver), "outcome": data.get("outcome"), "comments": data.get("comments") or ""}
    return {"data": dict(request), "responder": dict(requester), "messageId": data.get("request_message_id") or "", "approval": approval}






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
