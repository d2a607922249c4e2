"""The pre-stop warning, as pure logic: who is told which CIs stop tonight, and what their card says.

Settings section ``warning``::

    {"minutes_before": 30, "stop_time": null, "time_zone": "UTC", "workflow_url": null, "max_cis_per_card": 8}

- ``minutes_before``: how long before the nightly stop the warning runs (publish.py schedules it);
- ``stop_time`` / ``time_zone``: the nightly stop's local time, if known; then the warning names that
  time even when its own job started late, else it says "now + minutes_before";
- ``workflow_url``: the Teams workflow that delivers warnings (default ``teams.workflow_url``);
- ``max_cis_per_card``: an owner with more CIs gets several cards (a Teams message holds 28 KB).

Each CI the sweep will stop goes to one recipient: the owner tag written at creation
(:attr:`TagNames.owner`, a UPN or an Entra object id), else the CI's assigned user (object id), else
the fallback channel. No I/O here; the runbook discovers, prices and posts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlencode, urlsplit, urlunsplit

from shared.exemption.request import REQUEST
from shared.models import GUID as _GUID
from shared.models import ComputeInstanceRecord
from shared.pricing.cost import CostEstimate
from shared.sections import WarningSection
from shared.stop.policy import Decision
from shared.tags import TagNames, tag_value
from shared.times import format_instant, load_zone

UPN = "upn"
OBJECT_ID = "object_id"
FALLBACK = "fallback"
_KIND_ORDER = {UPN: 0, OBJECT_ID: 1, FALLBACK: 2}

# A UPN or e-mail address: one @, no spaces; Teams resolves it, we only route on it.
_UPN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")




@dataclass(frozen=True)
class Recipient:
    """Who gets a warning: a UPN, an Entra object id, or the fallback channel (``address`` empty)."""

    kind: str
    address: str = ""
    tenant_id: str = ""

    @property
    def key(self) -> Tuple[int, str]:
        """Groups and sorts recipients: UPNs and object ids are case-insensitive; the fallback goes last."""
        return (_KIND_ORDER[self.kind], self.address.lower())

    @property
    def label(self) -> str:
        if self.kind == UPN:
            return self.address
        if self.kind == OBJECT_ID:
            return f"user {self.address}"
        return "the fallback channel (no owner tag, no assigned user)"

    def to_dict(self) -> Dict[str, str]:
        return {"kind": self.kind, "address": self.address, "tenant_id": self.tenant_id, "label": self.label}


def recipient_for(ci: ComputeInstanceRecord, names: TagNames = TagNames()) -> Recipient:
    """The owner tag if it names someone (UPN or object id), else the assigned user, else the fallback."""
    owner = (tag_value(ci.tags, names.owner) or "").strip()
    if _UPN.match(owner):
        return Recipient(UPN, owner)
    if _GUID.match(owner):
        return Recipient(OBJECT_ID, owner.lower())
    # An owner tag that names nobody we can reach (typed by hand, e.g. "team vision") falls through.
    if ci.assigned_user_object_id and _GUID.match(ci.assigned_user_object_id):
        return Recipient(OBJECT_ID, ci.assigned_user_object_id.lower(), (ci.assigned_user_tenant_id or "").lower())
    return Recipient(FALLBACK)


def delivery_url(workflow_url: str, recipient: Recipient) -> str:
    """The workflow URL for ``recipient``: with ``recipient`` and ``recipient_type`` query parameters
    for a person (the flow posts to a chat with them), unchanged for the fallback channel.

    The Teams message envelope has no room for an addressee, so it travels in the URL, where a flow
    reads it as ``triggerOutputs()?['queries']?['recipient']`` (docs/admin.md, "Delivering warnings to each person").
    """
    if recipient.kind == FALLBACK:
        return workflow_url
    parts = urlsplit(workflow_url)
    # Appended, never re-encoded: the signed parameters (sp, sv, sig) must stay byte for byte.
    extra = urlencode([("recipient", recipient.address), ("recipient_type", recipient.kind)])
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def to_stop_by_recipient(
    decisions: Sequence[Tuple[ComputeInstanceRecord, Decision]], names: TagNames = TagNames()
) -> List[Tuple[Recipient, List[ComputeInstanceRecord]]]:
    """The CIs the plan stops, grouped by recipient: recipients sorted (fallback last), CIs by workspace then name."""
    groups: Dict[Tuple[int, str], Tuple[Recipient, List[ComputeInstanceRecord]]] = {}
    for ci, decision in decisions:
        if not decision.stop:
            continue
        who = recipient_for(ci, names)
        groups.setdefault(who.key, (who, []))[1].append(ci)
    return [(who, sorted(cis, key=lambda c: (c.workspace.name.lower(), c.name.lower(), c.key.lower()))) for _, (who, cis) in sorted(groups.items())]


def stop_time(now: datetime, section: WarningSection) -> datetime:
    """When the nightly stop runs, seen from a warning job started at ``now`` (aware UTC, to the minute).

    With ``stop_time`` set, the occurrence nearest to ``now + minutes_before``, so a job that
    starts a few minutes late still names the real stop time.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    expected = (now + timedelta(minutes=section.minutes_before)).astimezone(timezone.utc).replace(second=0, microsecond=0)
    if section.stop_time is None:
        return expected
    zone = load_zone(section.time_zone)
    hour, minute = (int(x) for x in section.stop_time.split(":"))
    local_day = expected.astimezone(zone).date()
    days = (local_day - timedelta(days=1), local_day, local_day + timedelta(days=1))
    candidates = [datetime(d.year, d.month, d.day, hour, minute, tzinfo=zone).astimezone(timezone.utc) for d in days]
    return min(candidates, key=lambda c: abs(c - expected))


@dataclass(frozen=True)
class ExemptionForm:
    """The "keep running until…" inputs: choices and defaults as on the ``exemption_request`` card."""

    time_zones: Tuple[str, ...]
    default_time_zone: str
    min_date: str
    until_date: str = ""
    until_time: str = "08:00"
    max_hours: float = 72.0

    def to_dict(self) -> Dict[str, Any]:
        return {
            "time_zones": list(self.time_zones),
            "default_time_zone": self.default_time_zone,
            "min_date": self.min_date,
            "until_date": self.until_date,
            "until_time": self.until_time,
            "max_hours": self.max_hours,
        }


def exemption_form(now: datetime, suggested_until: datetime, time_zones: Sequence[str], default_time_zone: str, max_hours: float) -> ExemptionForm:
    """Form defaults: ``suggested_until`` (the next morning) in the default time zone, if the exemption rules allow it."""
    zone = load_zone(default_time_zone)
    local_now = now.astimezone(zone)
    form = ExemptionForm(tuple(time_zones), default_time_zone, local_now.strftime("%Y-%m-%d"), max_hours=max_hours)
    if now < suggested_until <= now + timedelta(hours=max_hours):
        local = suggested_until.astimezone(zone)
        return ExemptionForm(form.time_zones, form.default_time_zone, form.min_date, local.strftime("%Y-%m-%d"), local.strftime("%H:%M"), max_hours)
    return form


@dataclass(frozen=True)
class WarningCard:
    """One card to deliver: to ``recipient``, about ``compute_instances`` (keys), rendered from ``context``."""

    recipient: Recipient
    compute_instances: Tuple[str, ...]
    context: Mapping[str, Any]


def warning_cards(
    groups: Sequence[Tuple[Recipient, List[ComputeInstanceRecord]]],
    stop_at: datetime,
    form: ExemptionForm,
    estimate: Optional[CostEstimate] = None,
    max_cis_per_card: int = 8,
) -> List[WarningCard]:
    """The ``stop_warning`` card contexts: one per recipient, split into parts of ``max_cis_per_card`` CIs.

    ``estimate`` prices running on from ``stop_at`` (the overnight cost per CI); None when pricing is off.
    """
    cards = []
    for who, cis in groups:
        chunks = [cis[i : i + max_cis_per_card] for i in range(0, len(cis), max_cis_per_card)]
        for part, chunk in enumerate(chunks, start=1):
            context = {
                "recipient": who.to_dict(),
                "stop_at": format_instant(stop_at),
                "part": part,
                "parts": len(chunks),
                "items": [_item(ci, stop_at, estimate) for ci in chunk],
                "overnight": _overnight(chunk, estimate),
                "form": form.to_dict(),
            }
            cards.append(WarningCard(who, tuple(ci.key for ci in chunk), context))
    return cards


def _item(ci: ComputeInstanceRecord, stop_at: datetime, estimate: Optional[CostEstimate]) -> Dict[str, Any]:
    cost = estimate.items.get(ci.key) if estimate else None
    return {
        "name": ci.name,
        "workspace": ci.workspace.name,
        "vm_size": ci.vm_size,
        "region": ci.location,
        "stop_at": format_instant(stop_at),
        "cost_text": cost.text if cost else None,
        # What the card's "keep running until…" button sends: the exemption request's own fields.
        "submit": {"action": REQUEST, "workspace": ci.workspace.key, "compute_instance": ci.name},
    }


def _overnight(cis: Sequence[ComputeInstanceRecord], estimate: Optional[CostEstimate]) -> Optional[Dict[str, Any]]:
    if estimate is None:
        return None
    part = CostEstimate(estimate.currency, estimate.hours, estimate.until, {ci.key: estimate.items[ci.key] for ci in cis if ci.key in estimate.items})
    return {"hours": round(estimate.hours, 1), "until": format_instant(estimate.until), "total_text": part.total_text(), "unknown": part.unknown}
