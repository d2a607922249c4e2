"""The morning start: discover, decide (pure), start in bulk, report.

Every CI found ends with exactly one outcome: started, would_start (dry run), already_running,
skipped or failed. A subscription or workspace that cannot be read is a scope error. Same report,
JSON summary and exit codes as the stop sweep.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Any, Callable, List, Optional, Tuple

from shared.azure import bulk
from shared.azure.discovery import Inventory, discover
from shared.models import FAILED, SKIPPED, ComputeInstanceRecord
from shared.report import CIResult, RunReport, routine_label
from shared.settings import Settings
from shared.start.policy import ALREADY_RUNNING, DAYS, NOT_OPTED_IN, STARTED, WOULD_START, StartDecision, StartSection, decide_start, local_today
from shared.stop.run import result_for

log = logging.getLogger(__name__)

RUNBOOK = "start_compute_instances"
_BULK_TO_OUTCOME = {bulk.DONE: STARTED, bulk.ALREADY: ALREADY_RUNNING, bulk.GONE: SKIPPED, bulk.BUSY: SKIPPED, bulk.FAILED: FAILED, bulk.TIMEOUT: FAILED}


def plan(instances: List[ComputeInstanceRecord], now: datetime, section: StartSection, settings: Settings) -> List[Tuple[ComputeInstanceRecord, StartDecision]]:
    """The decision for every CI (pure): what the start will do, also what the dry run shows."""
    today = local_today(now, section.time_zone)
    return [(ci, decide_start(ci, today, section, settings.tags)) for ci in instances]


def run_start_sweep(
    gateway: Any,
    settings: Settings,
    *,
    now: Optional[datetime] = None,
    dry_run: bool = False,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    inventory: Optional[Inventory] = None,
) -> RunReport:
    """Run the morning start over ``settings.scope`` and return its report."""
    now = now or datetime.now(timezone.utc)
    section = settings.section("start", StartSection)
    today = local_today(now, section.time_zone)
    report = RunReport(RUNBOOK, dry_run, started_at=now)
    report.extra.update(
        {
            "today": today.isoformat(),
            "weekday": DAYS[today.weekday()],
            "time_zone": section.time_zone,
            "holiday": today in section.holiday_dates(),
            "start_day": today.weekday() in section.start_days(),
        }
    )
    inventory = inventory or discover(gateway, settings.scope, concurrency=section.concurrency)
    report.errors.extend(inventory.errors)

    decisions = plan(inventory.instances, now, section, settings)
    # Most CIs never opt in: one line each would fill the job stream, so they are counted per workspace.
    not_opted_in = {ci.key for ci, d in decisions if not d.start and d.reason.startswith(NOT_OPTED_IN)}

    def aggregate(result: CIResult) -> Optional[str]:
        return "not_opted_in" if result.outcome == SKIPPED and result.key in not_opted_in else routine_label(result)

    report.aggregate = aggregate
    to_start = [(ci, d) for ci, d in decisions if d.start]
    for ci, d in decisions:
        if not d.start:
            report.results.append(result_for(ci, d.outcome, d.reason))
    log.info(
        "Plan for %s (%s, %s): %d to start, %d left alone",
        today.isoformat(),
        DAYS[today.weekday()],
        section.time_zone,
        len(to_start),
        len(decisions) - len(to_start),
    )

    if dry_run:
        for ci, d in to_start:
            report.results.append(result_for(ci, WOULD_START, f"would start; {d.reason}"))
    else:
        outcomes = bulk.run_bulk(gateway, [ci for ci, _ in to_start], bulk.START, section.bulk(), clock=clock, sleep=sleep)
        for ci, d in to_start:
            res = outcomes[ci.key]
            detail = f"{res.detail}; {d.reason}" if res.status == bulk.DONE else res.detail
            report.results.append(result_for(ci, _BULK_TO_OUTCOME[res.status], detail, state=res.final_state))

    report.finish()
    return report
