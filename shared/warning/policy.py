"""The pre-stop warning, as pure logic: who is told which CIs stop tonight, and what their card says.

Settings section ``warning``::

    {"minutes_before": 30, "stop_time": null, "time_zone": "UTC", "workflow_url": null, "max_cis_per_card": 4}

- ``minutes_before``: how long before the nightly stop the warning runs (publish.py schedules it);
- ``stop_time`` / ``time_zone``: the nightly stop's local time, if known; then the warning names that
  time even when its own job started late, else it says "now + minutes_before";
- ``workflow_url``: the Teams workflow that delivers warnings (default ``teams.workflow_url``);
- ``max_cis_per_card``: an owner gets one card per workspace, split after this many CIs (short on a phone).

Each CI the sweep will stop goes to one recipient: the owner tag written at creation
(:attr:`TagNames.owner`, a UPN or an Entra object id), else the CI's assigned user (object id), else
the fallback channel. No I/O here; the runbook discovers, prices and posts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from shared.exemption.request import REQUEST
from shared.models import GUID as _GUID
from shared.models import ComputeInstanceRecord
from shared.pricing.cost import CostEstimate
from shared.sections import WarningSection
from shared.stop.policy import Decision
from shared.tags import TagNames, tag_value
from shared.teams.routing import CHANNEL, Address, address_url
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


def address_of(recipient: Recipient) -> Address:
    """The Teams address of a warning recipient: a chat with the person, or the configured channel."""
    return CHANNEL if recipient.kind == FALLBACK else Address(recipient.address, recipient.kind)


def delivery_url(workflow_url: str, recipient: Recipient, wait: bool = True) -> str:
    """The workflow URL for ``recipient`` (shared.teams.routing's contract): ``recipient`` and
    ``recipient_type`` query parameters for a person, none for the fallback channel, and ``wait=true``
    because a warning card expects an answer.

    The Teams message envelope has no room for an addressee, so it travels in the URL, where a flow
    reads it as ``triggerOutputs()?['queries']?['recipient']`` (docs/admin.md, "Routing contract").
    """
    return address_url(workflow_url, address_of(recipient), wait)


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
class QuickPick:
    """A one-tap "keep running until" answer: the button title and the request fields it sends."""

    title: str
    until: datetime  # aware UTC, for the card's {{DATE()}}/{{TIME()}}
    until_date: str
    until_time: str
    time_zone: str

    def to_dict(self) -> Dict[str, Any]:
        return {
            "title": self.title,
            "until": format_instant(self.until),
            "until_date": self.until_date,
            "until_time": self.until_time,
            "time_zone": self.time_zone,
        }


@dataclass(frozen=True)
class ExemptionForm:
    """The "keep running until…" inputs: choices, defaults, limits and one-tap picks."""

    time_zones: Tuple[str, ...]
    default_time_zone: str
    min_date: str
    until_date: str = ""
    until_time: str = "08:00"
    max_hours: float = 72.0
    max_date: str = ""
    quick: Tuple[QuickPick, ...] = ()

    def to_dict(self) -> Dict[str, Any]:
        return {
            "time_zones": list(self.time_zones),
            "default_time_zone": self.default_time_zone,
            "min_date": self.min_date,
            "max_date": self.max_date,
            "until_date": self.until_date,
            "until_time": self.until_time,
            "max_hours": self.max_hours,
            "quick": [q.to_dict() for q in self.quick],
        }


def _pick(title: str, until: datetime, zone_name: str) -> QuickPick:
    local = until.astimezone(load_zone(zone_name))
    return QuickPick(title, until.astimezone(timezone.utc), local.strftime("%Y-%m-%d"), local.strftime("%H:%M"), zone_name)


def exemption_form(now: datetime, suggested_until: datetime, time_zones: Sequence[str], default_time_zone: str, max_hours: float) -> ExemptionForm:
    """Form defaults: ``suggested_until`` (the next morning) in the default time zone, if the exemption
    rules allow it; the latest date allowed; one-tap picks "until <next morning>" and "+24 h" where allowed."""
    zone = load_zone(default_time_zone)
    local_now = now.astimezone(zone)
    latest = (now + timedelta(hours=max_hours)).astimezone(zone)
    quick: List[QuickPick] = []
    until_date, until_time = "", "08:00"
    if now < suggested_until <= now + timedelta(hours=max_hours):
        local = suggested_until.astimezone(zone)
        until_date, until_time = local.strftime("%Y-%m-%d"), local.strftime("%H:%M")
        quick.append(_pick(f"Until {local:%a %H:%M %Z}", suggested_until, default_time_zone))  # e.g. "Until Tue 09:00 CET"
    # "+24 h" from the moment the warning is read is unknowable: from the stop on the card's day, rounded up to the quarter hour.
    plus = (now + timedelta(hours=24)).replace(second=0, microsecond=0)
    plus += timedelta(minutes=(-plus.minute) % 15)
    if max_hours >= 24 and plus <= now + timedelta(hours=max_hours) and all(q.until != plus for q in quick):
        quick.append(_pick("+24 h", plus, default_time_zone))
    return ExemptionForm(
        tuple(time_zones), default_time_zone, local_now.strftime("%Y-%m-%d"), until_date, until_time, max_hours, latest.strftime("%Y-%m-%d"), tuple(quick)
    )


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
    max_cis_per_card: int = 4,
) -> List[WarningCard]:
    """The ``stop_warning`` card contexts: one per recipient and workspace, split into parts of
    ``max_cis_per_card`` CIs. Each card has one "keep running" form: a choice list of its CIs (when
    more than one), one-tap picks and another time, so it stays short on a phone.

    ``estimate`` prices running on from ``stop_at`` (the overnight cost per CI); None when pricing is off.
    """
    cards = []
    for who, cis in groups:
        by_workspace: Dict[str, List[ComputeInstanceRecord]] = {}
        for ci in cis:
            by_workspace.setdefault(ci.workspace.key.lower(), []).append(ci)
        for group in by_workspace.values():
            chunks = [group[i : i + max_cis_per_card] for i in range(0, len(group), max_cis_per_card)]
            for part, chunk in enumerate(chunks, start=1):
                ws = chunk[0].workspace
                submit: Dict[str, Any] = {"action": REQUEST, "workspace": ws.key}
                if len(chunk) == 1:
                    submit["compute_instance"] = chunk[0].name
                context = {
                    "recipient": who.to_dict(),
                    "stop_at": format_instant(stop_at),
                    "part": part,
                    "parts": len(chunks),
                    "workspace": {"name": ws.name, "resource_group": ws.resource_group},
                    "items": [_item(ci, stop_at, estimate) for ci in chunk],
                    "overnight": _overnight(chunk, estimate),
                    "form": form.to_dict(),
                    "submit": submit,
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
