"""The morning start: discover, decide (pure), start in bulk, report.

Every CI found ends with exactly one outcome: started, would_start (dry run), already_running,
skipped or failed. A subscription or workspace that cannot be read is a scope error. Same report,
JSON summary and exit codes as the stop sweep.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Callable, List, Optional, Tuple

from shared.azure import bulk
from shared.azure.discovery import Inventory, discover
from shared.azure.ml_gateway import MLGateway
from shared.models import SKIPPED, ComputeInstanceRecord
from shared.report import CIResult, RunReport, routine_label
from shared.sections import DAYS, StartSection
from shared.settings import Settings
from shared.start.policy import NOT_OPTED_IN, StartDecision, decide_start, local_today

log = logging.getLogger(__name__)

RUNBOOK = "start_compute_instances"


def plan(instances: List[ComputeInstanceRecord], now: datetime, section: StartSection, settings: Settings) -> List[Tuple[ComputeInstanceRecord, StartDecision]]:
    """The decision for every CI (pure): what the start will do, also what the dry run shows."""
    today = local_today(now, section.time_zone)
    return [(ci, decide_start(ci, today, section, settings.tags, now)) for ci in instances]


def run_start_sweep(
    gateway: MLGateway,
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
    log.info("Morning start for %s (%s, %s)", today.isoformat(), DAYS[today.weekday()], section.time_zone)
    bulk.sweep(gateway, report, decisions, bulk.START, section.bulk(), dry_run=dry_run, clock=clock, sleep=sleep)

    report.finish()
    return report
