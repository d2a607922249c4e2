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
from typing import FrozenSet, Mapping, Optional, Tuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.azure.bulk import BulkSettings
from shared.models import FAILED, FAILED_STATES, SKIPPED, TRANSITION_STATES, ComputeInstanceRecord
from shared.tags import TagNames, tag_value

# Outcomes: every CI in a start report ends with exactly one of these.
STARTED = "started"
WOULD_START = "would_start"  # dry run
ALREADY_RUNNING = "already_running"
OUTCOMES = (STARTED, WOULD_START, ALREADY_RUNNING, SKIPPED, FAILED)
NOT_OPTED_IN = "not opted in"  # how the reason of a CI without the opt-in tag begins

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = date.weekday()
_FULL = {"monday": "mon", "tuesday": "tue", "wednesday": "wed", "thursday": "thu", "friday": "fri", "saturday": "sat", "sunday": "sun"}
YES = ("true", "yes", "on", "1")
NO = ("false", "no", "off", "0", "")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class StartSection:
    """Settings section ``start``."""

    days: Tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri")
    holidays: Tuple[str, ...] = ()  # YYYY-MM-DD, in time_zone
    time_zone: str = "UTC"
    concurrency: int = 16
    writes_per_second: float = 9.0
    write_burst: int = 180
    confirm_timeout_seconds: float = 1200.0
    confirm_interval_seconds: float = 15.0

    def __post_init__(self) -> None:
        unknown = [d for d in self.days if d.strip().lower() not in DAYS]
        if unknown:
            raise ValueError(f"days: {', '.join(unknown)} not among {', '.join(DAYS)}")
        for day in self.holidays:
            parse_date(day)
        zone(self.time_zone)
        self.bulk()  # validates concurrency and timings before any work

    def bulk(self) -> BulkSettings:
        return BulkSettings(
            concurrency=self.concurrency,
            writes_per_second=self.writes_per_second,
            write_burst=self.write_burst,
            confirm_timeout_seconds=self.confirm_timeout_seconds,
            confirm_interval_seconds=self.confirm_interval_seconds,
        )

    def start_days(self) -> FrozenSet[int]:
        return frozenset(DAYS.index(d.strip().lower()) for d in self.days)

    def holiday_dates(self) -> FrozenSet[date]:
        return frozenset(parse_date(d) for d in self.holidays)


@dataclass(frozen=True)
class StartDecision:
    """``start`` says whether to start the CI; ``outcome`` is the result if it is not started."""

    start: bool
    outcome: str
    reason: str


@dataclass(frozen=True)
class OptIn:
    """What a CI's auto-start tag says: ``days`` None means every start day."""

    opted_in: bool
    days: Optional[FrozenSet[int]] = None
    problem: str = ""


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; ValueError if unknown (Automation needs the tzdata package)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"time_zone '{name}' is not a known IANA time zone (e.g. Europe/Amsterdam or UTC)") from None


def parse_date(text: str) -> date:
    """``YYYY-MM-DD`` → date; ValueError with the offending text otherwise."""
    if not _DATE.match(text or ""):
        raise ValueError(f"holiday '{text}' is not a date such as 2026-12-25")
    try:
        return datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        raise ValueError(f"holiday '{text}' is not a real date") from None


def local_today(now: datetime, time_zone: str) -> date:
    """The calendar date at ``now`` (aware) in ``time_zone``."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(zone(time_zone)).date()


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
        short = _FULL.get(token, token)
        if short not in DAYS:
            return OptIn(False, problem=f"tag {names.auto_start}='{raw}' is not yes/no or a list of days such as mon,wed,fri")
        days.add(DAYS.index(short))
    return OptIn(True, frozenset(days))


def decide_start(ci: ComputeInstanceRecord, today: date, section: StartSection, names: TagNames = TagNames()) -> StartDecision:
    """Decide whether the morning start switches ``ci`` on, ``today`` being the local date."""
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
