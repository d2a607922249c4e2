"""What to do with one compute instance tonight: pure logic, no I/O.

``decide_stop`` maps (CI state, tags, now, policy) to a :class:`Decision`. It is the only place
that says which CIs the nightly sweep stops, so the sweep, the dry run and the pre-stop warning
all agree by construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import List, Optional

from shared.models import (
    ALREADY_STOPPED,
    EXEMPT,
    RUNNING_STATES,
    SKIPPED,
    STOPPED,
    TRANSITION_STATES,
    TRIGGER_IDLE_SHUTDOWN,
    TRIGGER_SCHEDULE,
    ComputeInstanceRecord,
)
from shared.sections import StopPolicy
from shared.tags import EXPIRED, MALFORMED, PLACE_WORKSPACE, Exemption, ExemptionStatus, TagNames, read_exemption_for
from shared.times import cron_fires_between, format_instant, weekly_fires_between


@dataclass(frozen=True)
class Decision:
    """``stop`` says whether to stop the CI; ``outcome`` is the result if it is not stopped."""

    stop: bool
    outcome: str
    reason: str
    exemption: ExemptionStatus = field(default_factory=lambda: ExemptionStatus("none"))

    @property
    def act(self) -> bool:
        """Whether the sweep acts on this CI (the shared skeleton in shared.azure.bulk reads this)."""
        return self.stop

    @property
    def exemption_record(self) -> Optional[Exemption]:
        """The exemption the CI carries, valid or not, for the report row."""
        return self.exemption.exemption


def decide_stop(ci: ComputeInstanceRecord, now: datetime, policy: StopPolicy = StopPolicy(), names: TagNames = TagNames()) -> Decision:
    """Decide what the nightly sweep does with ``ci`` at ``now`` (timezone-aware)."""
    # The CI's own tags, or its workspace's where the CI refused them (shared.tags: precedence).
    status = read_exemption_for(ci.tags, ci.workspace.tags, ci.name, now, names)
    pattern = policy.excludes(ci)
    if pattern:
        return Decision(False, SKIPPED, f"excluded by policy (matches '{pattern}')", status)
    state = ci.state or "Unknown"
    if state in ("Stopped", "Stopping"):
        return Decision(False, ALREADY_STOPPED, f"already {state.lower()}{stopped_by_platform(ci)}", status)
    if state in TRANSITION_STATES:
        return Decision(False, SKIPPED, f"in transition ({state}): not touched", status)
    if state not in RUNNING_STATES:
        return Decision(False, SKIPPED, f"in state {state}: not touched, needs a look", status)
    if status.protects:
        ex = status.exemption
        assert ex is not None
        where = " (recorded on the workspace)" if status.place == PLACE_WORKSPACE else ""
        return Decision(False, EXEMPT, f"exempt until {format_instant(ex.until)} by {ex.by}{where}", status)
    if state == "JobRunning" and not policy.stop_job_running:
        return Decision(False, SKIPPED, "running a job (policy stop_job_running is off)", status)
    reason = "was Running" if state == "Running" else "was running a job (policy stop_job_running is on)"
    if status.state in (EXPIRED, MALFORMED):
        reason += f"; exemption ignored: {status.problem}"
    else:
        reason += ", no exemption"
    return Decision(True, STOPPED, reason, status)


def stopped_by_platform(ci: ComputeInstanceRecord) -> str:
    """`` (by its own schedule)`` / `` (by its own idle shutdown)`` when the CI's last Stop was the
    platform's (lastOperation.operationTrigger), else empty: such a stop is not the sweep's."""
    if (ci.last_operation or "").lower() != "stop":
        return ""
    if ci.last_operation_trigger == TRIGGER_SCHEDULE:
        return " (by its own stop schedule)"
    if ci.last_operation_trigger == TRIGGER_IDLE_SHUTDOWN:
        return " (by its own idle shutdown)"
    return ""


def exemption_undermined_by(ci: ComputeInstanceRecord, now: datetime, until: datetime) -> List[str]:
    """What on the CI itself may stop it before ``until`` despite an exemption (our tags do not bind
    the platform): idle shutdown, and each enabled stop schedule that fires before ``until``. Pure."""
    out: List[str] = []
    if ci.idle_shutdown_minutes:
        out.append(f"its idle shutdown stops it after {ci.idle_shutdown_minutes} minutes without activity")
    for schedule in ci.stop_schedules:
        try:
            if schedule.kind == "cron":
                fires = cron_fires_between(schedule.expression, schedule.time_zone, now, until)
            else:
                fires = weekly_fires_between(schedule.hours, schedule.minutes, schedule.week_days, schedule.time_zone, now, until)
        except (ValueError, KeyError) as exc:
            out.append(f"its stop schedule {schedule.text} may stop it (not understood here: {exc})")
            continue
        if fires is not None:
            out.append(f"its own stop schedule {schedule.text} stops it at {format_instant(fires)}")
    return out
