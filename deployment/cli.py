"""The ``publish.py`` command line: read, plan, print, and (unless --dry-run) apply, then prove.

Exit codes: 0 success (or nothing to do), 1 a step or a self-check failed while applying, 2 bad input or
a precondition is not met (no such Automation account, unreadable settings, missing upload destination).
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
from typing import Any, Callable, Dict, List, Optional

from azure.core.exceptions import HttpResponseError

from deployment import logicapp
from deployment.apply import Applier, Uploader
from deployment.desired import (
    DEFAULT_ENVIRONMENT_PREFIX,
    DEFAULT_RUNBOOK_TYPE,
    DEFAULT_RUNTIME_VERSION,
    RUNTIME_REQUIREMENTS,
    Timing,
    build_desired,
    check_time_zone,
    parse_time_of_day,
    split_secrets,
)
from deployment.model import ApplyError, Plan, PublishError
from deployment.observe import read_account, read_state
from deployment.packaging import PipReportResolver, SasContainerUploader, build_shared_wheel
from deployment.plan import make_plan
from deployment.roles import role_guidance, scopes_from_settings
from deployment.secrets import KeyVaultSecrets
from shared.errors import SettingsError
from shared.sections import check_settings_document
from shared.settings import encode_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
SAS_ENV = "CI_GOVERNANCE_WHEEL_CONTAINER_SAS"
DEFAULT_WARN_MINUTES = 30
DEFAULT_STOP_TIME = "19:00"


def _default_credential() -> Any:
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def _default_client(subscription: str) -> Any:
    from azure.mgmt.automation import AutomationClient

    return AutomationClient(_default_credential(), subscription, polling_interval=5)


def _default_secret_store(vault_url: str) -> Any:
    return KeyVaultSecrets(vault_url, _default_credential())


@dataclass
class Dependencies:
    """Everything that touches the network or the clock, injectable for tests."""

    client_factory: Callable[[str], Any] = _default_client
    resolver: Callable[[Path], list] = field(default_factory=PipReportResolver)
    uploader_factory: Callable[[str], Uploader] = SasContainerUploader
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
    sleep: Callable[[float], None] = time.sleep
    package_poll_seconds: float = 20.0
    clock: Callable[[], float] = time.monotonic  # pacing and progress lines (monotonic seconds)
    secret_store_factory: Callable[[str], Any] = _default_secret_store  # vault URI -> get(name) / set(name, value)
    job_poll_seconds: float = 15.0


EPILOG = """\
example:
  python publish.py --subscription 00000000-0000-0000-0000-000000000000 --resource-group rg-automation \\
      --automation-account aa-governance --settings settings.json --stop-time 19:00 --time-zone Europe/Amsterdam --dry-run
  (then the same without --dry-run; ./dev publish runs it in the project's environment)

exit codes:
  0  deployed and every self-check passed, or nothing to change, or a dry run
  1  a step or a self-check failed: earlier steps stay done, runbooks keep their previous environment; re-run to continue
  2  bad input or a precondition is not met (settings, flags, no such account, no upload destination); nothing was changed
"""


def build_parser() -> argparse.ArgumentParser:
    """Arguments of publish.py."""
    p = argparse.ArgumentParser(
        prog="publish.py",
        description="Deploy CI governance runbooks, packages, schedules and webhooks into an existing Azure Automation account,"
        " then prove each runbook works there with a read-only self-check job.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--subscription", required=True, help="subscription id of the Automation account")
    p.add_argument("--resource-group", required=True, help="resource group of the Automation account")
    p.add_argument("--automation-account", required=True, help="name of the existing Automation account (publish.py does not create one)")
    p.add_argument(
        "--settings",
        required=True,
        type=Path,
        help="settings JSON for the runbooks; its 'scope' decides the role assignments; its secrets go to the Key Vault of secrets.key_vault",
    )
    p.add_argument("--location", help="region for new resources (default: the account's)")
    p.add_argument(
        "--stop-time",
        help=f"nightly stop, HH:MM; also the time the warning announces (default: settings warning.stop_time, else {DEFAULT_STOP_TIME})",
    )
    p.add_argument("--start-time", default="07:30", help="weekday start Mon-Fri, HH:MM (default 07:30)")
    p.add_argument("--time-zone", help="IANA time zone of the schedules and the warning (default: settings warning.time_zone, else UTC)")
    p.add_argument("--warn-minutes", type=int, help="warning this many minutes before the stop (default: settings warning.minutes_before, else 30)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and the role assignments; change nothing")
    p.add_argument("--verbose", action="store_true", help="list every package of the plan instead of one summary line")
    p.add_argument("--rotate-webhooks", action="store_true", help="create new webhooks (URLs printed once), then delete the old ones: no gap for callers")
    p.add_argument(
        "--webhook-url-file",
        type=Path,
        help="write new webhook URLs to this file, readable by its owner only (mode 0600), instead of printing them",
    )
    p.add_argument("--webhook-expiry-days", type=int, default=365, help="validity of new webhooks in days (default 365; Azure cannot extend a webhook)")
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
    p.add_argument("--skip-self-check", action="store_true", help="do not start the self-check jobs (switches runbooks without proof; not recommended)")
    p.add_argument("--project-dir", type=Path, default=REPO_ROOT, help=argparse.SUPPRESS)
    p.add_argument("--runbooks-dir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--requirements", type=Path, help=argparse.SUPPRESS)
    return p


def schedule_timing(args: argparse.Namespace, settings: dict, warn_minutes: int) -> Timing:
    """When the schedules fire, from one source per value: the flag, else the warning section, else the
    default. A flag and a setting that disagree are refused (nothing to keep equal by hand)."""
    raw_warning = settings.get("warning")
    warning: Dict[str, Any] = raw_warning if isinstance(raw_warning, dict) else {}
    chosen = {}
    for flag, key, default in (("stop_time", "stop_time", DEFAULT_STOP_TIME), ("time_zone", "time_zone", "UTC")):
        given, configured = getattr(args, flag), warning.get(key)
        if given is not None and configured is not None and given != configured:
            raise PublishError(
                f"--{flag.replace('_', '-')} {given} and settings warning.{key} {configured} disagree: give one of them"
                f" (publish.py passes the value to the warning runbook and the schedules)."
            )
        chosen[flag] = given if given is not None else (configured or default)
    try:
        stop = parse_time_of_day(chosen["stop_time"])
    except PublishError as exc:
        raise PublishError(f"--stop-time: {exc}") from None
    try:
        start = parse_time_of_day(args.start_time)
    except PublishError as exc:
        raise PublishError(f"--start-time: {exc}") from None
    return Timing(stop, start, check_time_zone(chosen["time_zone"]), warn_minutes)


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


def print_plan(plan: Plan, out: Callable[[str], None], verbose: bool = False) -> None:
    """The plan as operator-readable lines (packages collapsed to one line unless ``verbose``)."""
    if plan.actions:
        out(f"Plan: {plan.changes} change(s) in Azure, {len(plan.actions)} step(s):")
        for action in plan.actions:
            out(f"  {action.describe()}")
            for detail in action.details if verbose else ():
                out(f"      {detail}")
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
    timing = schedule_timing(args, settings, warn_minutes)
    scopes = scopes_from_settings(settings)
    project = args.project_dir
    wheel = build_shared_wheel(project)
    # Resolve before reading Azure: a package Automation could not download is refused at plan time.
    packages = [wheel.as_package(), *deps.resolver(args.requirements or project / RUNTIME_REQUIREMENTS)]
    client = deps.client_factory(args.subscription)
    account = read_account(client, args.subscription, args.resource_group, args.automation_account)
    location = args.location or account.location
    out(f"Automation account {account.name} ({account.location}) in resource group {args.resource_group}, subscription {args.subscription}")
    # --- Teams Logic App (issue 14, deployment/logicapp.py): its trigger URL goes into the runbooks' settings ---
    # What the Logic App hands the runbooks (webhook parameters, the job route's --settings-b64) is what
    # every job gets: the settings without their secrets, which the runbooks read from Key Vault.
    teams_app = logicapp.begin(args, client, settings, location, lambda doc: encode_settings(split_secrets(doc)[0]), deps.now, deps.sleep, out)
    if teams_app is not None:
        settings = teams_app.settings
    # --- end Teams Logic App ---
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
    secret_store = deps.secret_store_factory(desired.key_vault) if desired.key_vault else None
    observed = read_state(client, args.resource_group, args.automation_account, account, desired, secret_store)
    plan = make_plan(desired, observed, now=deps.now(), rotate_webhooks=args.rotate_webhooks, self_check=not args.skip_self_check)
    print_plan(plan, out, verbose=args.verbose)
    # The grants matter before the first jobs and when the settings (hence perhaps the scope) change: not on every run.
    first_deploy = any(a.kind == "upsert_runbook" and a.reason == "new" for a in plan.actions)
    settings_changed = any(a.kind in ("create_job_schedule", "update_webhook") and "parameters changed" in a.reason for a in plan.actions)
    if args.dry_run or first_deploy or settings_changed:
        for line in role_guidance(account, scopes, desired.key_vault):
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
        clock=deps.clock,
        secret_store=secret_store,
        webhook_url_file=args.webhook_url_file,
        job_poll_seconds=deps.job_poll_seconds,
    )
    out("Applying:")
    applier.apply(plan)
    if teams_app is not None:  # Teams Logic App (issue 14): after the runbooks, which its webhooks name
        teams_app.apply(out)
    checked = " and proven by a self-check job per runbook" if any(a.kind == "self_check" for a in plan.actions) else ""
    out(f"Published: {plan.changes} change(s) applied{checked}, {len(plan.unchanged)} item(s) already up to date.")
    return 0
