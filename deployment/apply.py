"""Perform a plan's actions with azure-mgmt-automation 2.0.0 (api-version 2024-10-23)."""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, cast

from azure.core.exceptions import HttpResponseError
from azure.mgmt.automation import models

from deployment.desired import next_start
from deployment.model import (
    CONTENT_TAG,
    MANAGED_BY_TAG,
    Action,
    ApplyError,
    DesiredEnvironment,
    DesiredLink,
    DesiredRunbook,
    DesiredSchedule,
    DesiredSecret,
    DesiredWebhook,
    PackageSpec,
    Plan,
    PublishError,
    SelfCheck,
)
from deployment.plan import CHECK_PREFIX
from shared.automation.selfcheck import FAILED, PASSED

Uploader = Callable[[str, bytes], str]
TERMINAL_FAILURES = ("Failed", "Canceled")
RETRY_HINT = "fix the cause and re-run publish.py, which continues from the current state"
# Package imports: about 5 per 30 s per account (docs/platform.md, "Azure Automation: Python runtime";
# Microsoft's import_py3package_from_pypi.py paces its imports and waits on 429).
IMPORT_BURST, IMPORT_WINDOW_SECONDS = 5, 30.0
# Our pace is 10 % slower than the limit: a client bucket refilling at exactly the service's rate meets
# the service's bucket a few milliseconds early now and then (measured against the fake: one 429 in 65).
PACING_MARGIN = 1.1
PROGRESS_SECONDS = 30.0
JOB_DONE = ("Completed", "Failed", "Stopped", "Suspended")


def _names(names: List[str], limit: int = 4) -> str:
    return ", ".join(names[:limit]) + (", …" if len(names) > limit else "")


class ImportPacer:
    """Client-side pacing: at most ``burst`` imports in any ``window`` seconds (a sliding window, so
    below the limit whether the service counts with a token bucket or in fixed windows)."""

    def __init__(self, clock: Callable[[], float], burst: int = IMPORT_BURST, window: float = IMPORT_WINDOW_SECONDS * PACING_MARGIN):
        self.clock, self.burst, self.window = clock, burst, window
        self.sent: List[float] = []

    def wait_needed(self) -> float:
        """Seconds until the next import may go (0 when it may go now)."""
        now = self.clock()
        self.sent = [t for t in self.sent if now - t < self.window - 1e-9]
        if len(self.sent) < self.burst:
            return 0.0
        return max(0.05, self.sent[0] + self.window - now)  # never a wait too small to advance a clock

    def take(self) -> None:
        self.sent.append(self.clock())

    def empty(self) -> None:
        """The service said 429 (its Retry-After is slept by the caller): nothing more to remember."""


class Applier:
    """Runs actions in order against one account and reports each on ``out``.

    Webhook URLs are printed exactly once, by :meth:`_create_webhook`, and kept nowhere else.
    """

    def __init__(
        self,
        client: Any,
        resource_group: str,
        account: str,
        location: str,
        *,
        out: Callable[[str], None] = print,
        uploader: Optional[Uploader] = None,
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        sleep: Callable[[float], None] = time.sleep,
        package_poll_seconds: float = 20.0,
        package_timeout_seconds: float = 1800.0,
        clock: Callable[[], float] = time.monotonic,
        secret_store: Any = None,
        webhook_url_file: Optional[Path] = None,
        job_poll_seconds: float = 15.0,
        job_timeout_seconds: float = 1800.0,
        verbose: bool = False,
    ):
        self.client = client
        self.rg = resource_group
        self.account = account
        self.location = location
        self.out = out
        self.uploader = uploader
        self.now = now
        self.sleep = sleep
        self.package_poll_seconds = package_poll_seconds
        self.package_timeout_seconds = package_timeout_seconds
        self.clock = clock
        self.secret_store = secret_store
        self.webhook_url_file = webhook_url_file
        self.job_poll_seconds = job_poll_seconds
        self.job_timeout_seconds = job_timeout_seconds
        self.verbose = verbose
        self.uploaded: Dict[str, str] = {}  # package name -> content link URL (may hold a SAS)
        self.import_retries = 0  # 429 answers to package imports (honoured with Retry-After)
        self._last_line = clock()  # when the last progress line was printed
        self._url_file_started = False

    def apply(self, plan: Plan) -> None:
        """Run every action; on failure raise :class:`ApplyError` naming the step and how far it got."""
        total = len(plan.actions)
        for index, action in enumerate(plan.actions, 1):
            try:
                getattr(self, f"_{action.kind}")(action)
            except PublishError as exc:
                raise ApplyError(f"Step {index}/{total} failed: {action.describe()}\n  {exc}\n  {index - 1} steps were completed; {RETRY_HINT}.") from exc
            except HttpResponseError as exc:
                raise ApplyError(
                    f"Step {index}/{total} failed: {action.describe()}\n  Azure answered {exc.status_code}: {exc.message}\n"
                    f"  {index - 1} steps were completed; {RETRY_HINT}."
                ) from exc
            self.out(f"  done {index}/{total}: {action.describe()}")

    # -- packages ---------------------------------------------------------------------------------
    def _upload_wheel(self, action: Action) -> None:
        pkg: PackageSpec = action.data  # type: ignore[assignment]
        if self.uploader is None or pkg.local_data is None:
            raise PublishError("No upload destination: pass --wheel-container-sas (or set CI_GOVERNANCE_WHEEL_CONTAINER_SAS).")
        self.uploaded[pkg.name] = self.uploader(pkg.filename, pkg.local_data)

    def _create_environment(self, action: Action) -> None:
        env: DesiredEnvironment = action.data  # type: ignore[assignment]
        # runtimeEnvironment.json RuntimeEnvironments_Create (examples/runtimeEnvironment/createRuntimeEnvironment.json).
        self.client.runtime_environments.create(
            self.rg,
            self.account,
            env.name,
            models.RuntimeEnvironment(
                location=self.location,
                tags=dict([MANAGED_BY_TAG]),
                properties=models.RuntimeEnvironmentProperties(
                    runtime=models.RuntimeProperties(language=env.language, version=env.version),
                    description=f"CI governance packages ({len(env.packages)} wheels), created by publish.py",
                ),
            ),
        )

    def _import_packages(self, action: Action) -> None:
        env_name, packages = cast(Tuple[str, List[PackageSpec]], action.data)
        pacer = ImportPacer(self.clock)
        total = len(packages)
        self._last_line = self.clock()
        window, limit = IMPORT_WINDOW_SECONDS * PACING_MARGIN, IMPORT_WINDOW_SECONDS
        pace = f"at most {IMPORT_BURST} in any {window:.0f} s (the service allows about {IMPORT_BURST} per {limit:.0f} s)"
        self.out(f"  importing {total} packages into {env_name}, {pace} ...")
        for sent, pkg in enumerate(packages):
            while True:
                wait = pacer.wait_needed()
                if wait <= 0:
                    pacer.take()
                    retry_after = self._import_one(env_name, pkg)
                    if retry_after is None:
                        break
                    pacer.empty()
                    self.import_retries += 1
                    wait = retry_after
                line = f"  {sent}/{total} imports sent; next: {_names([p.name for p in packages[sent:]])}"
                self._pause(wait, lambda line=line: line)  # type: ignore[misc]
        resent = f" ({self.import_retries} answered 429 and were resent after Retry-After)" if self.import_retries else ""
        self.out(f"  {total}/{total} imports sent{resent}")

    def _pause(self, seconds: float, progress: Callable[[], str]) -> None:
        """Sleep ``seconds``, printing ``progress()`` whenever 30 s would otherwise pass without a line."""
        while seconds > 0:
            step = min(seconds, PROGRESS_SECONDS)
            if self.clock() - self._last_line + step > PROGRESS_SECONDS:
                self.out(progress())
                self._last_line = self.clock()
            self.sleep(step)
            seconds -= step

    def _import_one(self, env_name: str, pkg: PackageSpec) -> Optional[float]:
        """Send one import; None when accepted, else the seconds the service asked to wait (429)."""
        url = pkg.url or self.uploaded.get(pkg.name)
        if url is None:
            raise PublishError(f"{pkg.filename} was not uploaded.")
        # package.json Package_CreateOrUpdate (examples/package/updatePackage.json: contentLink with contentHash).
        # retry_total=0: a 429 comes back to us, so the pacing (not azure-core's 3 retries) decides.
        try:
            self.client.package.create_or_update(
                self.rg,
                self.account,
                env_name,
                pkg.name,
                models.PackageCreateOrUpdateParameters(
                    properties=models.PackageCreateOrUpdateProperties(
                        content_link=models.ContentLink(
                            uri=url, content_hash=models.ContentHash(algorithm="SHA256", value=pkg.sha256.upper()), version=pkg.version
                        )
                    )
                ),
                retry_total=0,
            )
        except HttpResponseError as exc:
            if exc.status_code != 429:
                raise
            header = getattr(exc.response, "headers", {}).get("Retry-After") if exc.response is not None else None
            try:
                return max(1.0, float(header)) if header else IMPORT_WINDOW_SECONDS
            except ValueError:
                return IMPORT_WINDOW_SECONDS
        return None

    def _wait_packages(self, action: Action) -> None:
        names: List[str] = action.data  # type: ignore[assignment]
        wanted = {n.lower() for n in names}
        # Count polls rather than read a clock, so an injected sleep makes the timeout testable.
        polls_left = int(self.package_timeout_seconds / self.package_poll_seconds) if self.package_poll_seconds > 0 else 100
        while True:
            states = {p.name.lower(): p for p in self.client.package.list_by_runtime_environment(self.rg, self.account, action.target)}
            failed = [
                f"{n}: {(states[n].properties.error.message if states[n].properties.error else '') or 'import failed'}"
                for n in wanted
                if n in states and states[n].properties.provisioning_state in TERMINAL_FAILURES
            ]
            if failed:
                raise PublishError("Package imports failed (runbooks were not switched to the new environment):\n    " + "\n    ".join(sorted(failed)))
            pending = sorted(n for n in wanted if n not in states or states[n].properties.provisioning_state != "Succeeded")
            if not pending:
                self.out(f"  {len(wanted)}/{len(wanted)} imported")
                return
            # A line per poll (every package_poll_seconds, 20 s by default): at least one every 30 s.
            line = f"  {len(wanted) - len(pending)}/{len(wanted)} imported; waiting for {_names(pending)}"
            self.out(line)
            self._last_line = self.clock()
            if polls_left <= 0:
                raise PublishError(
                    f"Package imports still running after {self.package_timeout_seconds:.0f} s: {', '.join(pending)}. Re-run publish.py later to continue."
                )
            polls_left -= 1
            self._pause(self.package_poll_seconds, lambda line=line: line)  # type: ignore[misc]

    # -- secrets -----------------------------------------------------------------------------------
    def _set_secret(self, action: Action) -> None:
        secret: DesiredSecret = action.data  # type: ignore[assignment]
        if self.secret_store is None:
            raise PublishError("No Key Vault to store the secret in (settings secrets.key_vault).")
        self.secret_store.set(secret.name, secret.value)

    # -- proof ---------------------------------------------------------------------------------------
    def _self_check(self, action: Action) -> None:
        checks: List[SelfCheck] = action.data  # type: ignore[assignment]
        started: List[Tuple[SelfCheck, str, str]] = []  # (check, runbook that runs, job name)
        try:
            for check in checks:
                target = check.runbook.name
                if check.temporary:
                    target = CHECK_PREFIX + check.runbook.name
                    self._publish_runbook(check.runbook, name=target, tags=dict([MANAGED_BY_TAG]))
                job = str(uuid.uuid4())
                # job.json Job_Create (examples/job/createJob.json).
                self.client.job.create(
                    self.rg,
                    self.account,
                    job,
                    models.JobCreateParameters(
                        properties=models.JobCreateProperties(runbook=models.RunbookAssociationProperty(name=target), parameters=dict(check.parameters))
                    ),
                )
                started.append((check, target, job))
            results = self._wait_for_jobs(started)
        finally:
            for check, target, _ in started:
                if check.temporary:
                    self.client.runbook.delete(self.rg, self.account, target)
        failures = []
        for (check, _, _), (passed, text) in zip(started, results, strict=True):
            self.out(f"  self-check {check.runbook.name}: {'passed' if passed else 'FAILED'}: {text}")
            if not passed:
                failures.append(check.runbook.name)
        if failures:
            raise PublishError(
                f"Self-check failed for {', '.join(failures)} (the job's own error is above). No runbook was switched or relinked:"
                " each keeps the content and runtime environment it had, so tonight's jobs run as before."
            )

    def _wait_for_jobs(self, started: List[Tuple[SelfCheck, str, str]]) -> List[Tuple[bool, str]]:
        polls_left = int(self.job_timeout_seconds / self.job_poll_seconds) if self.job_poll_seconds > 0 else 100
        self._last_line = self.clock()
        while True:
            statuses = {job: _text_status(self.client.job.get(self.rg, self.account, job)) for _, _, job in started}
            pending = [check.runbook.name for check, _, job in started if statuses[job] not in JOB_DONE]
            if not pending:
                return [self._job_result(job, statuses[job]) for _, _, job in started]
            if polls_left <= 0:
                raise PublishError(f"Self-check jobs still running after {self.job_timeout_seconds:.0f} s: {', '.join(pending)}. No runbook was switched.")
            polls_left -= 1
            line = f"  {len(started) - len(pending)}/{len(started)} self-check jobs finished; waiting for {_names(pending)}"
            self._pause(self.job_poll_seconds, lambda line=line: line)  # type: ignore[misc]

    def _job_result(self, job: str, status: str) -> Tuple[bool, str]:
        """(passed, what to print): the runbook's own self-check line, else the job's own error."""
        output = self.client.job.get_output(self.rg, self.account, job) or ""
        text = output if isinstance(output, str) else output.decode("utf-8", errors="replace")
        for line in reversed(text.splitlines()):
            if line.startswith(PASSED):
                return status == "Completed", line.split(": ", 1)[-1] if status == "Completed" else f"job {status}: {line}"
            if line.startswith(FAILED):
                return False, line.split(": ", 1)[-1]
        details = self.client.job.get(self.rg, self.account, job).properties
        reason = details.exception
        if not reason:
            # JobStream_ListByJob gives summaries; JobStream_Get the full text of the last error (a traceback's last line).
            streams = list(self.client.job_stream.list_by_job(self.rg, self.account, job, filter="properties/streamType eq 'Error'"))
            last = next((st for st in reversed(streams) if (st.summary or "").strip()), None)
            if last is not None:
                reason = self.client.job_stream.get(self.rg, self.account, job, last.job_stream_id).stream_text or last.summary
        return False, f"job {status}: {reason}" if reason else f"job {status} without a self-check line in its output"

    # -- runbooks ----------------------------------------------------------------------------------
    def _upsert_runbook(self, action: Action) -> None:
        rb: DesiredRunbook = action.data  # type: ignore[assignment]
        tags = dict([MANAGED_BY_TAG])
        self._publish_runbook(rb, name=rb.name, tags=tags)
        self.client.runbook.update(self.rg, self.account, rb.name, models.RunbookUpdateParameters(tags={**tags, CONTENT_TAG: rb.sha256}))

    def _delete_runbook(self, action: Action) -> None:
        self.client.runbook.delete(self.rg, self.account, action.data)

    def _publish_runbook(self, rb: DesiredRunbook, *, name: str, tags: Dict[str, str]) -> None:
        # runbook.json Runbook_CreateOrUpdate, "Create runbook as draft" (examples/runbook/createRunbookAsDraft.json).
        self.client.runbook.create_or_update(
            self.rg,
            self.account,
            name,
            models.RunbookCreateOrUpdateParameters(
                name=name,
                location=self.location,
                tags=tags,  # without the content tag until the publish has succeeded
                properties=models.RunbookCreateOrUpdateProperties(
                    runbook_type=rb.runbook_type,
                    runtime_environment=rb.runtime_environment,
                    draft=models.RunbookDraft(),
                    description=rb.description,
                    log_progress=False,
                    log_verbose=False,
                ),
            ),
        )
        # RunbookDraft_ReplaceContent and Runbook_Publish are LROs (202 + Location; replaceRunbookDraftContent.json, publishRunbook.json).
        self.client.runbook_draft.begin_replace_content(self.rg, self.account, name, rb.content).result()
        self.client.runbook.begin_publish(self.rg, self.account, name).result()

    # -- schedules and job schedules -----------------------------------------------------------------
    def _delete_schedule(self, action: Action) -> None:
        self.client.schedule.delete(self.rg, self.account, action.data)

    def _create_schedule(self, action: Action) -> None:
        sch: DesiredSchedule = action.data  # type: ignore[assignment]
        props = models.ScheduleCreateOrUpdateProperties(
            description=sch.description,
            start_time=next_start(sch.time_of_day, sch.time_zone, self.now()),
            frequency=sch.frequency,
            interval=1,
            time_zone=sch.time_zone,
            advanced_schedule=models.AdvancedSchedule(week_days=list(sch.week_days)) if sch.week_days else None,
        )
        # The SDK treats 409 as success for Schedule_CreateOrUpdate (createOrUpdateSchedule.json lists it) and would
        # hand back the error body as a Schedule: look at the status code ourselves.
        status, _ = self.client.schedule.create_or_update(
            self.rg,
            self.account,
            sch.name,
            models.ScheduleCreateOrUpdateParameters(name=sch.name, properties=props),
            cls=lambda resp, body, _h: (resp.http_response.status_code, body),
        )
        if status not in (200, 201):
            raise PublishError(f"Azure answered {status}: schedule {sch.name} already exists and was not replaced.")

    def _delete_job_schedule(self, action: Action) -> None:
        self.client.job_schedule.delete(self.rg, self.account, action.data)

    def _create_job_schedule(self, action: Action) -> None:
        job_schedule_id, link = cast(Tuple[str, DesiredLink], action.data)
        # jobSchedule.json JobSchedule_Create (examples/createJobSchedule.json).
        self.client.job_schedule.create(
            self.rg,
            self.account,
            job_schedule_id,
            models.JobScheduleCreateParameters(
                properties=models.JobScheduleCreateProperties(
                    schedule=models.ScheduleAssociationProperty(name=link.schedule),
                    runbook=models.RunbookAssociationProperty(name=link.runbook),
                    parameters=dict(link.parameters),
                )
            ),
        )

    # -- webhooks ------------------------------------------------------------------------------------
    def _delete_webhook(self, action: Action) -> None:
        self.client.webhook.delete(self.rg, self.account, action.data)

    def _create_webhook(self, action: Action) -> None:
        wh: DesiredWebhook = action.data  # type: ignore[assignment]
        raw = self.client.webhook.generate_uri(self.rg, self.account)
        # Webhook_GenerateUri answers a JSON string (webhook.json); the SDK hands back the raw text, quotes included.
        uri = json.loads(raw) if raw.startswith('"') else raw
        expiry = (self.now() + timedelta(days=wh.expiry_days)).replace(microsecond=0)
        self.client.webhook.create_or_update(
            self.rg,
            self.account,
            wh.name,
            models.WebhookCreateOrUpdateParameters(
                name=wh.name,
                properties=models.WebhookCreateOrUpdateProperties(
                    is_enabled=True, uri=uri, expiry_time=expiry, parameters=dict(wh.parameters), runbook=models.RunbookAssociationProperty(name=wh.runbook)
                ),
            ),
        )
        if self.webhook_url_file is not None:
            self._write_url(wh, uri, expiry)
            where = f"written to {self.webhook_url_file} (mode 0600)"
            self.out(f"  new webhook URL for runbook {wh.runbook} (webhook {wh.name}, expires {expiry:%Y-%m-%d}) {where}")
            return
        self.out("")
        self.out(f"  *** WEBHOOK URL for runbook {wh.runbook} (webhook {wh.name}) - shown only now, Azure cannot show it again:")
        self.out(f"      {uri}")
        self.out(f"      Expires {expiry:%Y-%m-%d %H:%M} UTC. Store it now where its caller keeps secrets (e.g. the Power Automate flow, Key Vault).")
        if "(new)" not in action.reason:
            self.out("      The webhook it replaces is deleted only after this step: point the caller at this URL.")
        self.out("")

    def _write_url(self, wh: DesiredWebhook, uri: str, expiry: datetime) -> None:
        """Append the URL to ``webhook_url_file``, created (or reset on this run's first URL) readable by its owner only."""
        path = self.webhook_url_file
        assert path is not None
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if self._url_file_started else os.O_TRUNC)
        fd = os.open(path, flags, 0o600)
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, 0o600)  # an existing file keeps its mode otherwise
            os.write(fd, f"# webhook {wh.name} for runbook {wh.runbook}, expires {expiry:%Y-%m-%d %H:%M} UTC\n{uri}\n".encode())
        finally:
            os.close(fd)
        self._url_file_started = True

    def _update_webhook(self, action: Action) -> None:
        wh: DesiredWebhook = action.data  # type: ignore[assignment]
        # webhook.json Webhook_Update (PATCH): parameters can change without a new URL.
        self.client.webhook.update(
            self.rg,
            self.account,
            wh.name,
            models.WebhookUpdateParameters(name=wh.name, properties=models.WebhookUpdateProperties(parameters=dict(wh.parameters))),
        )

    def _delete_environment(self, action: Action) -> None:
        self.client.runtime_environments.delete(self.rg, self.account, action.data)


def _text_status(job: Any) -> str:
    status = job.properties.status if job.properties else None
    return getattr(status, "value", status) or "New"
