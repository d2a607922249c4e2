"""Which compute instances the morning start switches on: pure logic, no I/O.

A CI opts in with the tag ``<prefix>.auto-start`` (:attr:`TagNames.auto_start`): ``true``/``yes``
means every start day, a list such as ``mon,wed,fri`` narrows it to those days. The start runs
only on the configured days (settings ``start.days``, Monday to Friday by default) and never on a
configured holiday; "today" is the date in ``start.time_zone`` (a sweep at 06:00 in Amsterdam is
still the previous day in UTC).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import FrozenSet, Mapping, Optional

from shared.models import ALREADY_RUNNING, FAILED, FAILED_STATES, SKIPPED, STARTED, TRANSITION_STATES, WOULD_START, ComputeInstanceRecord
from shared.sections import DAYS, FULL_DAY_NAMES, StartSection
from shared.tags import PLACE_WORKSPACE, Exemption, ExemptionStatus, TagNames, read_exemption_for, tag_value
from shared.times import load_zone

# Outcomes: every CI in a start report ends with exactly one of these.
OUTCOMES = (STARTED, WOULD_START, ALREADY_RUNNING, SKIPPED, FAILED)
NOT_OPTED_IN = "not opted in"  # how the reason of a CI without the opt-in tag begins

YES = ("true", "yes", "on", "1")
NO = ("false", "no", "off", "0", "")




@dataclass(frozen=True)
class StartDecision:
    """``start`` says whether to start the CI; ``outcome`` is the result if it is not started."""

    start: bool
    outcome: str
    reason: str
    exemption: Optional[ExemptionStatus] = None  # from the CI's tags or its workspace's (shared.tags)

    @property
    def act(self) -> bool:
        """Whether the sweep acts on this CI (the shared skeleton in shared.azure.bulk reads this)."""
        return self.start

    @property
    def exemption_record(self) -> Optional[Exemption]:
        """A valid exemption, wherever it is recorded, for the report row (the start does not act on it)."""
        return self.exemption.exemption if self.exemption is not None and self.exemption.protects else None


@dataclass(frozen=True)
class OptIn:
    """What a CI's auto-start tag says: ``days`` None means every start day."""

    opted_in: bool
    days: Optional[FrozenSet[int]] = None
    problem: str = ""






def local_today(now: datetime, time_zone: str) -> date:
    """The calendar date at ``now`` (aware) in ``time_zone``."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(load_zone(time_zone)).date()


def read_opt_in(tags: Mapping[str, str], names: TagNames = TagNames()) -> OptIn:
    """Read the auto-start tag: yes/true, a day list such as ``mon,wed``, or absent/no."""
    raw = tag_value(tags, names.auto_start)
    if raw is None:
        return OptIn(False)
    value = raw.strip().lower()
    if value in YES:
        return OptIn(True)
    if value in NO:
        return OptIn(False)
    days = set()
    for token in re.split(r"[\s,;]+", value):
        if not token:
            continue
        short = FULL_DAY_NAMES.get(token, token)
        if short not in DAYS:
            return OptIn(False, problem=f"tag {names.auto_start}='{raw}' is not yes/no or a list of days such as mon,wed,fri")
        days.add(DAYS.index(short))
    return OptIn(True, frozenset(days))


def decide_start(
    ci: ComputeInstanceRecord, today: date, section: StartSection, names: TagNames = TagNames(), now: Optional[datetime] = None
) -> StartDecision:
    """Decide whether the morning start switches ``ci`` on, ``today`` being the local date.

    With ``now``, the CI's exemption (its own tags or its workspace's) is read too and reported with
    the row; a Stopped CI whose valid exemption did not keep it running is said to be so.
    """
    decision = _decide_start(ci, today, section, names)
    if now is None:
        return decision
    status = read_exemption_for(ci.tags, ci.workspace.tags, ci.name, now, names)
    reason = decision.reason
    if status.protects and (ci.state or "") == "Stopped":
        where = " (recorded on the workspace)" if status.place == PLACE_WORKSPACE else ""
        trigger = {"Schedule": "its own stop schedule", "IdleShutdown": "its own idle shutdown"}.get(ci.last_operation_trigger or "", "someone")
        reason += f"; it is exempt{where} but was stopped by {trigger}"
    return StartDecision(decision.start, decision.outcome, reason, status)


def _decide_start(ci: ComputeInstanceRecord, today: date, section: StartSection, names: TagNames) -> StartDecision:
    opt = read_opt_in(ci.tags, names)
    if opt.problem:
        return StartDecision(False, SKIPPED, f"not started: {opt.problem}")
    if not opt.opted_in:
        return StartDecision(False, SKIPPED, f"{NOT_OPTED_IN} (tag {names.auto_start})")
    state = ci.state or "Unknown"
    if state in ("Running", "JobRunning"):
        return StartDecision(False, ALREADY_RUNNING, "already running")
    if state == "Starting":
        return StartDecision(False, ALREADY_RUNNING, "already starting")
    if state in TRANSITION_STATES or state == "Stopping":
        return StartDecision(False, SKIPPED, f"in transition ({state}): not touched")
    if state in FAILED_STATES or state != "Stopped":
        return StartDecision(False, SKIPPED, f"in state {state}: not touched, needs a look")
    day = DAYS[today.weekday()]
    if today in section.holiday_dates():
        return StartDecision(False, SKIPPED, f"holiday ({today.isoformat()}): no start today")
    if today.weekday() not in section.start_days():
        return StartDecision(False, SKIPPED, f"no start on {day} (start.days: {','.join(section.days)})")
    if opt.days is not None and today.weekday() not in opt.days:
        wanted = ",".join(DAYS[d] for d in sorted(opt.days)) or "none"
        return StartDecision(False, SKIPPED, f"opted in for {wanted}, not {day}")
    return StartDecision(True, STARTED, f"was Stopped, opted in ({'every start day' if opt.days is None else day})")
