"""Compare desired with observed state and list the actions that close the gap. Pure: no I/O.

Change detection, and why:
- runtime environment: content-addressed by name (hash of runtime + exact wheel files), so "exists with
  every package imported" means "up to date", whatever the service reports about package versions;
- runbooks: the SHA-256 of the published file is kept in a runbook tag, written only after a successful
  publish (an interrupted run is redone); state, type and runtime environment are compared too;
- schedules: their description ends with "[spec <hash>]" of frequency, time, time zone and week days;
  timing cannot be changed in place (PUT on an existing schedule answers 409), so a change is
  delete + create, and the job schedules on it are recreated;
- job schedules: cannot be updated; compared by (schedule, runbook, parameters), else delete + create;
- webhooks: never touched unless missing, expired, pointing elsewhere, or ``--rotate-webhooks``; changed
  parameters are PATCHed (the URL stays valid).
"""

from __future__ import annotations

import json
import re
import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Dict, List, Optional, Tuple

from deployment.model import (
    CONTENT_TAG,
    MANAGED_BY_TAG,
    NAME_PREFIX,
    Action,
    Desired,
    DesiredLink,
    DesiredSchedule,
    Observed,
    ObservedJobSchedule,
    Plan,
    PublishError,
)

EXPIRY_WARNING = timedelta(days=30)
_SPEC = re.compile(r"\[spec ([0-9a-f]+)\]\s*$")
_JOB_SCHEDULE_NAMESPACE = uuid.UUID("6f1d3c52-8f0e-4a55-9c2b-2f4b7e0c9a11")


def job_schedule_id(link: DesiredLink, schedule_fingerprint: str) -> str:
    """A deterministic GUID per (schedule timing, runbook, parameters): same inputs, same id."""
    seed = json.dumps([link.schedule.lower(), schedule_fingerprint, link.runbook.lower(), link.parameters], sort_keys=True)
    return str(uuid.uuid5(_JOB_SCHEDULE_NAMESPACE, seed))


def spec_of(description: str) -> Optional[str]:
    """The ``[spec <hash>]`` fingerprint at the end of a schedule description, if any."""
    m = _SPEC.search(description or "")
    return m.group(1) if m else None


def make_plan(desired: Desired, observed: Observed, *, now: datetime, rotate_webhooks: bool = False) -> Plan:
    """The ordered actions that make ``observed`` match ``desired``.

    Order matters: packages are imported and waited for before runbooks switch to the new environment;
    runbooks are published before schedules and webhooks link them; old environments go last.
    """
    plan = Plan()
    _plan_environment(desired, observed, plan)
    _plan_runbooks(desired, observed, plan)
    _plan_schedules(desired, observed, plan)
    _plan_webhooks(desired, observed, plan, now, rotate_webhooks)
    _plan_cleanup(desired, observed, plan)
    order = [
        "upload_wheel", "create_environment", "import_package", "wait_packages", "upsert_runbook", "delete_job_schedule",
        "delete_schedule", "create_schedule", "create_job_schedule", "delete_webhook", "create_webhook", "update_webhook", "delete_environment",
    ]  # fmt: skip
    plan.actions.sort(key=lambda a: order.index(a.kind))  # stable: keeps the per-kind order
    return plan


def _plan_environment(desired: Desired, observed: Observed, plan: Plan) -> None:
    env = desired.environment
    existing = observed.environments.get(env.name.lower())
    if existing is None:
        plan.actions.append(Action("create_environment", env.name, f"Python {env.version}, {len(env.packages)} packages", env))
    elif (existing.language, existing.version) != (env.language, env.version):
        raise PublishError(
            f"Runtime environment {env.name} exists with {existing.language} {existing.version}, expected {env.language} {env.version}; delete it and re-run."
        )
    waiting: List[str] = []
    for pkg in env.packages:
        current = existing.packages.get(pkg.name.lower()) if existing else None
        if current is not None and current.state == "Succeeded":
            continue
        if current is not None and current.state not in ("Failed", "Canceled"):
            waiting.append(pkg.name)  # an import from an earlier run is still in progress
            continue
        reason = f"{pkg.version}, {pkg.display_url()}" if current is None else f"retry: previous import failed: {current.error or current.state}"
        if pkg.url is None:
            plan.actions.append(Action("upload_wheel", pkg.filename, "our shared package", pkg))
        plan.actions.append(Action("import_package", pkg.name, reason, (env.name, pkg)))
        waiting.append(pkg.name)
    if waiting:
        plan.actions.append(Action("wait_packages", env.name, f"{len(waiting)} packages", waiting))
    else:
        plan.unchanged.append(f"runtime environment {env.name} ({len(env.packages)} packages imported)")
    if existing:
        extra = sorted(set(existing.packages) - {p.name.lower() for p in env.packages})
        if extra:
            plan.warnings.append(f"runtime environment {env.name} has packages publish.py did not import: {', '.join(extra)}")


def _plan_runbooks(desired: Desired, observed: Observed, plan: Plan) -> None:
    for rb in desired.runbooks:
        current = observed.runbooks.get(rb.name.lower())
        reasons: List[str] = []
        if current is None:
            reasons.append("new")
        else:
            if current.tags.get(CONTENT_TAG) != rb.sha256:
                reasons.append("content changed" if current.tags.get(CONTENT_TAG) else "content not published by publish.py yet")
            if current.state != "Published":
                reasons.append(f"state {current.state}")
            if (current.runbook_type or "") != rb.runbook_type:
                reasons.append(f"type {current.runbook_type} -> {rb.runbook_type}")
            if (current.runtime_environment or "").lower() != rb.runtime_environment.lower():
                reasons.append(f"runtime environment {current.runtime_environment or '(none)'} -> {rb.runtime_environment}")
        if reasons:
            plan.actions.append(Action("upsert_runbook", rb.name, ", ".join(reasons), rb))
        else:
            plan.unchanged.append(f"runbook {rb.name} (sha256 {rb.sha256[:12]})")
    wanted = {rb.name.lower() for rb in desired.runbooks}
    for key, current in observed.runbooks.items():
        if key not in wanted and current.tags.get(MANAGED_BY_TAG[0]) == MANAGED_BY_TAG[1]:
            plan.warnings.append(f"runbook {current.name} was published by publish.py but is no longer in runbooks/; delete it in Azure if it is obsolete")


def _plan_schedules(desired: Desired, observed: Observed, plan: Plan) -> None:
    recreated: Dict[str, DesiredSchedule] = {}
    by_name = {s.name.lower(): s for s in desired.schedules}
    for sch in desired.schedules:
        current = observed.schedules.get(sch.name.lower())
        if current is None:
            plan.actions.append(Action("create_schedule", sch.name, sch.summary, sch))
        elif spec_of(current.description) != sch.fingerprint:
            plan.actions.append(Action("delete_schedule", sch.name, "timing changed", sch.name))
            plan.actions.append(Action("create_schedule", sch.name, sch.summary, sch))
            recreated[sch.name.lower()] = sch
        else:
            plan.unchanged.append(f"schedule {sch.name} ({sch.summary})")
            if not current.is_enabled:
                plan.warnings.append(f"schedule {sch.name} is disabled in Azure; publish.py leaves it disabled")
    # Our schedules that are no longer wanted (e.g. a runbook was removed) go, with their links.
    for key, current in observed.schedules.items():
        if key.startswith(NAME_PREFIX + "-") and key not in by_name:
            plan.actions.append(Action("delete_schedule", current.name, "no longer needed", current.name))

    ours = {k for k in observed.schedules if k.startswith(NAME_PREFIX + "-")} | set(by_name)
    existing: Dict[Tuple[str, str], List[ObservedJobSchedule]] = defaultdict(list)
    for js in observed.job_schedules:
        if js.schedule.lower() in ours:
            existing[(js.schedule.lower(), js.runbook.lower())].append(js)
    for link in desired.links:
        sch = by_name[link.schedule.lower()]
        linked = existing.pop((link.schedule.lower(), link.runbook.lower()), [])
        label = f"{link.runbook} to schedule {link.schedule}"
        keep = None if link.schedule.lower() in recreated else next((js for js in linked if js.parameters == link.parameters), None)
        for js in linked:
            if js is not keep:
                why = "schedule recreated" if link.schedule.lower() in recreated else ("parameters changed" if keep is None else "duplicate")
                plan.actions.append(Action("delete_job_schedule", js.job_schedule_id, f"{label}, {why}", js.job_schedule_id))
        if keep is None:
            reason = "new" if not current else ("schedule recreated" if link.schedule.lower() in recreated else "parameters changed")
            plan.actions.append(Action("create_job_schedule", label, reason, (job_schedule_id(link, sch.fingerprint), link)))
        else:
            plan.unchanged.append(f"job schedule {label}")
    for stale in existing.values():
        for js in stale:
            plan.actions.append(Action("delete_job_schedule", js.job_schedule_id, f"{js.runbook} on {js.schedule} is not wanted", js.job_schedule_id))


def _plan_webhooks(desired: Desired, observed: Observed, plan: Plan, now: datetime, rotate: bool) -> None:
    for wh in desired.webhooks:
        current = observed.webhooks.get(wh.name.lower())
        if current is None:
            plan.actions.append(Action("create_webhook", wh.name, f"for runbook {wh.runbook}, valid {wh.expiry_days} days", wh))
            continue
        recreate = None
        if rotate:
            recreate = "--rotate-webhooks"
        elif current.expiry_time is not None and current.expiry_time <= now:
            recreate = f"expired on {current.expiry_time:%Y-%m-%d}; an expired webhook cannot be re-enabled"
        elif current.runbook.lower() != wh.runbook.lower():
            recreate = f"points to runbook {current.runbook}"
        if recreate:
            plan.actions.append(Action("delete_webhook", wh.name, recreate, wh.name))
            plan.actions.append(Action("create_webhook", wh.name, f"for runbook {wh.runbook}, valid {wh.expiry_days} days", wh))
            continue
        if current.parameters != wh.parameters:
            plan.actions.append(Action("update_webhook", wh.name, "parameters changed; the URL stays valid", wh))
        else:
            plan.unchanged.append(f"webhook {wh.name} (expires {current.expiry_time:%Y-%m-%d})" if current.expiry_time else f"webhook {wh.name}")
        if not current.is_enabled:
            plan.warnings.append(f"webhook {wh.name} is disabled in Azure; publish.py leaves it disabled")
        if current.expiry_time is not None and current.expiry_time - now < EXPIRY_WARNING:
            plan.warnings.append(f"webhook {wh.name} expires on {current.expiry_time:%Y-%m-%d}: run publish.py --rotate-webhooks and update its callers")


def _plan_cleanup(desired: Desired, observed: Observed, plan: Plan) -> None:
    """Delete our previous environments once no runbook uses them (after this plan's switches)."""
    switching = {rb.name.lower() for rb in desired.runbooks}
    prefix = desired.environment_prefix.lower() + "-"
    for key, env in observed.environments.items():
        if key == desired.environment.name.lower() or not key.startswith(prefix) or env.tags.get(MANAGED_BY_TAG[0]) != MANAGED_BY_TAG[1]:
            continue
        users = [rb.name for k, rb in observed.runbooks.items() if k not in switching and (rb.runtime_environment or "").lower() == key]
        if users:
            plan.warnings.append(f"runtime environment {env.name} is kept: still used by {', '.join(users)}")
        else:
            plan.actions.append(Action("delete_environment", env.name, f"replaced by {desired.environment.name}", env.name))
