"""What should exist in the Automation account, built from the repository and the command line."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple
from zoneinfo import ZoneInfo

from deployment.model import (
    NAME_PREFIX,
    Desired,
    DesiredEnvironment,
    DesiredLink,
    DesiredRunbook,
    DesiredSchedule,
    DesiredSecret,
    DesiredWebhook,
    PackageSpec,
    PublishError,
    short_hash,
)
from shared.automation.secrets import secret_values, without_secrets
from shared.sections import SECRET_SETTINGS
from shared.settings import encode_settings

# Runbook type and runtime for Python 3.10 are UNCONFIRMED (docs/platform.md, "Unconfirmed"). Default: the
# runtime-environment experience, where a runbook of type "Python" names a custom environment of
# language Python, version 3.10 (Learn: automation/manage-runtime-environment.md). Both are options.
DEFAULT_RUNBOOK_TYPE = "Python"
DEFAULT_RUNTIME_VERSION = "3.10"
DEFAULT_ENVIRONMENT_PREFIX = f"{NAME_PREFIX}-py310"

# Python runbooks get their parameters positionally, and how Automation orders named values for Python is
# unconfirmed; one parameter holding every token avoids depending on it (the runbooks shlex-split it).
PARAMETER_NAME = "args"

# What the runbooks import in Automation; publish.py's own dependencies (requirements.txt) stay local.
RUNTIME_REQUIREMENTS = "requirements-runtime.txt"

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")


@dataclass(frozen=True)
class Timing:
    """When the scheduled runbooks fire."""

    stop_time: str = "19:00"
    start_time: str = "07:30"
    time_zone: str = "UTC"
    warn_minutes: int = 30


def parse_time_of_day(value: str) -> str:
    """Validate ``HH:MM`` (24 h); returns it zero-padded."""
    try:
        parsed = datetime.strptime(value.strip(), "%H:%M")
    except ValueError as exc:
        raise PublishError(f"'{value}' is not a time of day like 19:00.") from exc
    return parsed.strftime("%H:%M")


def check_time_zone(name: str) -> str:
    """Validate an IANA time zone name (Automation schedules take IANA or Windows names; we use IANA)."""
    try:
        ZoneInfo(name)
    except (KeyError, ValueError) as exc:
        raise PublishError(f"Unknown time zone '{name}': use an IANA name such as Europe/Amsterdam or UTC.") from exc
    return name


def minutes_before(time_of_day: str, minutes: int) -> str:
    """``time_of_day`` minus ``minutes``, wrapping around midnight."""
    hours, mins = (int(x) for x in time_of_day.split(":"))
    total = (hours * 60 + mins - minutes) % (24 * 60)
    return f"{total // 60:02d}:{total % 60:02d}"


def next_start(time_of_day: str, time_zone: str, now: datetime, lead: timedelta = timedelta(minutes=10)) -> datetime:
    """The first ``time_of_day`` in ``time_zone`` at least ``lead`` after ``now``.

    Automation refuses a schedule starting less than 5 minutes ahead; the recurrence keeps the local time
    of day of the start, so any day works as the first occurrence.
    """
    tz = ZoneInfo(time_zone)
    hours, mins = (int(x) for x in time_of_day.split(":"))
    local_now = now.astimezone(tz)
    candidate = local_now.replace(hour=hours, minute=mins, second=0, microsecond=0)
    while candidate < local_now + lead:
        candidate = (candidate + timedelta(days=1)).replace(hour=hours, minute=mins)
    return candidate


def split_secrets(settings: dict) -> Tuple[dict, List[DesiredSecret], Optional[str]]:
    """(the settings the jobs get, the secrets to store in Key Vault, the vault URI).

    Secret settings (shared.sections.SECRET_SETTINGS) never go into job schedules or webhooks, where
    anyone who can read a job's inputs could read them: they go to the Key Vault of
    ``secrets.key_vault``, and the jobs' settings list them in ``secrets.stored`` (docs/platform.md, "Secrets")."""
    found = secret_values(settings)
    raw_section = settings.get("secrets")
    section: Dict[str, Any] = raw_section if isinstance(raw_section, dict) else {}
    key_vault = section.get("key_vault")
    stored = tuple(sorted(set(found) | set(section.get("stored") or ())))
    if found and not key_vault:
        raise PublishError(
            f"The settings hold secrets ({', '.join(sorted(found))}) and name no Key Vault to keep them in: set"
            ' "secrets": {"key_vault": "https://<vault>.vault.azure.net"}. Job schedules and webhooks would otherwise carry them,'
            " readable by anyone who can read a job's inputs in the Automation account."
        )
    secrets = [DesiredSecret(SECRET_SETTINGS[path], path, value) for path, value in sorted(found.items())]
    return without_secrets(settings, key_vault, stored), secrets, key_vault.rstrip("/") if key_vault else None


def runbook_parameters(settings: dict) -> Dict[str, str]:
    """Parameters for every scheduled or webhook-started job: the settings as one ``--settings-b64`` argument.

    Encoded by shared.settings.encode_settings (canonical JSON), the decoder's counterpart, so whitespace
    edits to the settings file change nothing in Azure.
    """
    return {PARAMETER_NAME: f"--settings-b64 {encode_settings(settings)}"}


def load_runbooks(runbooks_dir: Path, runbook_type: str, runtime_environment: str) -> List[DesiredRunbook]:
    """Every ``runbooks/*.py`` except ``__init__.py``; the runbook name is the file stem."""
    runbooks = []
    for path in sorted(runbooks_dir.glob("*.py")):
        if path.name == "__init__.py":
            continue
        content = path.read_text(encoding="utf-8")
        runbooks.append(
            DesiredRunbook(
                name=path.stem,
                filename=path.name,
                content=content,
                sha256=hashlib.sha256(content.encode("utf-8")).hexdigest(),
                runbook_type=runbook_type,
                runtime_environment=runtime_environment,
                description=f"CI governance: {path.name} (published by publish.py)",
            )
        )
    if not runbooks:
        raise PublishError(f"No runbooks found in {runbooks_dir} (expected runbooks/*.py).")
    return runbooks


def schedules_for(timing: Timing, runbook_names: Sequence[str]) -> List[DesiredSchedule]:
    """The schedules of the runbooks that exist: nightly stop, weekday start, warning before the stop."""
    tz = timing.time_zone
    schedules = []
    if "stop_compute_instances" in runbook_names:
        schedules.append(DesiredSchedule(f"{NAME_PREFIX}-nightly-stop", "Day", timing.stop_time, tz, (), f"Nightly stop, daily at {timing.stop_time} {tz}"))
    if "start_compute_instances" in runbook_names:
        schedules.append(
            DesiredSchedule(f"{NAME_PREFIX}-weekday-start", "Week", timing.start_time, tz, WEEKDAYS, f"Weekday start, Mon-Fri at {timing.start_time} {tz}")
        )
    if "warn_before_stop" in runbook_names:
        warn_at = minutes_before(timing.stop_time, timing.warn_minutes)
        schedules.append(
            DesiredSchedule(
                f"{NAME_PREFIX}-stop-warning", "Day", warn_at, tz, (), f"Stop warning, daily at {warn_at} {tz} ({timing.warn_minutes} min before the stop)"
            )
        )
    return schedules


SCHEDULE_OF_RUNBOOK = {
    "stop_compute_instances": f"{NAME_PREFIX}-nightly-stop",
    "start_compute_instances": f"{NAME_PREFIX}-weekday-start",
    "warn_before_stop": f"{NAME_PREFIX}-stop-warning",
}
WEBHOOK_RUNBOOKS = ("handle_exemption_request", "create_compute_instance")


def environment_for(prefix: str, version: str, packages: Sequence[PackageSpec]) -> DesiredEnvironment:
    """A runtime environment named after a hash of its runtime and exact package files."""
    ordered = tuple(sorted(packages, key=lambda p: p.name))
    names = [p.name for p in ordered]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PublishError(f"Package listed twice: {', '.join(duplicates)}.")
    fingerprint = short_hash(["Python", version, [[p.name, p.version, p.sha256] for p in ordered]], 10)
    return DesiredEnvironment(name=f"{prefix}-{fingerprint}", language="Python", version=version, packages=ordered)


def with_schedule_timing(settings: dict, timing: Timing) -> dict:
    """The warning runbook's settings: it names the real stop time and time zone of the schedules
    publish.py creates, and the same lead time (one source of truth for when the sweep runs)."""
    warning = dict(settings.get("warning") or {})
    warning.update(stop_time=timing.stop_time, time_zone=timing.time_zone, minutes_before=timing.warn_minutes)
    return {**settings, "warning": warning}


def build_desired(
    *,
    runbooks_dir: Path,
    packages: Sequence[PackageSpec],
    settings: dict,
    timing: Timing,
    runbook_type: str = DEFAULT_RUNBOOK_TYPE,
    runtime_version: str = DEFAULT_RUNTIME_VERSION,
    environment_prefix: str = DEFAULT_ENVIRONMENT_PREFIX,
    webhook_expiry_days: int = 365,
) -> Desired:
    """The full desired state (pure apart from reading the runbook files)."""
    environment = environment_for(environment_prefix, runtime_version, packages)
    runbooks = load_runbooks(runbooks_dir, runbook_type, environment.name)
    names = [rb.name for rb in runbooks]
    job_settings, secrets, key_vault = split_secrets(settings)
    params = runbook_parameters(job_settings)
    per_runbook = {name: runbook_parameters(with_schedule_timing(job_settings, timing)) if name == "warn_before_stop" else dict(params) for name in names}
    schedules = schedules_for(timing, names)
    links = [DesiredLink(SCHEDULE_OF_RUNBOOK[name], name, per_runbook[name]) for name in names if name in SCHEDULE_OF_RUNBOOK]
    webhooks = [DesiredWebhook(f"{NAME_PREFIX}-{name}", name, dict(params), webhook_expiry_days) for name in names if name in WEBHOOK_RUNBOOKS]
    checks = {name: {PARAMETER_NAME: f"--self-check {p[PARAMETER_NAME]}"} for name, p in per_runbook.items()}
    return Desired(environment, environment_prefix, runbooks, schedules, links, webhooks, secrets, key_vault, checks)
