"""What to do with one compute instance tonight: pure logic, no I/O.

``decide_stop`` maps (CI state, tags, now, policy) to a :class:`Decision`. It is the only place
that says which CIs the nightly sweep stops, so the sweep, the dry run and the pre-stop warning
all agree by construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Optional

from shared.models import ALREADY_STOPPED, EXEMPT, RUNNING_STATES, SKIPPED, STOPPED, TRANSITION_STATES, ComputeInstanceRecord
from shared.sections import StopPolicy
from shared.tags import EXPIRED, MALFORMED, PLACE_WORKSPACE, Exemption, ExemptionStatus, TagNames, read_exemption_for
from shared.times import format_instant


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
    if state == "Stopped":
        return Decision(False, ALREADY_STOPPED, "already stopped", status)
    if state == "Stopping":
        return Decision(False, ALREADY_STOPPED, "already stopping", status)
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
