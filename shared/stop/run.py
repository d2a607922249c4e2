"""The nightly stop sweep: discover, decide (pure), stop in bulk, report.

Every CI found ends with exactly one outcome: stopped, would_stop (dry run), already_stopped,
exempt, skipped or failed. A subscription or workspace that cannot be read is a scope error.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Dict, List, Optional, Tuple

from shared.azure import bulk
from shared.azure.discovery import Inventory, discover
from shared.azure.ml_gateway import MLGateway
from shared.models import ComputeInstanceRecord
from shared.pricing.cost import PriceLookups, make_client, price_results
from shared.report import RunReport
from shared.sections import PricingSection, StopPolicy, StopSection
from shared.settings import Settings
from shared.stop.policy import Decision, decide_stop, exemption_undermined_by
from shared.times import format_instant

log = logging.getLogger(__name__)




def plan(instances: List[ComputeInstanceRecord], now: datetime, policy: StopPolicy, settings: Settings) -> List[Tuple[ComputeInstanceRecord, Decision]]:
    """The decision for every CI (pure): what the sweep will do, used by the dry run and the warning."""
    return [(ci, decide_stop(ci, now, policy, settings.tags)) for ci in instances]


def run_stop_sweep(
    gateway: MLGateway,
    settings: Settings,
    *,
    now: Optional[datetime] = None,
    dry_run: bool = False,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    inventory: Optional[Inventory] = None,
    price_session: Any = None,
) -> RunReport:
    """Run the sweep over ``settings.scope`` and return its report (with the estimated cost avoided
    when section ``pricing`` is enabled; ``price_session`` is the HTTP session for price lookups)."""
    now = now or datetime.now(timezone.utc)
    section = settings.section("stop", StopSection)
    pricing = settings.section("pricing", PricingSection)
    report = RunReport("stop_compute_instances", dry_run, started_at=now)
    inventory = inventory or discover(gateway, settings.scope, concurrency=section.concurrency)
    report.errors.extend(inventory.errors)

    decisions = plan(inventory.instances, now, section.policy(), settings)
    to_stop = [ci for ci, d in decisions if d.stop]
    # Prices are looked up while the stops run; a lookup that fails or is slow leaves that price unknown.
    lookups = PriceLookups(make_client(pricing, price_session), to_stop) if pricing.enabled and to_stop else None
    # Just before each workspace's stops, what protects its CIs is read again (shared.azure.bulk).
    fresh: Dict[str, Decision] = {}
    precheck = None if dry_run else _precheck(now, clock, section.policy(), settings, fresh)
    bulk.sweep(gateway, report, decisions, bulk.STOP, section.bulk(), dry_run=dry_run, clock=clock, sleep=sleep, precheck=precheck, fresh=fresh)
    decisions = [(ci, fresh.get(ci.key, d)) for ci, d in decisions]

    if lookups is not None:
        try:
            price_results(report, lookups, now=now, section=pricing)
        except Exception:  # noqa: BLE001 - the estimate is extra: the sweep's report must come out regardless
            log.exception("Could not estimate the cost avoided; the report goes without it")
    report.extra["expiring_exemptions"] = expiring_exemptions(decisions, now, section.expiring_window_hours)
    report.extra["undermined_exemptions"] = undermined_exemptions(decisions, now)
    report.finish()
    return report


def _precheck(now: datetime, clock: Callable[[], float], policy: StopPolicy, settings: Settings, fresh: Dict[str, Decision]) -> bulk.Precheck:
    """The sweep's decision again, on the CI as re-read just before its stop (see shared.azure.bulk).

    "Now" moves on with the run's clock, so an exemption is judged at the moment the stop would be
    sent. A CI the decision would no longer stop is left alone and its fresh decision kept in ``fresh``.
    """
    started = clock()

    def check(listed: ComputeInstanceRecord, current: Optional[ComputeInstanceRecord]) -> Optional[bulk.OperationResult]:
        if current is None:
            return bulk.OperationResult(bulk.GONE, "deleted since it was listed (gone just before its stop)", "Deleted")
        at = now + timedelta(seconds=max(0.0, clock() - started))
        decision = decide_stop(current, at, policy, settings.tags)
        if decision.stop:
            return None
        fresh[listed.key] = decision
        log.info("Not stopping %s: %s (changed since discovery)", listed.key, decision.reason)
        return bulk.OperationResult(bulk.SPARED, "not sent", current.state)

    return check


def expiring_exemptions(decisions: List[Tuple[ComputeInstanceRecord, Decision]], now: datetime, window_hours: float) -> List[Dict[str, str]]:
    """Valid exemptions that end before the next sweep (within ``window_hours``)."""
    horizon = now + timedelta(hours=window_hours)
    out = []
    for ci, d in decisions:
        ex = d.exemption.exemption
        if d.exemption.protects and ex is not None and ex.until <= horizon:
            out.append({"workspace": ci.workspace.name, "compute_instance": ci.name, "until": format_instant(ex.until), "by": ex.by})
    return sorted(out, key=lambda e: e["until"])


def undermined_exemptions(decisions: List[Tuple[ComputeInstanceRecord, Decision]], now: datetime) -> List[Dict[str, Any]]:
    """Valid exemptions that the CI's own idle shutdown or stop schedule may end early (our tags do not
    bind the platform): the nightly report lists them so that their owners can change the CI."""
    out = []
    for ci, d in decisions:
        ex = d.exemption.exemption
        if d.exemption.protects and ex is not None:
            why = exemption_undermined_by(ci, now, ex.until)
            if why:
                log.warning("Exemption of %s may end early: %s", ci.key, "; ".join(why))
                out.append({"workspace": ci.workspace.name, "compute_instance": ci.name, "until": format_instant(ex.until), "undermined_by": why})
    return out
