"""The nightly stop sweep: discover, decide (pure), stop in bulk, report.

Every CI found ends with exactly one outcome: stopped, would_stop (dry run), already_stopped,
exempt, skipped or failed. A subscription or workspace that cannot be read is a scope error.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Dict, List, Optional, Tuple

from shared.azure import bulk
from shared.azure.discovery import Inventory, discover
from shared.models import ALREADY_STOPPED, FAILED, SKIPPED, STOPPED, WOULD_STOP, ComputeInstanceRecord
from shared.pricing.cost import PriceLookups, PricingSection, make_client, price_results
from shared.report import CIResult, RunReport
from shared.settings import Settings
from shared.stop.policy import Decision, StopPolicy, decide_stop
from shared.times import format_instant

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StopSection:
    """Settings section ``stop``."""

    stop_job_running: bool = False
    exclude: Tuple[str, ...] = ()
    concurrency: int = 16
    writes_per_second: float = 9.0
    write_burst: int = 180
    confirm_timeout_seconds: float = 1200.0
    confirm_interval_seconds: float = 15.0
    expiring_window_hours: float = 24.0

    def __post_init__(self) -> None:
        self.bulk()  # validates concurrency and timings now, so a bad setting fails before any work

    def policy(self) -> StopPolicy:
        return StopPolicy(stop_job_running=self.stop_job_running, exclude=self.exclude)

    def bulk(self) -> bulk.BulkSettings:
        return bulk.BulkSettings(self.concurrency, self.writes_per_second, self.write_burst, self.confirm_timeout_seconds, self.confirm_interval_seconds)


def plan(instances: List[ComputeInstanceRecord], now: datetime, policy: StopPolicy, settings: Settings) -> List[Tuple[ComputeInstanceRecord, Decision]]:
    """The decision for every CI (pure): what the sweep will do, used by the dry run and the warning."""
    return [(ci, decide_stop(ci, now, policy, settings.tags)) for ci in instances]


def result_for(ci: ComputeInstanceRecord, outcome: str, detail: str, decision: Optional[Decision] = None, state: Optional[str] = None) -> CIResult:
    """A report row for ``ci``."""
    ex = decision.exemption.exemption if decision else None
    return CIResult(
        subscription_id=ci.workspace.subscription_id,
        resource_group=ci.workspace.resource_group,
        workspace=ci.workspace.name,
        compute_instance=ci.name,
        state=state or ci.state,
        outcome=outcome,
        detail=detail,
        vm_size=ci.vm_size,
        location=ci.location,
        exempt_until=format_instant(ex.until) if ex else None,
        exempt_by=ex.by if ex else None,
    )


_BULK_TO_OUTCOME = {bulk.DONE: STOPPED, bulk.ALREADY: ALREADY_STOPPED, bulk.GONE: SKIPPED, bulk.BUSY: SKIPPED, bulk.FAILED: FAILED, bulk.TIMEOUT: FAILED}


def run_stop_sweep(
    gateway: Any,
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
    to_stop = [(ci, d) for ci, d in decisions if d.stop]
    for ci, d in decisions:
        if not d.stop:
            report.results.append(result_for(ci, d.outcome, d.reason, d))
    log.info("Plan: %d to stop, %d left alone", len(to_stop), len(decisions) - len(to_stop))
    # Prices are looked up while the stops run; a lookup that fails or is slow leaves that price unknown.
    lookups = PriceLookups(make_client(pricing, price_session), [ci for ci, _ in to_stop]) if pricing.enabled and to_stop else None

    if dry_run:
        for ci, d in to_stop:
            report.results.append(result_for(ci, WOULD_STOP, f"would stop; {d.reason}", d))
    else:
        fresh: Dict[str, Decision] = {}
        precheck = _precheck(now, clock, section.policy(), settings, fresh)
        outcomes = bulk.run_bulk(gateway, [ci for ci, _ in to_stop], bulk.STOP, section.bulk(), clock=clock, sleep=sleep, precheck=precheck)
        for ci, d in to_stop:
            res = outcomes[ci.key]
            if res.status == bulk.SPARED:
                # What protects it now (an exemption recorded since discovery) is what the report shows.
                late = fresh[ci.key]
                detail = f"{late.reason} (seen just before its stop; {res.detail})"
                report.results.append(result_for(ci, late.outcome, detail, late, state=res.final_state))
                continue
            detail = f"{res.detail}; {d.reason}" if res.status == bulk.DONE else res.detail
            report.results.append(result_for(ci, _BULK_TO_OUTCOME[res.status], detail, d, state=res.final_state))
        decisions = [(ci, fresh.get(ci.key, d)) for ci, d in decisions]

    if lookups is not None:
        try:
            price_results(report, lookups, now=now, section=pricing)
        except Exception:  # noqa: BLE001 - the estimate is extra: the sweep's report must come out regardless
            log.exception("Could not estimate the cost avoided; the report goes without it")
    report.extra["expiring_exemptions"] = expiring_exemptions(decisions, now, section.expiring_window_hours)
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
