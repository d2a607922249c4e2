"""Instants, time zones and wall-clock times: one parser, one formatter, one zone loader (pure)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any, Tuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.errors import TagFormatError

_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_TIME = re.compile(r"^(\d{2}):(\d{2})(?::(\d{2}))?$")

_ISO = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[Tt ](?P<h>\d{2}):(?P<m>\d{2})(?::(?P<s>\d{2})(?:\.(?P<frac>\d{1,9}))?)?"
    r"(?P<tz>Z|z|[+-]\d{2}:?\d{2})?)?$"
)


def parse_instant(text: str) -> datetime:
    """Parse an ISO 8601 instant into an aware UTC datetime.

    Accepts ``Z`` and ``±HH:MM`` offsets (Python 3.10's ``fromisoformat`` does not take ``Z``),
    any number of fractional digits, and a bare date, read as the end of that day in UTC
    (someone tagging by hand in the portal writes ``2026-11-30`` and means "through that day").
    A date-time without an offset is refused: it is ambiguous, and guessing could stop a CI early.
    """
    value = (text or "").strip()
    m = _ISO.match(value)
    if not m:
        raise TagFormatError(f"'{text}' is not an ISO 8601 date-time such as 2026-11-24T08:00:00Z")
    try:
        day = datetime.strptime(m.group("date"), "%Y-%m-%d")
    except ValueError as exc:
        raise TagFormatError(f"'{text}' has an impossible date ({exc})") from None
    if m.group("h") is None:
        return day.replace(hour=23, minute=59, second=59, tzinfo=timezone.utc)
    if m.group("tz") is None:
        raise TagFormatError(f"'{text}' has no time zone; write it in UTC with a Z, e.g. {m.group('date')}T{m.group('h')}:{m.group('m')}:00Z")
    hour, minute, second = int(m.group("h")), int(m.group("m")), int(m.group("s") or 0)
    if hour > 23 or minute > 59 or second > 59:
        raise TagFormatError(f"'{text}' has an impossible time of day")
    micro = int((m.group("frac") or "0")[:6].ljust(6, "0"))
    tz = m.group("tz")
    if tz in ("Z", "z"):
        offset = timedelta(0)
    else:
        digits = tz[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:])
        if hours > 23 or minutes > 59:
            raise TagFormatError(f"'{text}' has an impossible UTC offset")
        offset = timedelta(hours=hours, minutes=minutes) * (1 if tz[0] == "+" else -1)
    local = day.replace(hour=hour, minute=minute, second=second, microsecond=micro, tzinfo=timezone(offset))
    return local.astimezone(timezone.utc)


def format_instant(moment: datetime) -> str:
    """Format an aware datetime as the canonical tag value, UTC to the second: ``2026-11-24T08:00:00Z``."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise TagFormatError("refusing to format a naive datetime: give it a time zone")
    return moment.astimezone(timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


_ZONE = re.compile(r"^[A-Za-z0-9_+\-]+(?:/[A-Za-z0-9_+\-]+)*$")


def local_to_utc(day: str, clock: str, zone_name: str) -> Tuple[datetime, str]:
    """Convert a wall-clock date and time in an IANA zone to an aware UTC instant.

    Returns ``(utc, local_description)``. Raises ValueError with a readable message for an
    impossible date or time, an unknown zone, or a wall-clock time that does not exist because
    the clocks go forward at that moment. A time that happens twice (clocks go back) is read as
    its first occurrence, the earlier instant.
    """
    dm = _DATE.match(day)
    if not dm:
        raise ValueError(f"'{_show(day)}' is not a date such as 2026-11-24")
    tm = _TIME.match(clock)
    if not tm:
        raise ValueError(f"'{_show(clock)}' is not a time such as 18:30")
    zone = load_zone(zone_name)
    try:
        naive = datetime(int(dm.group(1)), int(dm.group(2)), int(dm.group(3)), int(tm.group(1)), int(tm.group(2)), int(tm.group(3) or 0))
    except ValueError:
        raise ValueError(f"{_show(day)} {_show(clock)} is not a real date and time") from None
    local = naive.replace(tzinfo=zone, fold=0)
    utc = local.astimezone(timezone.utc)
    # A wall time inside a spring-forward gap does not survive the round trip.
    if utc.astimezone(zone).replace(tzinfo=None) != naive:
        raise ValueError(f"{day} {clock} does not exist in {zone_name}: the clocks go forward then. Pick a time outside that hour.")
    return utc, f"{naive.strftime('%Y-%m-%d %H:%M')} {zone_name}"


def load_zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; ValueError with a readable message if there is none."""
    if not isinstance(name, str) or not name or len(name) > 64 or not _ZONE.match(name) or ".." in name:
        raise ValueError(f"'{_show(name)}' is not a time zone name such as Europe/Berlin")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"'{_show(name)}' is not a known time zone (use a name such as Europe/Berlin or UTC)") from None


def _show(value: Any) -> str:
    """A hostile string made short and printable for an error message."""
    text = "".join(ch if ch.isprintable() else "?" for ch in str(value))
    return text if len(text) <= 60 else text[:59] + "…"


# -- a CI's own schedules (docs/platform.md, "Azure ML compute instances": schedules.computeStartStop) --
_DOW_NAMES = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
_MONTH_NAMES = {m: i + 1 for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}
_WEEKDAYS = {"monday": 0, "tuesday": 1, "wednesday": 2, "thursday": 3, "friday": 4, "saturday": 5, "sunday": 6}
MAX_SCAN_MINUTES = 14 * 24 * 60  # longer spans are only scanned this far


def _cron_field(text: str, low: int, high: int, names: Any = None) -> Tuple[set, bool]:
    """The values a cron field allows and whether it is a wildcard; ValueError if unreadable."""
    values: set = set()
    for part in text.lower().split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if base in ("*", "?"):
            start, end = low, high
        else:
            first, _, last = base.partition("-")
            start = int(names[first]) if names and first in names else int(first)
            end = (int(names[last]) if names and last in names else int(last)) if last else (high if step_text else start)
        if step < 1 or start < low or end > high or start > end:
            raise ValueError(f"cron field '{text}' is out of range")
        values.update(range(start, end + 1, step))
    return values, text in ("*", "?")


def cron_fires_between(expression: str, zone_name: str, start: datetime, end: datetime) -> Any:
    """The first minute in [start, end) at which a 5-field cron expression fires in ``zone_name``, or
    None; raises ValueError for an expression or zone this reader does not understand."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"cron expression '{expression}' does not have 5 fields")
    minutes, _ = _cron_field(fields[0], 0, 59)
    hours, _ = _cron_field(fields[1], 0, 23)
    days, any_day = _cron_field(fields[2], 1, 31)
    months, _ = _cron_field(fields[3], 1, 12, _MONTH_NAMES)
    dows, any_dow = _cron_field(fields[4], 0, 7, _DOW_NAMES)
    dows = {d % 7 for d in dows}
    zone = load_zone(zone_name)

    def matches(local: datetime) -> bool:
        if local.minute not in minutes or local.hour not in hours or local.month not in months:
            return False
        dom_ok, dow_ok = local.day in days, (local.isoweekday() % 7) in dows
        if any_day or any_dow:
            return dom_ok and dow_ok
        return dom_ok or dow_ok  # cron: both restricted means either

    return _first_match(matches, zone, start, end)


def weekly_fires_between(hours: Any, minutes: Any, week_days: Any, zone_name: str, start: datetime, end: datetime) -> Any:
    """The first minute in [start, end) matching a recurrence pattern (hours x minutes, on ``week_days``
    or every day) in ``zone_name``, or None; ValueError for an unknown zone or day name."""
    zone = load_zone(zone_name)
    wanted_days = {_WEEKDAYS[d.lower()] for d in week_days} if week_days else set(range(7))
    hour_set, minute_set = set(hours or range(24)), set(minutes or (0,))
    return _first_match(lambda t: t.weekday() in wanted_days and t.hour in hour_set and t.minute in minute_set, zone, start, end)


def _first_match(matches: Any, zone: Any, start: datetime, end: datetime) -> Any:
    moment = start.astimezone(timezone.utc).replace(second=0, microsecond=0)
    if moment < start:
        moment += timedelta(minutes=1)
    stop = min(end, moment + timedelta(minutes=MAX_SCAN_MINUTES))
    while moment < stop:
        if matches(moment.astimezone(zone)):
            return moment
        moment += timedelta(minutes=1)
    return None
