"""Turn what the create runbook was given into a :class:`~shared.create.policy.CreateRequest` (pure).

Two sources:

- the Teams flow: the output of Power Automate's "Post adaptive card and wait for a response",
  passed on as-is, plus an ``approval`` object when the flow ran an approval step::

    {"data": {"action": "request_compute_instance", "workspace": "<sub>/<rg>/<ws>", "name": "...",
              "size": "Standard_DS3_v2", "idle_minutes": "60", "cost_center": "CC-4711"},
     "responder": {"objectId", "tenantId", "userPrincipalName", "email", "displayName"},
     "messageId": "...",
     "approval": {"approver": {"objectId", "userPrincipalName"}, "outcome": "Approve"}}

  The requester and the user the CI is assigned to come from ``responder`` (filled in by Teams),
  never from card inputs;
- ordinary parameters (an operator, a schedule, the Automation "Create job" API): trusted as given.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from shared.create.policy import NAME_CARD_REGEX, CreateRequest, match_size
from shared.models import GUID as _GUID
from shared.models import WorkspaceRef
from shared.sections import IDLE_MIN_MINUTES, CreateSection
from shared.tags import clean_text
from shared.teams.inbound import Approval, parse_approval

ACTION = "request_compute_instance"
# What the approval card's Approve / Reject buttons send (posted by the create runbook itself, answered by an
# approver in Teams): {"action": APPROVAL_ACTION, "outcome", "request": <the request's data>, "requester":
# <the requester's responder object>, "request_message_id", "comments"}; the approver is the ``responder``.
APPROVAL_ACTION = "compute_approval"
MAX_FIELD_CHARS = 1024  # anything longer is refused before it is looked at


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
    """Read a Teams flow body; raises RequestError with every problem found.

    An approver's press on the approval card (``data.action`` :data:`APPROVAL_ACTION`) is read as the
    original request with ``approval`` = the presser (the Teams ``responder``), their outcome and comment.
    """
    reasons: List[str] = []
    if not isinstance(body, Mapping):
        raise RequestError(["the request is not a JSON object"])
    data = body.get("data")
    if not isinstance(data, Mapping):
        raise RequestError(["the request has no 'data' object with the card's inputs"])
    if data.get("action") == APPROVAL_ACTION:
        return request_from_teams(approval_as_request(body))
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
    object_id, tenant_id, upn = _responder(body.get("responder"), reasons)
    approval, problems = parse_approval(body.get("approval"))
    reasons += problems
    message_id = _text(body, "messageId", reasons) or ""
    if reasons:
        raise RequestError(reasons)
    assert workspace is not None
    return CreateRequest(
        workspace=workspace,
        name=name,
        size=size,
        user_object_id=object_id,
        user_tenant_id=tenant_id,
        requester=upn,
        owner=upn,  # the owner tag is the responder too: card inputs never name people
        cost_center=cost_center,
        idle_minutes=idle,
        approval=approval,
        request_id=message_id,
    )


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
    if problems:
        raise RequestError(problems)
    approval = {"approver": dict(approver), "outcome": data.get("outcome"), "comments": data.get("comments") or ""}
    return {"data": dict(request), "responder": dict(requester), "messageId": data.get("request_message_id") or "", "approval": approval}


def _text(data: Mapping[str, Any], key: str, reasons: List[str], *, required: bool = False) -> Optional[str]:
    value = data.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            reasons.append(f"'{key}' is missing")
        return None
    if not isinstance(value, str):
        reasons.append(f"'{key}' must be text, not {type(value).__name__}")
        return None
    if len(value) > MAX_FIELD_CHARS:
        reasons.append(f"'{key}' is {len(value)} characters long; far more than any valid value")
        return None
    return value.strip()


def _responder(value: Any, reasons: List[str]) -> Tuple[str, str, str]:
    if not isinstance(value, Mapping):
        reasons.append("the request does not say who responded ('responder' is missing): the Teams flow must pass the card's responder")
        return "", "", ""
    oid = _text(value, "objectId", reasons, required=True) or ""
    tid = _text(value, "tenantId", reasons, required=True) or ""
    upn = _text(value, "userPrincipalName", reasons) or _text(value, "email", reasons) or ""
    for label, guid in (("responder.objectId", oid), ("responder.tenantId", tid)):
        if guid and not _GUID.match(guid):
            reasons.append(f"{label} '{clean_text(guid, 60)}' is not a GUID")
    if oid and not upn:
        reasons.append("the responder has neither userPrincipalName nor email: the owner tag needs one")
    return oid.lower(), tid.lower(), clean_text(upn)


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
