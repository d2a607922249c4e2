"""Who may exempt a compute instance, and the one decision "record now / needs approval / reject".

Settings section ``exemption`` (read with ``settings.section("exemption", ExemptionSection)``)::

    {"max_hours": 72, "approvers": ["lead@contoso.com", "<object id>"], "allow_assigned_user": true,
     "require_shared_secret": "X-CI-Governance-Secret", "time_zones": ["UTC", "Europe/Berlin"],
     "default_time_zone": "UTC", "max_reason_length": 200, "tag_write_method": "tags_api"}

Everything here is pure: no I/O, so the runbook, the tests and a later approval step (issue 6:
requests above a cost threshold need an approver who is not the requester) share one rule book.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Mapping, Optional, Tuple

from shared.exemption_request import ExemptionRequest, RequestRules, Responder, load_zone
from shared.exemption_tags import MAX_TAG_VALUE, TagNames, read_exemption
from shared.models import ComputeInstanceRecord
from shared.settings import Settings, SettingsError

TAGS_API = "tags_api"
FULL_PUT = "full_put"
AUTO = "auto"
TAG_WRITE_METHODS = (TAGS_API, FULL_PUT, AUTO)

# Verdicts of decide_exemption.
RECORD = "record"
NEEDS_APPROVAL = "needs_approval"
REJECT = "reject"

# Any instant serves to read who recorded an exemption; a fixed one keeps decide_exemption clock-free.
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

DEFAULT_TIME_ZONES = ("UTC", "Europe/London", "Europe/Berlin", "America/New_York", "America/Los_Angeles", "Asia/Kolkata", "Asia/Tokyo", "Australia/Sydney")


@dataclass(frozen=True)
class ExemptionSection:
    """Settings section ``exemption``.

    - ``max_hours``: how far ahead an exemption may run (from the moment it is asked for);
    - ``approvers``: UPNs or Entra object ids who may exempt any CI in scope;
    - ``allow_assigned_user``: the CI's assigned user may exempt their own CI;
    - ``require_shared_secret``: name of a request header that must carry ``teams.shared_secret``
      (checked on webhook requests; None = no check);
    - ``time_zones`` / ``default_time_zone``: the choices the request card offers;
    - ``tag_write_method``: ``tags_api`` (ARM Tags API), ``full_put`` (GET + PUT of the compute) or
      ``auto`` (Tags API, falling back to the full PUT when the Tags API is refused or ignored);
    - ``readback_attempts`` / ``readback_delay_seconds``: how long to wait for written tags to show.
    """

    max_hours: float = 72.0
    approvers: Tuple[str, ...] = ()
    allow_assigned_user: bool = True
    require_shared_secret: Optional[str] = None
    time_zones: Tuple[str, ...] = DEFAULT_TIME_ZONES
    default_time_zone: str = "UTC"
    max_reason_length: int = 200  # what the request card allows
    tag_write_method: str = TAGS_API
    readback_attempts: int = 3
    readback_delay_seconds: float = 2.0

    def __post_init__(self) -> None:
        # Raised as ValueError; Settings.section turns it into a SettingsError naming the section.
        if not 0 < self.max_hours <= 24 * 31:
            raise ValueError(f"max_hours must be more than 0 and at most 744 (31 days), not {self.max_hours}")
        if not 1 <= self.max_reason_length <= MAX_TAG_VALUE:
            raise ValueError(f"max_reason_length must be 1 to {MAX_TAG_VALUE} (an Azure tag value holds {MAX_TAG_VALUE} characters)")
        if self.tag_write_method not in TAG_WRITE_METHODS:
            raise ValueError(f"tag_write_method must be one of {', '.join(TAG_WRITE_METHODS)}, not {self.tag_write_method!r}")
        if not self.allow_assigned_user and not self.approvers:
            raise ValueError("allow_assigned_user is false and approvers is empty: nobody could ask for an exemption")
        if self.require_shared_secret is not None and not self.require_shared_secret.strip():
            raise ValueError("require_shared_secret must be a header name such as X-CI-Governance-Secret, or null")
        if self.readback_attempts < 1 or self.readback_delay_seconds < 0:
            raise ValueError("readback_attempts must be at least 1 and readback_delay_seconds not negative")
        for zone in (*self.time_zones, self.default_time_zone):
            load_zone(zone)
        if self.default_time_zone not in self.time_zones:
            raise ValueError(f"default_time_zone {self.default_time_zone!r} must be one of time_zones")

    def rules(self) -> RequestRules:
        """The validation limits for :func:`shared.exemption_request.validate_request`."""
        return RequestRules(max_hours=self.max_hours, max_reason_length=self.max_reason_length)


def load_section(settings: Settings) -> ExemptionSection:
    """Read and check the ``exemption`` section, including what it needs from ``teams``."""
    section = settings.section("exemption", ExemptionSection)
    if section.require_shared_secret and not settings.teams.shared_secret:
        raise SettingsError(f"exemption.require_shared_secret names header {section.require_shared_secret} but teams.shared_secret is not set")
    return section


@dataclass(frozen=True)
class PolicyDecision:
    """``verdict`` is RECORD, NEEDS_APPROVAL or REJECT; ``basis`` says why the requester may act."""

    verdict: str
    reasons: Tuple[str, ...] = ()
    basis: str = ""


def check_shared_secret(headers: Mapping[str, str], header_name: Optional[str], expected: Optional[str]) -> Optional[str]:
    """None if the request may proceed, else the reason to refuse it.

    With ``header_name`` unset there is nothing to check. The comparison is constant-time
    (``hmac.compare_digest``) so the secret cannot be guessed from response timing.
    """
    if not header_name:
        return None
    if not expected:
        # Settings validation refuses this combination; stay closed if it slips through.
        return "The shared secret is not configured (teams.shared_secret), so no request can be trusted."
    supplied = next((v for k, v in (headers or {}).items() if k.lower() == header_name.lower()), None)
    if supplied is None:
        return f"The request did not carry the {header_name} header."
    if not isinstance(supplied, str) or not hmac.compare_digest(supplied.encode("utf-8"), expected.encode("utf-8")):
        return f"The {header_name} header does not match the configured shared secret."
    return None


def is_approver(responder: Responder, section: ExemptionSection) -> bool:
    """True if the responder's object id or UPN is in ``approvers`` (case-insensitive).

    E-mail is not matched: the mail attribute is not guaranteed unique in a tenant, the UPN is.
    """
    mine = {responder.object_id.lower(), responder.user_principal_name.lower()} - {""}
    return any(a.strip().lower() in mine for a in section.approvers)


def is_assigned_user(responder: Responder, ci: ComputeInstanceRecord) -> bool:
    """True if the responder is the CI's assigned user (object id, and tenant when both are known)."""
    if not ci.assigned_user_object_id or ci.assigned_user_object_id.lower() != responder.object_id.lower():
        return False
    tenant = (ci.assigned_user_tenant_id or "").lower()
    return not (tenant and responder.tenant_id and tenant != responder.tenant_id.lower())


def decide_exemption(request: ExemptionRequest, ci: ComputeInstanceRecord, section: ExemptionSection, names: TagNames = TagNames()) -> PolicyDecision:
    """Record now, needs approval, or reject: the single place that decides (pure).

    A request is recorded when the responder is the CI's assigned user (if allowed) or an
    approver. A cancellation may also come from whoever recorded the current exemption.
    Issue 6 adds its cost threshold here, returning NEEDS_APPROVAL.
    """
    who = request.responder
    if is_approver(who, section):
        return PolicyDecision(RECORD, basis="approver")
    if section.allow_assigned_user and is_assigned_user(who, ci):
        return PolicyDecision(RECORD, basis="assigned user")
    if request.is_cancel:
        # read_exemption's status carries the exemption even when expired or partly malformed.
        current = read_exemption(ci.tags, _EPOCH, names).exemption
        if current is not None and current.by and current.by.lower() in {who.user_principal_name.lower(), who.email.lower()} - {""}:
            return PolicyDecision(RECORD, basis="requester of the current exemption")
    allowed = "an approver" if not section.allow_assigned_user else "the compute instance's assigned user or an approver"
    if section.allow_assigned_user and not ci.assigned_user_object_id:
        allowed = "an approver (this compute instance has no assigned user)"
    return PolicyDecision(REJECT, (f"{who.who} may not {'cancel' if request.is_cancel else 'request'} an exemption for {ci.name}: only {allowed} may.",))
