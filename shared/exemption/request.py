"""An exemption request from Teams, and its pure validation (no I/O, ``now`` injected).

The request is the output object of Power Automate's "Post adaptive card and wait for a
response", passed on as-is::

    {"data": {"action": "request_exemption" | "cancel_exemption",
              "workspace": "<subscriptionId>/<resourceGroup>/<workspaceName>",
              "compute_instance": "...", "until_date": "YYYY-MM-DD", "until_time": "HH:MM",
              "time_zone": "Europe/Berlin", "reason": "..."},
     "responder": {"objectId", "tenantId", "email", "userPrincipalName", "displayName"},
     "responseTime": "...", "messageId": "...", "submitActionId": "..."}

plus, after the flow's approval step, ``"approval": {"outcome", "approver": {...}, "comments", ...}``
(``responder``, ``messageId`` and ``approval`` are read by :func:`shared.teams.inbound.read_teams_response`,
the one reader of a Teams response). Who asked is taken from ``responder`` (filled in by Teams), never
from card inputs.
:func:`validate_request` returns either a validated :class:`ExemptionRequest` or every reason
to refuse it, in words the requester can act on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, List, Mapping, Optional, Tuple

from shared.models import GUID as _GUID
from shared.models import WorkspaceRef, is_resource_group_name, is_workspace_name
from shared.sections import RequestRules
from shared.tags import clean_text
from shared.teams.inbound import MAX_FIELD_CHARS, Approval, Responder, as_sentence, read_teams_response, read_text
from shared.times import format_instant, load_zone, local_to_utc

REQUEST = "request_exemption"
CANCEL = "cancel_exemption"
ACTIONS = (REQUEST, CANCEL)

__all__ = ["ACTIONS", "CANCEL", "MAX_FIELD_CHARS", "REQUEST", "ExemptionRequest", "Responder", "Validation", "describe_asked", "validate_request"]

# Compute instance: 3-24 letters, digits and hyphens, starting with a letter (the service's own
# create-time message). Stricter service rules only make the later lookup fail, never a wrong write.
_COMPUTE_INSTANCE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{2,23}$")
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_TIME = re.compile(r"^(\d{2}):(\d{2})(?::(\d{2}))?$")




@dataclass(frozen=True)
class ExemptionRequest:
    """A request that passed validation. ``until`` is aware UTC (None for a cancellation)."""

    action: str
    workspace: WorkspaceRef
    compute_instance: str
    responder: Responder
    message_id: str = ""
    until: Optional[datetime] = None
    until_local: str = ""
    time_zone: str = ""
    reason: str = ""
    approval: Optional[Approval] = None  # the approver's answer, when the flow ran its approval step

    @property
    def is_cancel(self) -> bool:
        return self.action == CANCEL

    @property
    def until_text(self) -> str:
        """``2026-11-24T08:00:00Z`` or empty."""
        return format_instant(self.until) if self.until else ""


@dataclass(frozen=True)
class Validation:
    """Either ``request`` (valid) or ``reasons`` (why not); ``asked`` echoes what was asked, for the answer card."""

    request: Optional[ExemptionRequest]
    reasons: Tuple[str, ...]
    asked: Mapping[str, str]

    @property
    def ok(self) -> bool:
        return self.request is not None and not self.reasons


def validate_request(body: Any, now: datetime, rules: RequestRules = RequestRules()) -> Validation:
    """Check a request body at ``now`` (aware) and return a :class:`Validation`.

    Every problem is reported, not just the first, so the requester can fix them all at once.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    problems: List[str] = []
    envelope = read_teams_response(body, problems)
    if envelope is None:
        return Validation(None, tuple(as_sentence(p) for p in problems), {})
    data = envelope.data
    asked = describe_asked(data)
    action = read_text(data, "action", problems, required=True)
    reasons = [as_sentence(p) for p in problems]
    responder, message_id, approval = envelope.responder, envelope.message_id, envelope.approval
    if action and action not in ACTIONS:
        reasons.append(f"Unknown action '{_show(action)}': expected {' or '.join(ACTIONS)}.")
    workspace = _workspace(_text(data, "workspace", reasons, required=True), reasons)
    ci_name = _text(data, "compute_instance", reasons, required=True)
    if ci_name and not _COMPUTE_INSTANCE.match(ci_name):
        reasons.append(f"'{_show(ci_name)}' is not a compute instance name (3 to 24 letters, digits and hyphens, starting with a letter).")

    until: Optional[datetime] = None
    until_local = zone_name = reason = ""
    if action == REQUEST:
        until, until_local, zone_name = _until(data, now, rules, reasons)
        reason = _reason(data, rules, reasons)

    if reasons:
        return Validation(None, tuple(reasons), asked)
    assert workspace is not None and responder is not None and action is not None and ci_name is not None
    request = ExemptionRequest(
        action=action,
        workspace=workspace,
        compute_instance=ci_name,
        responder=responder,
        message_id=message_id or "",
        until=until,
        until_local=until_local,
        time_zone=zone_name,
        reason=reason,
        approval=approval,
    )
    return Validation(request, (), asked)


def describe_asked(data: Any) -> Mapping[str, str]:
    """What the card asked for, as short safe strings (for the rejection card; never trusted)."""
    if not isinstance(data, Mapping):
        return {}
    out = {}
    for key in ("action", "workspace", "compute_instance", "until_date", "until_time", "time_zone", "reason"):
        value = data.get(key)
        if isinstance(value, str) and value.strip():
            out[key] = clean_text(value, 120)
    return out






# -- helpers ------------------------------------------------------------------------------


def _show(value: Any) -> str:
    """A hostile string made short and printable for an error message."""
    return clean_text(str(value), 60)


def _text(data: Mapping[str, Any], key: str, reasons: List[str], *, required: bool) -> Optional[str]:
    """One card input (shared.teams.inbound.read_text), its problem as a sentence."""
    problems: List[str] = []
    value = read_text(data, key, problems, required=required)
    reasons.extend(as_sentence(p) for p in problems)
    return value


def _workspace(key: Optional[str], reasons: List[str]) -> Optional[WorkspaceRef]:
    if key is None:
        return None
    parts = key.split("/")
    if len(parts) != 3:
        reasons.append(f"Workspace '{_show(key)}' must be written as <subscriptionId>/<resourceGroup>/<workspaceName>.")
        return None
    sub, rg, name = (p.strip() for p in parts)
    ok = True
    if not _GUID.match(sub):
        reasons.append(f"Workspace '{_show(key)}': '{_show(sub)}' is not a subscription id (a GUID).")
        ok = False
    if not is_resource_group_name(rg):
        reasons.append(f"Workspace '{_show(key)}': '{_show(rg)}' is not a resource group name.")
        ok = False
    if not is_workspace_name(name):
        reasons.append(f"Workspace '{_show(key)}': '{_show(name)}' is not an Azure ML workspace name.")
        ok = False
    return WorkspaceRef(sub.lower(), rg, name) if ok else None


def _until(data: Mapping[str, Any], now: datetime, rules: RequestRules, reasons: List[str]) -> Tuple[Optional[datetime], str, str]:
    day = _text(data, "until_date", reasons, required=True)
    clock = _text(data, "until_time", reasons, required=True)
    zone_name = _text(data, "time_zone", reasons, required=True)
    if zone_name:
        try:
            load_zone(zone_name)
        except ValueError as exc:
            reasons.append(f"{exc}.")
            zone_name = None
    if not (day and clock and zone_name):
        return None, "", zone_name or ""
    try:
        until, local = local_to_utc(day, clock, zone_name)
    except ValueError as exc:
        reasons.append(f"{str(exc).rstrip('.')}.")
        return None, "", zone_name
    if until <= now:
        reasons.append(f"{local} ({format_instant(until)}) is not in the future.")
    elif until - now > timedelta(hours=rules.max_hours):
        latest = now + timedelta(hours=rules.max_hours)
        reasons.append(f"{local} is more than {_hours(rules.max_hours)} ahead; the latest allowed now is {format_instant(latest)}.")
    return until, local, zone_name


def _reason(data: Mapping[str, Any], rules: RequestRules, reasons: List[str]) -> str:
    raw = _text(data, "reason", reasons, required=True)
    if raw is None:
        return ""
    cleaned = clean_text(raw, limit=MAX_FIELD_CHARS)
    if not cleaned:
        reasons.append("'reason' is empty once control characters are removed.")
    elif len(cleaned) > rules.max_reason_length:
        reasons.append(f"'reason' is {len(cleaned)} characters; at most {rules.max_reason_length} are allowed.")
    return cleaned


def _hours(hours: float) -> str:
    return f"{int(hours)} hours" if float(hours).is_integer() else f"{hours:g} hours"
