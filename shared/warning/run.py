"""The pre-stop warning's orchestration (I/O): discover, take the sweep's own plan at the stop time,
price it, and deliver one card per recipient and workspace, paced to the Teams connector's limit
(25 posts per connection per 5 minutes: :mod:`shared.teams.post`); when the fleet's cards do not fit
the lead time, the job output and the admins' channel say so, with the lead time that would fit. The pure parts (who gets which CIs, card contexts)
are in :mod:`shared.warning.policy`; the runbook ``runbooks/warn_before_stop.py`` only parses parameters."""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from shared.azure.discovery import Inventory, discover
from shared.azure.ml_gateway import MLGateway
from shared.models import FAILED
from shared.pricing.cost import CostEstimate, make_client, next_morning, price_results
from shared.report import CIResult, RunReport
from shared.sections import Sections
from shared.settings import Settings
from shared.stop.run import plan
from shared.teams.post import CONNECTOR_CALLS, CONNECTOR_WINDOW_SECONDS, ConnectorPacer, post_card, time_needed
from shared.teams.routing import CHANNEL
from shared.times import format_instant
from shared.warning.policy import WarningCard, address_of, exemption_form, stop_time, to_stop_by_recipient, warning_cards

RUNBOOK = "warn_before_stop"
WARNED = "warned"
WOULD_WARN = "would_warn"  # dry run
DRY_RUN_MARKER = "STOP_WARNING_CARD "
log = logging.getLogger("ci_governance." + RUNBOOK)




def warning_url(settings: Settings, sections: Sections) -> Optional[str]:
    """Where warning cards go: ``warning.workflow_url``, else the answer flow's ``teams.workflow_url``."""
    return sections.warning.workflow_url or settings.teams.workflow_url


def run_warning(
    gateway: MLGateway,
    settings: Settings,
    sections: Sections,
    *,
    now: Optional[datetime] = None,
    dry_run: bool = False,
    price_session: Any = None,
    teams_session: Any = None,
    inventory: Optional[Inventory] = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> RunReport:
    """Discover, plan as the sweep will at the stop time, price, and deliver one card per recipient."""
    now = now or datetime.now(timezone.utc)
    stop_at = stop_time(now, sections.warning)
    report = RunReport(RUNBOOK, dry_run, started_at=now)
    report.extra["stop_at"] = format_instant(stop_at)
    inventory = inventory or discover(gateway, settings.scope, concurrency=sections.stop.concurrency)
    report.errors.extend(inventory.errors)

    # The sweep's own decision, taken at the moment the sweep will take it.
    decisions = plan(inventory.instances, stop_at, sections.stop.policy(), settings)
    groups = to_stop_by_recipient(decisions, settings.tags)
    to_stop = [ci for _, cis in groups for ci in cis]
    log.info("The stop at %s will stop %d compute instance(s) of %d recipient(s)", format_instant(stop_at), len(to_stop), len(groups))

    estimate: Optional[CostEstimate] = None
    if sections.pricing.enabled and to_stop:
        estimate = price_results(to_stop, make_client(sections.pricing, price_session), now=stop_at, section=sections.pricing)
        report.extra["cost_overnight"] = estimate.to_dict()
    ex = sections.exemption
    form = exemption_form(now, next_morning(stop_at, sections.pricing), ex.time_zones, ex.default_time_zone, ex.max_hours)
    cards = warning_cards(groups, stop_at, form, estimate, sections.warning.max_cis_per_card)

    by_key = {ci.key: (ci, d) for ci, d in decisions}
    capacity = fit_lead_time(len(cards), sections.warning.minutes_before)
    report.extra["teams_capacity"] = capacity
    if not capacity["fits"]:
        log.error("%s", capacity["message"])
        if not dry_run:
            post_card("admin_notice", admin_capacity_notice(capacity), warning_url(settings, sections), CHANNEL, session=teams_session, sleep=sleep)
    pacer = ConnectorPacer(clock=clock, sleep=sleep)
    deliveries = []
    for card in cards:
        problem = _deliver(card, warning_url(settings, sections), dry_run, pacer, teams_session, sleep)
        status = "failed" if problem else "printed" if dry_run else "posted"
        deliveries.append({**card.recipient.to_dict(), "compute_instances": len(card.compute_instances), "delivery": status})
        for key in card.compute_instances:
            ci, decision = by_key[key]
            cost = estimate.items.get(key) if estimate is not None else None
            outcome, detail = _outcome(card, dry_run, problem)
            row = CIResult.for_ci(ci, outcome, detail + (f"; overnight {cost.approx_text}" if cost else ""), decision.exemption_record)
            if cost is not None:
                row.extra["cost"] = cost.to_dict()
            report.results.append(row)
    report.extra["deliveries"] = deliveries
    report.finish()
    return report


def fit_lead_time(cards: int, minutes_before: int) -> Dict[str, Any]:
    """Whether ``cards`` warning posts fit in the lead time at the connector's pace, and what would fit.

    Answers, approvals and the nightly summary share the same connection, so a fleet that only just
    fits leaves them waiting: the message says so too."""
    needed = time_needed(cards)
    lead = minutes_before * 60.0
    fits = needed < lead
    per_lead = int(lead // CONNECTOR_WINDOW_SECONDS + (0 if lead % CONNECTOR_WINDOW_SECONDS == 0 else 1)) * CONNECTOR_CALLS
    needed_minutes = int(needed // 60) + 1
    if fits:
        limit = f"{CONNECTOR_CALLS} per {CONNECTOR_WINDOW_SECONDS / 60:.0f} min"
        message = f"{cards} warning card(s) take about {needed / 60:.0f} min at the Teams connector's limit ({limit}); the lead time is {minutes_before} min"
    else:
        message = (
            f"{cards} warning cards do not fit the {minutes_before}-minute lead time: the Teams connector posts at most {CONNECTOR_CALLS} cards per "
            f"{CONNECTOR_WINDOW_SECONDS / 60:.0f} minutes per connection (about {per_lead} in {minutes_before} min), so the last owners are warned "
            f"about {needed / 60:.0f} min after the first, after the stop. Set warning.minutes_before to at least {needed_minutes + 5} "
            "(and publish again), or lower the number of cards (warning.max_cis_per_card, fewer workspaces per owner)"
        )
    return {"cards": cards, "seconds_needed": needed, "lead_seconds": lead, "fits": fits, "message": message}


def admin_capacity_notice(capacity: Mapping[str, Any]) -> Dict[str, Any]:
    """The ``admin_notice`` context that tells the admins the warnings do not fit the lead time."""
    return {
        "title": "Stop warnings arrive too late",
        "what": capacity["message"] + ".",
        "runbook": RUNBOOK,
        "details": [
            f"cards: {capacity['cards']}",
            f"time needed: {capacity['seconds_needed'] / 60:.0f} min",
            f"lead time: {capacity['lead_seconds'] / 60:.0f} min",
        ],
    }


def _deliver(
    card: WarningCard, workflow_url: Optional[str], dry_run: bool, pacer: ConnectorPacer, session: Any, sleep: Callable[[float], None]
) -> Optional[str]:
    """Render and post (or print) one card; None when delivered, else why not."""
    posted = post_card("stop_warning", card.context, workflow_url, address_of(card.recipient), session=session, pacer=pacer, sleep=sleep, dry_run=dry_run)
    if posted.card is None:
        return posted.error
    if dry_run:
        print(DRY_RUN_MARKER + json.dumps({"recipient": card.recipient.to_dict(), "card": posted.card}, ensure_ascii=False, separators=(",", ":")))
        return None
    return None if posted.ok else f"could not post the warning to Teams: {posted.error}"


def _outcome(card: WarningCard, dry_run: bool, problem: Optional[str]) -> Tuple[str, str]:
    to = card.recipient.label
    if problem:
        return FAILED, f"warning for {to} not delivered: {problem}"
    return (WOULD_WARN, f"would warn {to}") if dry_run else (WARNED, f"warned {to}")
