"""Perform a plan's actions with azure-mgmt-automation 2.0.0 (api-version 2024-10-23)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
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
    DesiredWebhook,
    PackageSpec,
    Plan,
    PublishError,
)

Uploader = Callable[[str, bytes], str]
TERMINAL_FAILURES = ("Failed", "Canceled")
RETRY_HINT = "fix the cause and re-run publish.py, which continues from the current state"


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
        self.uploaded: Dict[str, str] = {}  # package name -> content link URL (may hold a SAS)

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

    def _import_package(self, action: Action) -> None:
        env_name, pkg = cast(Tuple[str, PackageSpec], action.data)
        url = pkg.url or self.uploaded.get(pkg.name)
        if url is None:
            raise PublishError(f"{pkg.filename} was not uploaded.")
        # package.json Package_CreateOrUpdate (examples/package/updatePackage.json: contentLink with contentHash).
        self.client.package.create_or_update(
            self.rg,
            self.account,
            env_name,
            pkg.name,
            models.PackageCreateOrUpdateParameters(
                properties=models.PackageCreateOrUpdateProperties(
                    content_link=models.ContentLink(uri=url, content_hash=models.ContentHash(algorithm="SHA256", value=pkg.sha256.upper()), version=pkg.version)
                )
            ),
        )

    def _wait_packages(self, action: Action) -> None:
        names: List[str] = action.data  # type: ignore[assignment]
        wanted = {n.lower() for n in names}
        # Count polls rather than read a clock, so an injected sleep makes the timeout testable.
        polls_left = int(self.package_timeout_seconds / self.package_poll_seconds) if self.package_poll_seconds > 0 else 100
        self.out(f"  waiting for {len(wanted)} package imports in {action.target} ...")
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
                return
            if polls_left <= 0:
                raise PublishError(
                    f"Package imports still running after {self.package_timeout_seconds:.0f} s: {', '.join(pending)}. Re-run publish.py later to continue."
                )
            polls_left -= 1
            self.sleep(self.package_poll_seconds)

    # -- runbooks ----------------------------------------------------------------------------------
    def _upsert_runbook(self, action: Action) -> None:
        rb: DesiredRunbook = action.data  # type: ignore[assignment]
        tags = dict([MANAGED_BY_TAG])
        # runbook.json Runbook_CreateOrUpdate, "Create runbook as draft" (examples/runbook/createRunbookAsDraft.json).
        self.client.runbook.create_or_update(
            self.rg,
            self.account,
            rb.name,
            models.RunbookCreateOrUpdateParameters(
                name=rb.name,
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
        self.client.runbook_draft.begin_replace_content(self.rg, self.account, rb.name, rb.content).result()
        self.client.runbook.begin_publish(self.rg, self.account, rb.name).result()
        self.client.runbook.update(self.rg, self.account, rb.name, models.RunbookUpdateParameters(tags={**tags, CONTENT_TAG: rb.sha256}))

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
        self.out("")
        self.out(f"  *** WEBHOOK URL for runbook {wh.runbook} (webhook {wh.name}) - shown only now, Azure cannot show it again:")
        self.out(f"      {uri}")
        self.out(f"      Expires {expiry:%Y-%m-%d %H:%M} UTC. Store it now where its caller keeps secrets (e.g. the Power Automate flow, Key Vault).")
        self.out("")

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
