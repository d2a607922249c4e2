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
(read by :func:`shared.teams.inbound.parse_approval`). Who asked is taken from ``responder`` (filled in by
Teams), never from card inputs.
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
from shared.teams.inbound import Approval, parse_approval
from shared.times import format_instant, load_zone, local_to_utc

REQUEST = "request_exemption"
CANCEL = "cancel_exemption"
ACTIONS = (REQUEST, CANCEL)

# Longest text field we look at at all: anything longer is refused before any parsing.
MAX_FIELD_CHARS = 1024

# Compute instance: 3-24 letters, digits and hyphens, starting with a letter (the service's own
# create-time message). Stricter service rules only make the later lookup fail, never a wrong write.
_COMPUTE_INSTANCE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{2,23}$")
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_TIME = re.compile(r"^(\d{2}):(\d{2})(?::(\d{2}))?$")




@dataclass(frozen=True)
class Responder:
    """The Teams user who submitted the card, as Teams reports them."""

    object_id: str
    tenant_id: str = ""
    email: str = ""
    user_principal_name: str = ""
    display_name: str = ""

    @property
    def who(self) -> str:
        """How the requester is named in tags and cards: UPN, else e-mail, else object id."""
        return self.user_principal_name or self.email or self.object_id


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
    reasons: List[str] = []
    if not isinstance(body, Mapping):
        return Validation(None, ("The request is not a JSON object.",), {})
    data = body.get("data")
    if not isinstance(data, Mapping):
        return Validation(None, ("The request has no 'data' object with the card's inputs.",), {})
    asked = describe_asked(data)

    action = _text(data, "action", reasons, required=True)
    if action and action not in ACTIONS:
        reasons.append(f"Unknown action '{_show(action)}': expected {' or '.join(ACTIONS)}.")
    responder = _responder(body.get("responder"), reasons)
    message_id = clean_text(_optional_text(body, "messageId", reasons) or "")  # as the exempt-request tag holds it
    approval, problems = parse_approval(body.get("approval"))
    reasons.extend(f"{p[:1].upper()}{p[1:]}." for p in problems)
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
    value = data.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            reasons.append(f"'{key}' is missing.")
        return None
    if not isinstance(value, str):
        reasons.append(f"'{key}' must be text, not {type(value).__name__}.")
        return None
    if len(value) > MAX_FIELD_CHARS:
        reasons.append(f"'{key}' is {len(value)} characters long; that is far more than any valid value.")
        return None
    return value.strip()


def _optional_text(data: Mapping[str, Any], key: str, reasons: List[str]) -> Optional[str]:
    return _text(data, key, reasons, required=False)


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


def _responder(value: Any, reasons: List[str]) -> Optional[Responder]:
    if not isinstance(value, Mapping):
        reasons.append("The request does not say who responded ('responder' is missing): the Teams flow must pass the card's responder.")
        return None
    before = len(reasons)
    oid = _text(value, "objectId", reasons, required=True)
    if oid and not _GUID.match(oid):
        reasons.append(f"responder.objectId '{_show(oid)}' is not an Entra object id (a GUID).")
    fields = {k: _text(value, k, reasons, required=False) or "" for k in ("tenantId", "email", "userPrincipalName", "displayName")}
    if fields["tenantId"] and not _GUID.match(fields["tenantId"]):
        reasons.append(f"responder.tenantId '{_show(fields['tenantId'])}' is not an Entra tenant id (a GUID).")
    for key in ("email", "userPrincipalName"):
        # Identities are compared as they are: cleaning "lead\u200b@x" into "lead@x" would make it someone else.
        if fields[key] and clean_text(fields[key]) != fields[key]:
            reasons.append(f"responder.{key} '{_show(fields[key])}' contains characters no sign-in name has.")
    if len(reasons) > before:
        return None
    assert oid is not None
    return Responder(
        object_id=oid.lower(),
        tenant_id=fields["tenantId"].lower(),
        email=clean_text(fields["email"]),
        user_principal_name=clean_text(fields["userPrincipalName"]),
        display_name=clean_text(fields["displayName"]),
    )


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
