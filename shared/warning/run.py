"""The pre-stop warning's orchestration (I/O): discover, take the sweep's own plan at the stop time,
price it, and deliver one card per recipient. The pure parts (who gets which CIs, card contexts)
are in :mod:`shared.warning.policy`; the runbook ``runbooks/warn_before_stop.py`` only parses parameters."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Optional, Tuple

from shared.azure.discovery import Inventory, discover
from shared.azure.ml_gateway import MLGateway
from shared.azure.pacing import TokenBucketPacer
from shared.exemption.policy import load_section
from shared.models import FAILED
from shared.pricing.cost import CostEstimate, make_client, next_morning, price_results
from shared.report import CIResult, RunReport
from shared.sections import ExemptionSection, PricingSection, StopSection, WarningSection
from shared.settings import Settings
from shared.stop.run import plan
from shared.teams.cards import CardError, render_card
from shared.teams.client import TeamsWorkflowClient
from shared.times import format_instant
from shared.warning.policy import WarningCard, delivery_url, exemption_form, stop_time, to_stop_by_recipient, warning_cards

RUNBOOK = "warn_before_stop"
WARNED = "warned"
WOULD_WARN = "would_warn"  # dry run
# Teams throttles a workflow webhook above 4 requests a second: stay under it.
POSTS_PER_SECOND = 3.0
DRY_RUN_MARKER = "STOP_WARNING_CARD "
log = logging.getLogger("ci_governance." + RUNBOOK)


@dataclass(frozen=True)
class Sections:
    """Every settings section the warning reads, checked before any call."""

    warning: WarningSection
    stop: StopSection
    pricing: PricingSection
    exemption: ExemptionSection
    workflow_url: Optional[str]

    @classmethod
    def load(cls, settings: Settings) -> Sections:
        warning = settings.section("warning", WarningSection)
        return cls(
            warning,
            settings.section("stop", StopSection),
            settings.section("pricing", PricingSection),
            load_section(settings),
            warning.workflow_url or settings.teams.workflow_url,
        )


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
    pacer = TokenBucketPacer(burst=2, per_second=POSTS_PER_SECOND)
    deliveries = []
    for card in cards:
        problem = _deliver(card, sections.workflow_url, dry_run, pacer, teams_session, sleep)
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


def _deliver(
    card: WarningCard, workflow_url: Optional[str], dry_run: bool, pacer: TokenBucketPacer, session: Any, sleep: Callable[[float], None]
) -> Optional[str]:
    """Render and post (or print) one card; None when delivered, else why not."""
    try:
        rendered = render_card("stop_warning", **card.context)
    except CardError as exc:
        log.error("Could not render the warning for %s: %s", card.recipient.label, exc)
        return f"could not render the card: {exc}"
    if dry_run:
        print(DRY_RUN_MARKER + json.dumps({"recipient": card.recipient.to_dict(), "card": rendered}, ensure_ascii=False, separators=(",", ":")))
        return None
    assert workflow_url  # main refuses to post without one
    pacer.acquire()
    result = TeamsWorkflowClient(delivery_url(workflow_url, card.recipient), session=session, sleep=sleep).post_card(rendered)
    return None if result.ok else f"could not post the warning to Teams: {result.error}"


def _outcome(card: WarningCard, dry_run: bool, problem: Optional[str]) -> Tuple[str, str]:
    to = card.recipient.label
    if problem:
        return FAILED, f"warning for {to} not delivered: {problem}"
    return (WOULD_WARN, f"would warn {to}") if dry_run else (WARNED, f"warned {to}")
