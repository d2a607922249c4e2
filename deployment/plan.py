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
  parameters are PATCHed (the URL stays valid). A replacement is created (under a new name) and printed
  before the old one is deleted, so callers never meet a gap;
- secrets: the Key Vault value is compared with the settings' value (never printed);
- proof: when anything changes, one read-only ``--self-check`` job per runbook runs before the runbooks
  switch: changed runbooks as temporary copies bound to the new environment, so a failure leaves the
  runbooks on the environment they used before.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import defaultdict
from dataclasses import replace
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
    ObservedEnvironment,
    ObservedJobSchedule,
    PackageSpec,
    Plan,
    PublishError,
    SelfCheck,
)

EXPIRY_WARNING = timedelta(days=30)
_SPEC = re.compile(r"\[spec ([0-9a-f]+)\]\s*$")
_JOB_SCHEDULE_NAMESPACE = uuid.UUID("6f1d3c52-8f0e-4a55-9c2b-2f4b7e0c9a11")
# Temporary copies of changed runbooks, bound to the new environment, that the self-check jobs run.
CHECK_PREFIX = f"{NAME_PREFIX}-check-"


def job_schedule_id(link: DesiredLink, schedule_fingerprint: str) -> str:
    """A deterministic GUID per (schedule timing, runbook, parameters): same inputs, same id."""
    seed = json.dumps([link.schedule.lower(), schedule_fingerprint, link.runbook.lower(), link.parameters], sort_keys=True)
    return str(uuid.uuid5(_JOB_SCHEDULE_NAMESPACE, seed))


def spec_of(description: str) -> Optional[str]:
    """The ``[spec <hash>]`` fingerprint at the end of a schedule description, if any."""
    m = _SPEC.search(description or "")
    return m.group(1) if m else None


def make_plan(desired: Desired, observed: Observed, *, now: datetime, rotate_webhooks: bool = False, self_check: bool = True) -> Plan:
    """The ordered actions that make ``observed`` match ``desired``.

    Order matters: packages are imported and waited for before runbooks switch to the new environment;
    runbooks are published before schedules and webhooks link them; old environments go last.
    """
    plan = Plan()
    _plan_environment(desired, observed, plan)
    _plan_secrets(desired, observed, plan)
    _plan_runbooks(desired, observed, plan)
    _plan_schedules(desired, observed, plan)
    _plan_webhooks(desired, observed, plan, now, rotate_webhooks)
    _plan_cleanup(desired, observed, plan)
    if self_check and plan.changes:
        _plan_self_check(desired, plan)
    order = [
        "upload_wheel", "create_environment", "import_packages", "wait_packages", "set_secret", "delete_runbook", "self_check", "upsert_runbook",
        "delete_job_schedule", "delete_schedule", "create_schedule", "create_job_schedule", "create_webhook", "update_webhook", "delete_webhook",
        "delete_environment",
    ]  # fmt: skip
    plan.actions.sort(key=lambda a: order.index(a.kind))  # stable: keeps the per-kind order
    return plan


def _plan_self_check(desired: Desired, plan: Plan) -> None:
    changed = {a.target.lower() for a in plan.actions if a.kind == "upsert_runbook"}
    checks = [SelfCheck(rb, desired.check_parameters[rb.name], rb.name.lower() in changed) for rb in desired.runbooks]
    temporary = sum(c.temporary for c in checks)
    how = f"{temporary} as temporary copies on {desired.environment.name}, before the switch" if temporary else "the published runbooks"
    plan.actions.append(Action("self_check", f"{len(checks)} runbooks", f"one read-only job each; {how}", checks))


def _plan_secrets(desired: Desired, observed: Observed, plan: Plan) -> None:
    for secret in desired.secrets:
        current = observed.secrets.get(secret.name)
        label = f"{secret.name} ({secret.setting})"
        if current == secret.value:
            plan.unchanged.append(f"secret {label} in {desired.key_vault}")
        else:
            plan.actions.append(Action("set_secret", label, "new" if current is None else "value changed", secret))


def _plan_environment(desired: Desired, observed: Observed, plan: Plan) -> None:
    env = desired.environment
    existing = observed.environments.get(env.name.lower())
    if existing is None:
        plan.actions.append(Action("create_environment", env.name, f"Python {env.version}", env))
    elif (existing.language, existing.version) != (env.language, env.version):
        raise PublishError(
            f"Runtime environment {env.name} exists with {existing.language} {existing.version}, expected {env.language} {env.version}; delete it and re-run."
        )
    waiting: List[str] = []
    to_import: List[PackageSpec] = []
    retries: List[str] = []
    for pkg in env.packages:
        current = existing.packages.get(pkg.name.lower()) if existing else None
        if current is not None and current.state == "Succeeded":
            continue
        if current is not None and current.state not in ("Failed", "Canceled"):
            waiting.append(pkg.name)  # an import from an earlier run is still in progress
            continue
        if current is not None:
            retries.append(f"{pkg.name} (previous import failed: {current.error or current.state})")
        if pkg.url is None:
            plan.actions.append(Action("upload_wheel", pkg.filename, "our shared package", pkg))
        to_import.append(pkg)
        waiting.append(pkg.name)
    if to_import:
        summary, details = package_summary(env.packages, to_import, _previous_environment(desired, observed))
        if retries:
            summary += f"; retry: {', '.join(retries)}"
        plan.actions.append(Action("import_packages", env.name, summary, (env.name, to_import), details))
    if waiting:
        plan.actions.append(Action("wait_packages", env.name, f"{len(waiting)} packages", waiting))
    else:
        plan.unchanged.append(f"runtime environment {env.name} ({len(env.packages)} packages imported)")
    if existing:
        extra = sorted(set(existing.packages) - {p.name.lower() for p in env.packages})
        if extra:
            plan.warnings.append(f"runtime environment {env.name} has packages publish.py did not import: {', '.join(extra)}")


def _previous_environment(desired: Desired, observed: Observed) -> Optional[ObservedEnvironment]:
    """The environment our runbooks use now (what the new one is compared with), if it is one of ours."""
    for rb in desired.runbooks:
        current = observed.runbooks.get(rb.name.lower())
        env = observed.environments.get((current.runtime_environment or "").lower()) if current else None
        if env is not None and env.name.lower() != desired.environment.name.lower():
            return env
    return None


def _few(items: List[str]) -> str:
    return ", ".join(items[:4]) + (", ..." if len(items) > 4 else "")


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def package_summary(all_packages: Tuple[PackageSpec, ...], to_import: List[PackageSpec], previous: Optional[ObservedEnvironment]) -> Tuple[str, List[str]]:
    """One line for the plan (count, size, what changed against the environment in use) and one
    line per package for ``--verbose``."""
    sizes = [p.size for p in all_packages if p.size is not None]
    size = f", {_megabytes(sum(sizes))}" + ("" if len(sizes) == len(all_packages) else f" ({len(sizes)} of {len(all_packages)} sizes known)") if sizes else ""
    head = f"{len(to_import)} of {len(all_packages)} packages{size}"
    if previous is None:
        change = "new environment" if len(to_import) == len(all_packages) else "completing an earlier run"
    else:
        before = {n: p.version for n, p in previous.packages.items()}
        after = {p.name.lower(): p.version for p in all_packages}
        added = sorted(set(after) - set(before))
        removed = sorted(set(before) - set(after))
        changed = sorted(n for n in set(after) & set(before) if after[n] != before[n])
        parts = [f"{len(changed)} changed ({_few([f'{n} {before[n]} -> {after[n]}' for n in changed])})"] if changed else []
        parts += [f"{len(added)} added ({_few(added)})"] if added else []
        parts += [f"{len(removed)} removed ({_few(removed)})"] if removed else []
        change = "against " + previous.name + ": " + ("; ".join(parts) or "same versions")
    details = [f"{p.name} {p.version}" + (f", {_megabytes(p.size)}" if p.size else "") + f", {p.display_url()}" for p in to_import]
    return f"{head}; {change}", details


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
        if key.startswith(CHECK_PREFIX):
            plan.actions.append(Action("delete_runbook", current.name, "a self-check copy left by an interrupted run", current.name))
        elif key not in wanted and current.tags.get(MANAGED_BY_TAG[0]) == MANAGED_BY_TAG[1]:
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
        base = wh.name.lower()
        mine = sorted((w for k, w in observed.webhooks.items() if k == base or k.startswith(base + "-")), key=lambda w: w.name.lower())
        usable, stale = [], []
        for w in mine:
            if w.expiry_time is not None and w.expiry_time <= now:
                stale.append((w, f"expired on {w.expiry_time:%Y-%m-%d}; an expired webhook cannot be re-enabled"))
            elif w.runbook.lower() != wh.runbook.lower():
                stale.append((w, f"points to runbook {w.runbook}"))
            else:
                usable.append(w)
        if rotate or not usable:
            # Create the replacement first (a new name when the base name is taken), print its URL, and
            # only then delete the old ones: callers switch over without a gap.
            taken = {w.name.lower() for w in mine}
            name = wh.name if base not in taken else f"{wh.name}-{now:%Y%m%d%H%M%S}"
            why = "--rotate-webhooks" if rotate and usable else ("; ".join(r for _, r in stale) or "new")
            plan.actions.append(Action("create_webhook", name, f"for runbook {wh.runbook}, valid {wh.expiry_days} days ({why})", replace(wh, name=name)))
            for w in mine:
                plan.actions.append(Action("delete_webhook", w.name, f"replaced by {name}, after it was created", w.name))
            continue
        for w, reason in stale:
            plan.actions.append(Action("delete_webhook", w.name, reason, w.name))
        for current in usable:
            if current.parameters != wh.parameters:
                plan.actions.append(Action("update_webhook", current.name, "parameters changed; the URL stays valid", replace(wh, name=current.name)))
            else:
                plan.unchanged.append(f"webhook {current.name} (expires {current.expiry_time:%Y-%m-%d})" if current.expiry_time else f"webhook {current.name}")
            if not current.is_enabled:
                plan.warnings.append(f"webhook {current.name} is disabled in Azure; publish.py leaves it disabled")
            if current.expiry_time is not None and current.expiry_time - now < EXPIRY_WARNING:
                expires = f"{current.expiry_time:%Y-%m-%d}"
                plan.warnings.append(f"webhook {current.name} expires on {expires}: run publish.py --rotate-webhooks and update its callers")


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
