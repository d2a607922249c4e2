"""The ``publish.py`` command line: read, plan, print, and (unless --dry-run) apply.

Exit codes: 0 success (or nothing to do), 1 a step failed while applying, 2 bad input or a precondition
is not met (no such Automation account, unreadable settings, missing upload destination).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, List, Optional

from azure.core.exceptions import HttpResponseError

from deployment import logicapp
from deployment.apply import Applier, Uploader
from deployment.desired import (
    DEFAULT_ENVIRONMENT_PREFIX,
    DEFAULT_RUNBOOK_TYPE,
    DEFAULT_RUNTIME_VERSION,
    Timing,
    build_desired,
    check_time_zone,
    parse_time_of_day,
)
from deployment.model import ApplyError, Plan, PublishError
from deployment.observe import read_account, read_state
from deployment.packaging import PipReportResolver, SasContainerUploader, build_shared_wheel
from deployment.plan import make_plan
from deployment.roles import role_guidance, scopes_from_settings
from shared.errors import SettingsError
from shared.sections import check_settings_document
from shared.settings import encode_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
SAS_ENV = "CI_GOVERNANCE_WHEEL_CONTAINER_SAS"
DEFAULT_WARN_MINUTES = 30


def _default_client(subscription: str) -> Any:
    from azure.identity import DefaultAzureCredential
    from azure.mgmt.automation import AutomationClient

    return AutomationClient(DefaultAzureCredential(), subscription, polling_interval=5)


@dataclass
class Dependencies:
    """Everything that touches the network or the clock, injectable for tests."""

    client_factory: Callable[[str], Any] = _default_client
    resolver: Callable[[Path], list] = field(default_factory=PipReportResolver)
    uploader_factory: Callable[[str], Uploader] = SasContainerUploader
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
    sleep: Callable[[float], None] = time.sleep
    package_poll_seconds: float = 20.0


def build_parser() -> argparse.ArgumentParser:
    """Arguments of publish.py."""
    p = argparse.ArgumentParser(
        prog="publish.py", description="Deploy CI governance runbooks, packages, schedules and webhooks into an existing Azure Automation account."
    )
    p.add_argument("--subscription", required=True, help="subscription id of the Automation account")
    p.add_argument("--resource-group", required=True)
    p.add_argument("--automation-account", required=True)
    p.add_argument("--settings", required=True, type=Path, help="settings JSON passed to the runbooks; its 'scope' decides the role assignments")
    p.add_argument("--location", help="region for new resources (default: the account's)")
    p.add_argument("--stop-time", default="19:00", help="nightly stop, HH:MM (default 19:00)")
    p.add_argument("--start-time", default="07:30", help="weekday start Mon-Fri, HH:MM (default 07:30)")
    p.add_argument("--time-zone", default="UTC", help="IANA time zone of the schedules (default UTC)")
    p.add_argument("--warn-minutes", type=int, help="warning this many minutes before the stop (default: settings warning.minutes_before, else 30)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and the role assignments; change nothing")
    p.add_argument("--rotate-webhooks", action="store_true", help="replace the webhooks (new URLs, printed once)")
    p.add_argument("--webhook-expiry-days", type=int, default=365)
    p.add_argument(
        "--runtime-environment",
        default=DEFAULT_ENVIRONMENT_PREFIX,
        help=f"name prefix of the runtime environment (default {DEFAULT_ENVIRONMENT_PREFIX}; a content hash is appended)",
    )
    p.add_argument("--runtime-version", default=DEFAULT_RUNTIME_VERSION, help="Python version of the runtime environment (default 3.10)")
    p.add_argument(
        "--runbook-type",
        default=DEFAULT_RUNBOOK_TYPE,
        help="runbookType for the runbooks (default Python, with the runtime environment; unconfirmed: see docs/admin.md, 'Check once on your tenant')",
    )
    p.add_argument(
        "--wheel-container-sas",
        default=os.environ.get(SAS_ENV),
        help=f"container SAS URL to upload our wheel to (or ${SAS_ENV}); needed only when the shared package changed",
    )
    logicapp.add_arguments(p)  # Teams Logic App (issue 14)
    p.add_argument("--project-dir", type=Path, default=REPO_ROOT, help=argparse.SUPPRESS)
    p.add_argument("--runbooks-dir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--requirements", type=Path, help=argparse.SUPPRESS)
    return p


def _load_settings(path: Path) -> dict:
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PublishError(f"Cannot read the settings file {path}: {exc.strerror}.") from exc
    except ValueError as exc:
        raise PublishError(f"The settings file {path} is not valid JSON: {exc}.") from exc
    if not isinstance(settings, dict):
        raise PublishError(f"The settings file {path} must hold a JSON object.")
    # Check every section now, with the runbooks' own rules: a typo should fail here, not at night.
    try:
        check_settings_document(settings)
    except SettingsError as exc:
        raise PublishError(f"The settings file {path} cannot be used: {exc}.") from None
    return settings


def warn_minutes_from(settings: dict) -> int:
    """``warning.minutes_before`` from the settings (the warning runbook's own key), default 30;
    ``--warn-minutes`` overrides it."""
    section = settings.get("warning")
    value = section.get("minutes_before", DEFAULT_WARN_MINUTES) if isinstance(section, dict) else DEFAULT_WARN_MINUTES
    if isinstance(value, bool) or not isinstance(value, int):
        raise PublishError(f'settings "warning.minutes_before" must be a whole number of minutes, not {value!r}.')
    return value


def print_plan(plan: Plan, out: Callable[[str], None]) -> None:
    """The plan as operator-readable lines."""
    if plan.actions:
        out(f"Plan: {plan.changes} change(s) in Azure, {len(plan.actions)} step(s):")
        for action in plan.actions:
            out(f"  {action.describe()}")
    else:
        out("Plan: nothing to change.")
    for item in plan.unchanged:
        out(f"  = unchanged: {item}")
    for warning in plan.warnings:
        out(f"  ! {warning}")


def main(
    argv: Optional[List[str]] = None, deps: Optional[Dependencies] = None, out: Callable[[str], None] = print, err: Optional[Callable[[str], None]] = None
) -> int:
    """Run publish.py; returns the exit code."""
    deps = deps or Dependencies()
    err = err or (lambda line: print(line, file=sys.stderr))
    args = build_parser().parse_args(argv)
    try:
        return _run(args, deps, out)
    except ApplyError as exc:
        err(f"ERROR: {exc}")
        return 1
    except PublishError as exc:
        err(f"ERROR: {exc}")
        return 2
    except HttpResponseError as exc:
        err(f"ERROR: Azure answered {exc.status_code} while reading the Automation account: {exc.message}")
        return 2


def _run(args: argparse.Namespace, deps: Dependencies, out: Callable[[str], None]) -> int:
    if args.webhook_expiry_days < 1:
        raise PublishError("--webhook-expiry-days must be at least 1.")
    settings = _load_settings(args.settings)
    warn_minutes = args.warn_minutes if args.warn_minutes is not None else warn_minutes_from(settings)
    if not 1 <= warn_minutes <= 12 * 60:
        raise PublishError(f"The warning must come 1 to 720 minutes before the stop, not {warn_minutes}.")
    timing = Timing(parse_time_of_day(args.stop_time), parse_time_of_day(args.start_time), check_time_zone(args.time_zone), warn_minutes)
    scopes = scopes_from_settings(settings)
    client = deps.client_factory(args.subscription)
    account = read_account(client, args.subscription, args.resource_group, args.automation_account)
    location = args.location or account.location
    out(f"Automation account {account.name} ({account.location}) in resource group {args.resource_group}, subscription {args.subscription}")
    # --- Teams Logic App (issue 14, deployment/logicapp.py): its trigger URL goes into the runbooks' settings ---
    teams_app = logicapp.begin(args, client, settings, location, encode_settings, deps.now, deps.sleep, out)
    if teams_app is not None:
        settings = teams_app.settings
    # --- end Teams Logic App ---

    project = args.project_dir
    wheel = build_shared_wheel(project)
    packages = [wheel.as_package(), *deps.resolver(args.requirements or project / "requirements.txt")]
    desired = build_desired(
        runbooks_dir=args.runbooks_dir or project / "runbooks",
        packages=packages,
        settings=settings,
        timing=timing,
        runbook_type=args.runbook_type,
        runtime_version=args.runtime_version,
        environment_prefix=args.runtime_environment,
        webhook_expiry_days=args.webhook_expiry_days,
    )
    observed = read_state(client, args.resource_group, args.automation_account, account, desired)
    plan = make_plan(desired, observed, now=deps.now(), rotate_webhooks=args.rotate_webhooks)
    print_plan(plan, out)
    for line in role_guidance(account, scopes):
        out(line)
    if teams_app is not None:  # Teams Logic App (issue 14)
        teams_app.print_plan(out)
    needs_upload = any(a.kind == "upload_wheel" for a in plan.actions)
    if args.dry_run:
        if needs_upload and not args.wheel_container_sas:
            out(f"  ! applying this plan needs --wheel-container-sas (or ${SAS_ENV}) to upload {wheel.filename}")
        out("Dry run: nothing was changed.")
        return 0
    if not plan.actions and not (teams_app is not None and teams_app.plan().changes):  # Teams Logic App (issue 14)
        out("Nothing to do: the Automation account is up to date.")
        return 0
    if needs_upload and not args.wheel_container_sas:
        raise PublishError(
            f"The shared package changed and {wheel.filename} must be uploaded: pass --wheel-container-sas <container SAS URL>"
            f" (or set ${SAS_ENV}). Nothing was changed."
        )
    uploader = deps.uploader_factory(args.wheel_container_sas) if needs_upload else None
    applier = Applier(
        client,
        args.resource_group,
        args.automation_account,
        location,
        out=out,
        uploader=uploader,
        now=deps.now,
        sleep=deps.sleep,
        package_poll_seconds=deps.package_poll_seconds,
    )
    out("Applying:")
    applier.apply(plan)
    if teams_app is not None:  # Teams Logic App (issue 14): after the runbooks, which its webhooks name
        teams_app.apply(out)
    out(f"Published: {plan.changes} change(s) applied, {len(plan.unchanged)} item(s) already up to date.")
    return 0
