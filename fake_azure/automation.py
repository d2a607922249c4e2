"""Fake Microsoft.Automation: automation accounts, runbooks (draft, publish, content), runtime
environments and their packages, schedules, job schedules, webhooks and jobs.

Shapes follow Azure/azure-rest-api-specs,
specification/automation/resource-manager/Microsoft.Automation/stable/2024-10-23/ (the api-version
azure-mgmt-automation 2.0.0 sends for every operation):
- account.json, examples/getAutomationAccount.json (identity per the SDK's Identity model);
- runbook.json, examples/runbook/{createOrUpdateRunbook, createRunbookAsDraft, listRunbooksByAutomationAccount,
  replaceRunbookDraftContent (202 + Location), publishRunbook (202 + Location), getRunbookContent,
  getRunbookDraftContent, updateRunbook}.json;
- runtimeEnvironment.json, examples/runtimeEnvironment/{createRuntimeEnvironment, getRuntimeEnvironment}.json;
- package.json, examples/package/{getPackage, listPackagesByRuntimeEnvironment, updatePackage}.json
  (an import is asynchronous: provisioningState goes Creating -> Succeeded | Failed);
- schedule.json, examples/createOrUpdateSchedule.json (lists 409 for an existing schedule), getSchedule.json;
- jobSchedule.json, examples/{createJobSchedule, getJobSchedule, deleteJobSchedule}.json;
- webhook.json, examples/{webhookGenerateUri, getWebhook, listWebhooksByAutomationAccount}.json and
  stable/2015-10-31/examples/createOrUpdateWebhook.json (the URI is returned empty after creation);
- job.json, examples/job/{createJob, getJob, getJobOutput}.json.
Errors from the Automation RP use its own ErrorResponse ({"code", "message"}, common/v1/definitions.json);
a missing account is answered like ARM ({"error": {...}}).

Behaviour the specs leave open is modelled conservatively and marked "assumption" below.
"""

from __future__ import annotations

import itertools
import re
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, Dict, List, Optional, Tuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fake_azure.server import ARM_HOST, FakeArmServer, FakeRequest, FakeResponse, arm_error

API = "2024-10-23"
PROVIDER = "Microsoft.Automation"
MANAGED_TYPE_PREFIX = "Microsoft.Automation/AutomationAccounts"

_ACCT = r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Automation/automationAccounts/(?P<acct>[^/]+)"
_NAME = r"(?P<name>[^/]+)"
# runbook.json and common/v1/definitions.json (RuntimeEnvironmentNameParameter) name patterns.
_RUNBOOK_NAME = re.compile(r"^[a-zA-Z][a-zA-Z\-_0-9]*$")
_ENV_NAME = re.compile(r"^[a-zA-Z][a-zA-Z\-_0-9]*$")
RUNBOOK_TYPES = {"Script", "Graph", "PowerShellWorkflow", "PowerShell", "GraphPowerShellWorkflow", "GraphPowerShell", "Python2", "Python3", "Python", "PowerShell72"}
FREQUENCIES = {"OneTime", "Day", "Hour", "Week", "Month", "Minute"}
WEEK_DAYS = {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"}
# Python 3.10 accepts cp310 manylinux x86_64 or pure wheels only (MicrosoftDocs python-3-packages.md).
_WHEEL_OK = re.compile(r"-(py3|py2\.py3|cp310|py310|cp3\d+)-(none|abi3|cp310)-(any|manylinux[\w.]*x86_64)\.whl$", re.IGNORECASE)


def automation_error(status: int, code: str, message: str) -> FakeResponse:
    """The Automation RP's ErrorResponse (common/v1/definitions.json): code and message at top level."""
    return FakeResponse(status, {"code": code, "message": message})


def _iso(dt: Optional[datetime]) -> Optional[str]:
    return dt.isoformat() if dt is not None else None


def _parse_time(value: object) -> Optional[datetime]:
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    # .NET writes 7 fractional digits; Python 3.10's fromisoformat takes at most 6.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@dataclass
class FakeRunbook:
    name: str
    runbook_type: str
    location: str
    runtime_environment: Optional[str] = None
    description: str = ""
    tags: Dict[str, str] = field(default_factory=dict)
    draft: Optional[str] = None
    published: Optional[str] = None
    created: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    modified: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    publish_count: int = 0

    @property
    def state(self) -> str:
        if self.published is None:
            return "New"
        return "Edit" if self.draft is not None else "Published"


@dataclass
class FakePackage:
    name: str
    uri: str
    content_hash: Optional[Dict[str, str]] = None
    version: Optional[str] = None
    state: str = "Creating"
    error: Optional[str] = None
    reads_until_done: int = 0
    created: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


@dataclass
class FakeRuntimeEnvironment:
    name: str
    location: str
    language: str
    version: str
    description: str = ""
    tags: Dict[str, str] = field(default_factory=dict)
    default_packages: Dict[str, str] = field(default_factory=dict)
    packages: Dict[str, FakePackage] = field(default_factory=dict)


@dataclass
class FakeSchedule:
    name: str
    start_time: datetime
    frequency: str
    interval: Optional[int]
    time_zone: str
    description: str = ""
    week_days: Optional[List[str]] = None
    expiry_time: Optional[datetime] = None
    is_enabled: bool = True
    created: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


@dataclass
class FakeJobSchedule:
    job_schedule_id: str
    schedule: str
    runbook: str
    parameters: Dict[str, str] = field(default_factory=dict)
    run_on: Optional[str] = None


@dataclass
class FakeWebhook:
    name: str
    uri: str
    runbook: str
    expiry_time: datetime
    is_enabled: bool = True
    parameters: Optional[Dict[str, str]] = None
    run_on: Optional[str] = None
    description: str = ""
    created: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


@dataclass
class FakeJob:
    """A job as the service records it: which runbook, with which parameters, how it ended."""

    name: str
    job_id: str
    runbook: str
    parameters: Dict[str, str]
    runtime_environment: Optional[str]
    status: str = "New"
    output: str = ""
    exception: Optional[str] = None
    run_on: str = ""
    created: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    started: Optional[datetime] = None
    ended: Optional[datetime] = None


@dataclass
class FakeAutomationAccount:
    subscription_id: str
    resource_group: str
    name: str
    location: str = "westeurope"
    identity_type: Optional[str] = "SystemAssigned"
    principal_id: Optional[str] = None
    tenant_id: str = "00000000-0000-0000-0000-0000000000aa"
    runbooks: Dict[str, FakeRunbook] = field(default_factory=dict)
    environments: Dict[str, FakeRuntimeEnvironment] = field(default_factory=dict)
    schedules: Dict[str, FakeSchedule] = field(default_factory=dict)
    job_schedules: Dict[str, FakeJobSchedule] = field(default_factory=dict)
    webhooks: Dict[str, FakeWebhook] = field(default_factory=dict)
    jobs: Dict[str, FakeJob] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}/providers/{PROVIDER}/automationAccounts/{self.name}"


JobRunner = Callable[[FakeJob, FakeRunbook], Tuple[str, str]]


class FakeAutomation:
    """The Azure Automation resource provider, registered on a :class:`FakeArmServer`.

    ``lro_polls``: how many status polls answer "still running" before a draft replace or a publish
    completes. ``package_import_reads``: how many reads of a package pass before its import ends.
    ``failing_packages``: package name (lower) -> error message for imports that should fail.
    ``job_runner``: when set, a created job is run at once: ``runner(job, runbook) -> (status, output)``;
    without it a job stays "New" (nothing executes it).
    """

    def __init__(
        self,
        server: FakeArmServer,
        *,
        lro_polls: int = 1,
        package_import_reads: int = 1,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        job_runner: Optional[JobRunner] = None,
    ):
        self.server = server
        self.lro_polls = lro_polls
        self.package_import_reads = package_import_reads
        self.clock = clock
        self.job_runner = job_runner
        self.failing_packages: Dict[str, str] = {}
        self.accounts: Dict[Tuple[str, str, str], FakeAutomationAccount] = {}
        self.resource_groups: set = set()
        self.issued_webhook_uris: List[str] = []
        self._ops: Dict[str, List[int]] = {}
        self._job_ids = itertools.count(1)
        self._lock = threading.RLock()
        self._register()

    # -- seeding / inspection ---------------------------------------------------------------
    def add_account(self, subscription_id: str, resource_group: str, name: str, *, location: str = "westeurope", identity: Optional[str] = "SystemAssigned", principal_id: Optional[str] = None) -> FakeAutomationAccount:
        """Create an Automation account (idempotent); ``identity=None`` gives one without managed identity."""
        key = (subscription_id.lower(), resource_group.lower(), name.lower())
        with self._lock:
            self.resource_groups.add((subscription_id.lower(), resource_group.lower()))
            if key not in self.accounts:
                self.accounts[key] = FakeAutomationAccount(
                    subscription_id, resource_group, name, location, identity, principal_id or (str(uuid.uuid4()) if identity else None)
                )
            return self.accounts[key]

    def account(self, subscription_id: str, resource_group: str, name: str) -> FakeAutomationAccount:
        """The stored account; KeyError if absent."""
        return self.accounts[(subscription_id.lower(), resource_group.lower(), name.lower())]

    # -- routes -------------------------------------------------------------------------------
    def _register(self) -> None:
        s, v = self.server, (API,)
        s.route("GET", _ACCT, self._get_account, api_versions=v)
        rb = _ACCT + r"/runbooks/" + _NAME
        s.route("GET", _ACCT + r"/runbooks", self._list_runbooks, api_versions=v)
        s.route("GET", rb, self._get_runbook, api_versions=v)
        s.route("PUT", rb, self._put_runbook, api_versions=v)
        s.route("PATCH", rb, self._patch_runbook, api_versions=v)
        s.route("DELETE", rb, self._delete_runbook, api_versions=v)
        s.route("GET", rb + r"/content", self._get_published_content, api_versions=v)
        s.route("GET", rb + r"/draft/content", self._get_draft_content, api_versions=v)
        s.route("PUT", rb + r"/draft/content", self._replace_draft, api_versions=v)
        s.route("POST", rb + r"/publish", self._publish, api_versions=v)
        s.route("GET", rb + r"/(?P<kind>draft/content|publish)/operationResults/(?P<op>[^/]+)", self._operation_result, api_versions=v)
        env = _ACCT + r"/runtimeEnvironments/" + _NAME
        s.route("GET", _ACCT + r"/runtimeEnvironments", self._list_environments, api_versions=v)
        s.route("GET", env, self._get_environment, api_versions=v)
        s.route("PUT", env, self._put_environment, api_versions=v)
        s.route("DELETE", env, self._delete_environment, api_versions=v)
        pkg = env + r"/packages/(?P<pkg>[^/]+)"
        s.route("GET", env + r"/packages", self._list_packages, api_versions=v)
        s.route("GET", pkg, self._get_package, api_versions=v)
        s.route("PUT", pkg, self._put_package, api_versions=v)
        s.route("DELETE", pkg, self._delete_package, api_versions=v)
        sch = _ACCT + r"/schedules/" + _NAME
        s.route("GET", _ACCT + r"/schedules", self._list_schedules, api_versions=v)
        s.route("GET", sch, self._get_schedule, api_versions=v)
        s.route("PUT", sch, self._put_schedule, api_versions=v)
        s.route("PATCH", sch, self._patch_schedule, api_versions=v)
        s.route("DELETE", sch, self._delete_schedule, api_versions=v)
        js = _ACCT + r"/jobSchedules/(?P<id>[^/]+)"
        s.route("GET", _ACCT + r"/jobSchedules", self._list_job_schedules, api_versions=v)
        s.route("GET", js, self._get_job_schedule, api_versions=v)
        s.route("PUT", js, self._put_job_schedule, api_versions=v)
        s.route("DELETE", js, self._delete_job_schedule, api_versions=v)
        wh = _ACCT + r"/webhooks/" + _NAME
        s.route("POST", _ACCT + r"/webhooks/generateUri", self._generate_uri, api_versions=v)
        s.route("GET", _ACCT + r"/webhooks", self._list_webhooks, api_versions=v)
        s.route("GET", wh, self._get_webhook, api_versions=v)
        s.route("PUT", wh, self._put_webhook, api_versions=v)
        s.route("PATCH", wh, self._patch_webhook, api_versions=v)
        s.route("DELETE", wh, self._delete_webhook, api_versions=v)
        job = _ACCT + r"/jobs/" + _NAME
        s.route("PUT", job, self._put_job, api_versions=v)
        s.route("GET", job, self._get_job, api_versions=v)
        s.route("GET", job + r"/output", self._get_job_output, api_versions=v)

    # -- helpers ------------------------------------------------------------------------------
    def _account(self, req: FakeRequest) -> Tuple[Optional[FakeAutomationAccount], Optional[FakeResponse]]:
        g = req.match.groupdict()
        acct = self.accounts.get((g["sub"].lower(), g["rg"].lower(), g["acct"].lower()))
        if acct is not None:
            return acct, None
        if (g["sub"].lower(), g["rg"].lower()) not in self.resource_groups:
            return None, arm_error(404, "ResourceGroupNotFound", f"Resource group '{g['rg']}' could not be found.")
        return None, arm_error(404, "ResourceNotFound", f"The Resource '{PROVIDER}/automationAccounts/{g['acct']}' under resource group '{g['rg']}' was not found.")

    @staticmethod
    def _body(req: FakeRequest) -> Tuple[dict, Optional[FakeResponse]]:
        try:
            body = req.json()
        except ValueError:
            return {}, automation_error(400, "BadRequest", "The request content was invalid and could not be deserialized.")
        if not isinstance(body, dict):
            return {}, automation_error(400, "BadRequest", "The request body must be a JSON object.")
        return body, None

    def _lro(self, req: FakeRequest, acct: FakeAutomationAccount, runbook: str, kind: str) -> FakeResponse:
        op = str(uuid.uuid4())
        with self._lock:
            self._ops[op] = [self.lro_polls]
        location = f"{ARM_HOST}{acct.id}/runbooks/{runbook}/{kind}/operationResults/{op}?api-version={API}"
        return FakeResponse(202, None, {"Location": location})

    @staticmethod
    def _page(items: List[dict]) -> FakeResponse:
        return FakeResponse(200, {"value": items})

    # -- account ------------------------------------------------------------------------------
    def _get_account(self, req: FakeRequest) -> FakeResponse:
        acct, err = self._account(req)
        if err:
            return err
        assert acct is not None
        body = {
            "id": acct.id,
            "name": acct.name,
            "type": MANAGED_TYPE_PREFIX,
            "location": acct.location,
            "tags": {},
            "properties": {"sku": {"name": "Basic"}, "state": "Ok", "creationTime": "2025-01-06T09:00:00+00:00", "lastModifiedTime": "2025-01-06T09:00:00+00:00"},
        }
        if acct.identity_type:
            body["identity"] = {"type": acct.identity_type, "principalId": acct.principal_id, "tenantId": acct.tenant_id}
        return FakeResponse(200, body)

    # -- runbooks -------------------------------------------------------------------------------
    def runbook_json(self, acct: FakeAutomationAccount, rb: FakeRunbook) -> dict:
        """Runbook JSON (runbook.json#/definitions/Runbook; examples/runbook/createOrUpdateRunbook.json)."""
        props: Dict[str, object] = {
            "runbookType": rb.runbook_type,
            "state": rb.state,
            "logVerbose": False,
            "logProgress": False,
            "logActivityTrace": 0,
            "jobCount": 0,
            "parameters": {},
            "outputTypes": [],
            "provisioningState": "Succeeded",
            "creationTime": _iso(rb.created),
            "lastModifiedTime": _iso(rb.modified),
            "lastModifiedBy": "",
            "description": rb.description,
        }
        if rb.runtime_environment:
            props["runtimeEnvironment"] = rb.runtime_environment
        if rb.draft is not None:
            props["draft"] = {"inEdit": True, "creationTime": _iso(rb.modified), "lastModifiedTime": _iso(rb.modified), "parameters": {}, "outputTypes": []}
        return {
            "id": f"{acct.id}/runbooks/{rb.name}",
            "name": rb.name,
            "type": f"{MANAGED_TYPE_PREFIX}/Runbooks",
            "location": rb.location,
            "tags": dict(rb.tags),
            "etag": f'"{int(rb.modified.timestamp() * 1000)}"',
            "properties": props,
        }

    def _runbook(self, req: FakeRequest) -> Tuple[Optional[FakeAutomationAccount], Optional[FakeRunbook], Optional[FakeResponse]]:
        acct, err = self._account(req)
        if err:
            return None, None, err
        assert acct is not None
        rb = acct.runbooks.get(req.match.group("name").lower())
        if rb is None:
            return acct, None, automation_error(404, "NotFound", f"The Runbook '{req.match.group('name')}' was not found.")
        return acct, rb, None

    def _list_runbooks(self, req: FakeRequest) -> FakeResponse:
        acct, err = self._account(req)
        if err:
            return err
        assert acct is not None
        return self._page([self.runbook_json(acct, rb) for rb in acct.runbooks.values()])

    def _get_runbook(self, req: FakeRequest) -> FakeResponse:
        acct, rb, err = self._runbook(req)
        return err or FakeResponse(200, self.runbook_json(acct, rb))  # type: ignore[arg-type]

    def _put_runbook(self, req: FakeRequest) -> FakeResponse:
        acct, err = self._account(req)
        if err:
            return err
        assert acct is not None
        body, err = self._body(req)
        if err:
            return err
        name = req.match.group("name")
        if not _RUNBOOK_NAME.match(name):
            return automation_error(400, "BadRequest", f"Invalid runbook name '{name}'.")
        props = body.get("properties")
        if not isinstance(props, dict):
            return automation_error(400, "BadRequest", "properties is required.")
        runbook_type = props.get("runbookType")
        if runbook_type not in RUNBOOK_TYPES:
            return automation_error(400, "BadRequest", f"Invalid runbookType '{runbook_type}'.")
        if props.get("draft") is not None and props.get("publishContentLink") is not None:
            # runbook.json: "Provide either content link for a published runbook or draft, not both."
            return automation_error(400, "BadRequest", "Provide either a publishContentLink or a draft, not both.")
        env = props.get("runtimeEnvironment")
        if env and env.lower() not in acct.environments:
            # assumption: the service refuses a runtime environment that does not exist in the account.
            return automation_error(400, "BadRequest", f"Runtime environment '{env}' does not exist in this account.")
        now = self.clock()
        with self._lock:
            existing = acct.runbooks.get(name.lower())
            rb = existing or FakeRunbook(name=name, runbook_type=runbook_type, location=body.get("location") or acct.location, created=now)
            rb.runbook_type = runbook_type
            rb.runtime_environment = env or None
            rb.description = props.get("description") or ""
            rb.tags = dict(body.get("tags") or {})
            rb.modified = now
            acct.runbooks[name.lower()] = rb
        return FakeResponse(200 if existing else 201, self.runbook_json(acct, rb))

    def _patch_runbook(self, req: FakeRequest) -> FakeResponse:
        acct, rb, err = self._runbook(req)
        if err:
            return err
        assert acct is not None and rb is not None
        body, err = self._body(req)
        if err:
            return err
        # runbook.json#/definitions/RunbookUpdateParameters: description, log options and tags only.
        props = body.get("properties") or {}
        with self._lock:
            if "description" in props:
                rb.description = props["description"] or ""
            if body.get("tags") is not None:
                rb.tags = dict(body["tags"])
            rb.modified = self.clock()
        return FakeResponse(200, self.runbook_json(acct, rb))

    def _delete_runbook(self, req: FakeRequest) -> FakeResponse:
        acct, rb, err = self._runbook(req)
        if err:
            return err
        assert acct is not None and rb is not None
        with self._lock:
            acct.runbooks.pop(rb.name.lower(), None)
            for jid in [j for j, js in acct.job_schedules.items() if js.runbook.lower() == rb.name.lower()]:
                acct.job_schedules.pop(jid)
        return FakeResponse(200)

    def _get_published_content(self, req: FakeRequest) -> FakeResponse:
        _, rb, err = self._runbook(req)
        if err:
            return err
        assert rb is not None
        if rb.published is None:
            return automation_error(404, "NotFound", f"The runbook '{rb.name}' has no published content.")
        return FakeResponse(200, rb.published, {"Content-Type": "text/plain; charset=utf-8"})

    def _get_draft_content(self, req: FakeRequest) -> FakeResponse:
        _, rb, err = self._runbook(req)
        if err:
            return err
        assert rb is not None
        if rb.draft is None:
            return automation_error(404, "NotFound", f"The runbook '{rb.name}' has no draft.")
        return FakeResponse(200, rb.draft, {"Content-Type": "text/plain; charset=utf-8"})

    def _replace_draft(self, req: FakeRequest) -> FakeResponse:
        acct, rb, err = self._runbook(req)
        if err:
            return err
        assert acct is not None and rb is not None
        body = req.body.decode("utf-8") if isinstance(req.body, bytes) else (req.body or "")
        with self._lock:
            rb.draft = body
            rb.modified = self.clock()
        return self._lro(req, acct, rb.name, "draft/content")

    def _publish(self, req: FakeRequest) -> FakeResponse:
        acct, rb, err = self._runbook(req)
        if err:
            return err
        assert acct is not None and rb is not None
        if rb.draft is None:
            return automation_error(400, "BadRequest", f"The runbook '{rb.name}' has no draft to publish.")
        with self._lock:
            rb.published, rb.draft = rb.draft, None
            rb.publish_count += 1
            rb.modified = self.clock()
        return self._lro(req, acct, rb.name, "publish")

    def _operation_result(self, req: FakeRequest) -> FakeResponse:
        _, err = self._account(req)
        if err:
            return err
        with self._lock:
            remaining = self._ops.get(req.match.group("op"))
            if remaining is None:
                return automation_error(404, "NotFound", "Operation not found.")
            if remaining[0] > 0:
                remaining[0] -= 1
                return FakeResponse(202, None, {"Location": req.url})
        return FakeResponse(200, {})

    # -- runtime environments and packages ----------------------------------------------------
    def environment_json(self, acct: FakeAutomationAccount, env: FakeRuntimeEnvironment) -> dict:
        """runtimeEnvironment.json#/definitions/RuntimeEnvironment (createRuntimeEnvironment.json)."""
        return {
            "id": f"{acct.id}/runtimeEnvironments/{env.name}",
            "name": env.name,
            "type": "Microsoft.Automation/automationAccounts/runtimeEnvironments",
            "location": env.location,
            "tags": dict(env.tags),
            "systemData": {"createdAt": "2025-01-06T09:00:00+00:00", "lastModifiedAt": "2025-01-06T09:00:00+00:00"},
            "properties": {"runtime": {"language": env.language, "version": env.version}, "defaultPackages": dict(env.default_packages), "description": env.description},
        }

    def _environment(self, req: FakeRequest) -> Tuple[Optional[FakeAutomationAccount], Optional[FakeRuntimeEnvironment], Optional[FakeResponse]]:
        acct, err = self._account(req)
        if err:
            return None, None, err
        assert acct is not None
        env = acct.environments.get(req.match.group("name").lower())
        if env is None:
            return acct, None, automation_error(404, "NotFound", f"Runtime environment '{req.match.group('name')}' was not found.")
        return acct, env, None

    def _list_environments(self, req: FakeRequest) -> FakeResponse:
        acct, err = self._account(req)
        if err:
            return err
        assert acct is not None
        return self._page([self.environment_json(acct, e) for e in acct.environments.values()])

    def _get_environment(self, req: FakeRequest) -> FakeResponse:
        acct, env, err = self._environment(req)
        return err or FakeResponse(200, self.environment_json(acct, env))  # type: ignore[arg-type]

    def _put_environment(self, req: FakeRequest) -> FakeResponse:
        acct, err = self._account(req)
        if err:
            return err
        assert acct is not None
        body, err = self._body(req)
        if err:
            return err
        name = req.match.group("name")
        if not _ENV_NAME.match(name):
            return automation_error(400, "BadRequest", f"Invalid runtime environment name '{name}'.")
        props = body.get("properties") or {}
        runtime = props.get("runtime") or {}
        language, version = runtime.get("language"), runtime.get("version")
        # Learn runtime-environment-overview.md: PowerShell 5.1/7.x and Python 3.8/3.10.
        if (language, version) not in {("Python", "3.8"), ("Python", "3.10"), ("PowerShell", "5.1"), ("PowerShell", "7.2"), ("PowerShell", "7.4")}:
            return automation_error(400, "BadRequest", f"Unsupported runtime {language} {version}.")
        if not body.get("location"):
            return automation_error(400, "BadRequest", "location is required.")
        with self._lock:
            existing = acct.environments.get(name.lower())
            if existing and (existing.language, existing.version) != (language, version):
                return automation_error(400, "BadRequest", "The language and version of a runtime environment cannot be changed.")
            env = existing or FakeRuntimeEnvironment(name=name, location=body["location"], language=language, version=version)
            env.description = props.get("description") or ""
            env.tags = dict(body.get("tags") or {})
            env.default_packages = dict(props.get("defaultPackages") or {})
            acct.environments[name.lower()] = env
        return FakeResponse(200 if existing else 201, self.environment_json(acct, env))

    def _delete_environment(self, req: FakeRequest) -> FakeResponse:
        acct, env, err = self._environment(req)
        if err:
            return err
        assert acct is not None and env is not None
        with self._lock:
            users = [rb.name for rb in acct.runbooks.values() if (rb.runtime_environment or "").lower() == env.name.lower()]
            if users:
                # assumption: an environment still used by runbooks cannot be deleted.
                return automation_error(409, "Conflict", f"Runtime environment '{env.name}' is used by runbooks: {', '.join(users)}.")
            acct.environments.pop(env.name.lower())
        return FakeResponse(200)

    def package_json(self, acct: FakeAutomationAccount, env: FakeRuntimeEnvironment, pkg: FakePackage) -> dict:
        """package.json#/definitions/Package (examples/package/getPackage.json)."""
        props: Dict[str, object] = {
            "default": False,
            "version": pkg.version,
            "sizeInBytes": 0 if pkg.state != "Succeeded" else 4096,
            "provisioningState": pkg.state,
            "error": {"code": "PackageImportFailed" if pkg.error else None, "message": pkg.error or ""},
        }
        return {
            "id": f"{acct.id}/runtimeEnvironments/{env.name}/packages/{pkg.name}",
            "name": pkg.name,
            "type": "Microsoft.Automation/automationAccounts/runtimeEnvironments/packages",
            "location": env.location,
            "tags": {},
            "properties": props,
            "systemData": {"createdAt": _iso(pkg.created), "lastModifiedAt": _iso(pkg.created)},
        }

    def _advance_import(self, pkg: FakePackage) -> None:
        """Reading a package moves its import on; it ends after ``package_import_reads`` reads."""
        with self._lock:
            if pkg.state != "Creating":
                return
            if pkg.reads_until_done > 0:
                pkg.reads_until_done -= 1
                return
            filename = pkg.uri.split("?")[0].rsplit("/", 1)[-1]
            failure = self.failing_packages.get(pkg.name.lower())
            if failure is None and not _WHEEL_OK.search(filename.replace("%2B", "+")):
                failure = f"'{filename}' is not a wheel for Python 3.10 on Linux x86_64 (cp310/abi3/py3, manylinux x86_64 or any)."
            if failure:
                pkg.state, pkg.error = "Failed", failure
            else:
                pkg.state = "Succeeded"
                parts = filename.replace("%2B", "+").split("-")
                pkg.version = parts[1] if len(parts) >= 5 else None

    def _list_packages(self, req: FakeRequest) -> FakeResponse:
        acct, env, err = self._environment(req)
        if err:
            return err
        assert acct is not None and env is not None
        for pkg in list(env.packages.values()):
            self._advance_import(pkg)
        return self._page([self.package_json(acct, env, p) for p in env.packages.values()])

    def _get_package(self, req: FakeRequest) -> FakeResponse:
        acct, env, err = self._environment(req)
        if err:
            return err
        assert acct is not None and env is not None
        pkg = env.packages.get(req.match.group("pkg").lower())
        if pkg is None:
            return automation_error(404, "NotFound", f"Package '{req.match.group('pkg')}' was not found.")
        self._advance_import(pkg)
        return FakeResponse(200, self.package_json(acct, env, pkg))

    def _put_package(self, req: FakeRequest) -> FakeResponse:
        acct, env, err = self._environment(req)
        if err:
            return err
        assert acct is not None and env is not None
        body, err = self._body(req)
        if err:
            return err
        link = (body.get("properties") or {}).get("contentLink") or {}
        uri = link.get("uri")
        if not isinstance(uri, str) or not uri.startswith("https://"):
            return automation_error(400, "BadRequest", "properties.contentLink.uri must be an https URL the service can download.")
        name = req.match.group("pkg")
        with self._lock:
            existing = env.packages.get(name.lower())
            env.packages[name.lower()] = FakePackage(name=name, uri=uri, content_hash=link.get("contentHash"), reads_until_done=self.package_import_reads)
        return FakeResponse(200 if existing else 201, self.package_json(acct, env, env.packages[name.lower()]))

    def _delete_package(self, req: FakeRequest) -> FakeResponse:
        _, env, err = self._environment(req)
        if err:
            return err
        assert env is not None
        with self._lock:
            if env.packages.pop(req.match.group("pkg").lower(), None) is None:
                return automation_error(404, "NotFound", f"Package '{req.match.group('pkg')}' was not found.")
        return FakeResponse(200)

    # -- schedules --------------------------------------------------------------------------------
    def schedule_json(self, acct: FakeAutomationAccount, sch: FakeSchedule) -> dict:
        """schedule.json#/definitions/Schedule (examples/createOrUpdateSchedule.json)."""
        offset = sch.start_time.utcoffset() or timedelta(0)
        props: Dict[str, object] = {
            "description": sch.description,
            "startTime": _iso(sch.start_time),
            "startTimeOffsetMinutes": offset.total_seconds() / 60,
            "expiryTime": _iso(sch.expiry_time) or "9999-12-31T23:59:59.9999999+00:00",
            "expiryTimeOffsetMinutes": 0,
            "isEnabled": sch.is_enabled,
            "nextRun": _iso(sch.start_time),
            "nextRunOffsetMinutes": offset.total_seconds() / 60,
            "interval": sch.interval,
            "frequency": sch.frequency,
            "timeZone": sch.time_zone,
            "creationTime": _iso(sch.created),
            "lastModifiedTime": _iso(sch.created),
        }
        if sch.week_days:
            props["advancedSchedule"] = {"weekDays": list(sch.week_days)}
        return {"id": f"{acct.id}/schedules/{sch.name}", "name": sch.name, "type": f"{MANAGED_TYPE_PREFIX}/Schedules", "properties": props}

    def _schedule(self, req: FakeRequest) -> Tuple[Optional[FakeAutomationAccount], Optional[FakeSchedule], Optional[FakeResponse]]:
        acct, err = self._account(req)
        if err:
            return None, None, err
        assert acct is not None
        sch = acct.schedules.get(req.match.group("name").lower())
        if sch is None:
            return acct, None, automation_error(404, "NotFound", f"The schedule '{req.match.group('name')}' was not found.")
        return acct, sch, None

    def _list_schedules(self, req: FakeRequest) -> FakeResponse:
        acct, err = self._account(req)
        if err:
            return err
        assert acct is not None
        return self._page([self.schedule_json(acct, s) for s in acct.schedules.values()])

    def _get_schedule(self, req: FakeRequest) -> FakeResponse:
        acct, sch, err = self._schedule(req)
        return err or FakeResponse(200, self.schedule_json(acct, sch))  # type: ignore[arg-type]

    def _put_schedule(self, req: FakeRequest) -> FakeResponse:
        acct, err = self._account(req)
        if err:
            return err
        assert acct is not None
        body, err = self._body(req)
        if err:
            return err
        name = req.match.group("name")
        if name.lower() in acct.schedules:
            # createOrUpdateSchedule.json lists 409 for an existing schedule; a schedule's timing cannot be
            # changed in place (ScheduleUpdateProperties has only description and isEnabled).
            return automation_error(409, "Conflict", f"A schedule with the name '{name}' already exists.")
        props = body.get("properties") or {}
        start = _parse_time(props.get("startTime"))
        frequency = props.get("frequency")
        if start is None or frequency not in FREQUENCIES:
            return automation_error(400, "BadRequest", "startTime and a valid frequency are required.")
        if start < self.clock() + timedelta(minutes=5):
            # Learn (automation/shared-resources/schedules.md): the start time must be at least 5 minutes in the future.
            return automation_error(400, "BadRequest", "The start time of the schedule must be at least 5 minutes after the time you create the schedule.")
        tz = props.get("timeZone") or "UTC"
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            return automation_error(400, "BadRequest", f"Unknown time zone '{tz}'.")
        interval = props.get("interval")
        if frequency != "OneTime" and (not isinstance(interval, int) or interval < 1):
            return automation_error(400, "BadRequest", "interval must be a positive integer.")
        week_days = ((props.get("advancedSchedule") or {}).get("weekDays")) or None
        if week_days is not None and (frequency != "Week" or not set(week_days) <= WEEK_DAYS):
            return automation_error(400, "BadRequest", f"advancedSchedule.weekDays needs frequency Week and day names, got {week_days}.")
        sch = FakeSchedule(name, start, frequency, interval, tz, props.get("description") or "", week_days, _parse_time(props.get("expiryTime")), created=self.clock())
        with self._lock:
            acct.schedules[name.lower()] = sch
        return FakeResponse(201, self.schedule_json(acct, sch))

    def _patch_schedule(self, req: FakeRequest) -> FakeResponse:
        acct, sch, err = self._schedule(req)
        if err:
            return err
        assert acct is not None and sch is not None
        body, err = self._body(req)
        if err:
            return err
        props = body.get("properties") or {}
        with self._lock:
            if "description" in props:
                sch.description = props["description"] or ""
            if "isEnabled" in props:
                sch.is_enabled = bool(props["isEnabled"])
        return FakeResponse(200, self.schedule_json(acct, sch))

    def _delete_schedule(self, req: FakeRequest) -> FakeResponse:
        acct, sch, err = self._schedule(req)
        if err:
            return err
        assert acct is not None and sch is not None
        with self._lock:
            acct.schedules.pop(sch.name.lower())
            # assumption: deleting a schedule removes the job schedules that link it (the portal does so).
            for jid in [j for j, js in acct.job_schedules.items() if js.schedule.lower() == sch.name.lower()]:
                acct.job_schedules.pop(jid)
        return FakeResponse(200)

    # -- job schedules ----------------------------------------------------------------------------
    def job_schedule_json(self, acct: FakeAutomationAccount, js: FakeJobSchedule) -> dict:
        """jobSchedule.json#/definitions/JobSchedule (examples/getJobSchedule.json)."""
        return {
            "id": f"{acct.id}/jobSchedules/{js.job_schedule_id}",
            "name": js.job_schedule_id,
            "type": f"{MANAGED_TYPE_PREFIX}/JobSchedules",
            "properties": {
                "jobScheduleId": js.job_schedule_id,
                "schedule": {"name": js.schedule},
                "runbook": {"name": js.runbook},
                "runOn": js.run_on,
                "parameters": dict(js.parameters),
            },
        }

    def _list_job_schedules(self, req: FakeRequest) -> FakeResponse:
        acct, err = self._account(req)
        if err:
            return err
        assert acct is not None
        return self._page([self.job_schedule_json(acct, js) for js in acct.job_schedules.values()])

    def _get_job_schedule(self, req: FakeRequest) -> FakeResponse:
        acct, err = self._account(req)
        if err:
            return err
        assert acct is not None
        js = acct.job_schedules.get(req.match.group("id").lower())
        if js is None:
            return automation_error(404, "NotFound", f"Job schedule '{req.match.group('id')}' was not found.")
        return FakeResponse(200, self.job_schedule_json(acct, js))

    def _put_job_schedule(self, req: FakeRequest) -> FakeResponse:
        acct, err = self._account(req)
        if err:
            return err
        assert acct is not None
        body, err = self._body(req)
        if err:
            return err
        jid = req.match.group("id")
        try:
            uuid.UUID(jid)
        except ValueError:
            return automation_error(400, "BadRequest", f"The job schedule id '{jid}' is not a GUID.")
        props = body.get("properties") or {}
        schedule = (props.get("schedule") or {}).get("name")
        runbook = (props.get("runbook") or {}).get("name")
        with self._lock:
            if jid.lower() in acct.job_schedules:
                # Job schedules cannot be updated: delete and recreate (jobSchedule.json has no PATCH).
                return automation_error(409, "Conflict", f"Job schedule '{jid}' already exists.")
            if not schedule or schedule.lower() not in acct.schedules:
                return automation_error(404, "NotFound", f"The schedule '{schedule}' was not found.")
            rb = acct.runbooks.get((runbook or "").lower())
            if rb is None:
                return automation_error(404, "NotFound", f"The Runbook '{runbook}' was not found.")
            if rb.published is None:
                return automation_error(400, "BadRequest", f"The runbook '{runbook}' must be published before it can be linked to a schedule.")
            if any(js.schedule.lower() == schedule.lower() and js.runbook.lower() == rb.name.lower() for js in acct.job_schedules.values()):
                # assumption: one link per (schedule, runbook), as the portal enforces.
                return automation_error(409, "Conflict", f"The runbook '{runbook}' is already linked to schedule '{schedule}'.")
            js = FakeJobSchedule(jid, acct.schedules[schedule.lower()].name, rb.name, dict(props.get("parameters") or {}), props.get("runOn"))
            acct.job_schedules[jid.lower()] = js
        return FakeResponse(201, self.job_schedule_json(acct, js))

    def _delete_job_schedule(self, req: FakeRequest) -> FakeResponse:
        acct, err = self._account(req)
        if err:
            return err
        assert acct is not None
        with self._lock:
            if acct.job_schedules.pop(req.match.group("id").lower(), None) is None:
                return automation_error(404, "NotFound", f"Job schedule '{req.match.group('id')}' was not found.")
        return FakeResponse(200)

    # -- webhooks -----------------------------------------------------------------------------------
    def webhook_json(self, acct: FakeAutomationAccount, wh: FakeWebhook) -> dict:
        """webhook.json#/definitions/Webhook; the uri is never returned after creation (getWebhook.json: "")."""
        return {
            "id": f"{acct.id}/webhooks/{wh.name}",
            "name": wh.name,
            "type": f"{MANAGED_TYPE_PREFIX}/Webhooks",
            "properties": {
                "isEnabled": wh.is_enabled,
                "expiryTime": _iso(wh.expiry_time),
                "runbook": {"name": wh.runbook},
                "lastInvokedTime": None,
                "runOn": wh.run_on,
                "parameters": dict(wh.parameters) if wh.parameters is not None else None,
                "uri": "",
                "creationTime": _iso(wh.created),
                "lastModifiedBy": "",
                "lastModifiedTime": _iso(wh.created),
                "description": wh.description,
            },
        }

    def _generate_uri(self, req: FakeRequest) -> FakeResponse:
        acct, err = self._account(req)
        if err:
            return err
        assert acct is not None
        uri = f"https://{uuid.uuid4()}.webhook.{acct.location}.azure-automation.net/webhooks?token={secrets.token_urlsafe(32)}"
        with self._lock:
            self.issued_webhook_uris.append(uri)
        # webhook.json: Webhook_GenerateUri answers 200 with a JSON string.
        return FakeResponse(200, f'"{uri}"', {"Content-Type": "application/json; charset=utf-8"})

    def _webhook(self, req: FakeRequest) -> Tuple[Optional[FakeAutomationAccount], Optional[FakeWebhook], Optional[FakeResponse]]:
        acct, err = self._account(req)
        if err:
            return None, None, err
        assert acct is not None
        wh = acct.webhooks.get(req.match.group("name").lower())
        if wh is None:
            return acct, None, automation_error(404, "NotFound", f"The webhook '{req.match.group('name')}' was not found.")
        return acct, wh, None

    def _list_webhooks(self, req: FakeRequest) -> FakeResponse:
        acct, err = self._account(req)
        if err:
            return err
        assert acct is not None
        return self._page([self.webhook_json(acct, w) for w in acct.webhooks.values()])

    def _get_webhook(self, req: FakeRequest) -> FakeResponse:
        acct, wh, err = self._webhook(req)
        return err or FakeResponse(200, self.webhook_json(acct, wh))  # type: ignore[arg-type]

    def _put_webhook(self, req: FakeRequest) -> FakeResponse:
        acct, err = self._account(req)
        if err:
            return err
        assert acct is not None
        body, err = self._body(req)
        if err:
            return err
        name = req.match.group("name")
        props = body.get("properties") or {}
        runbook = (props.get("runbook") or {}).get("name")
        rb = acct.runbooks.get((runbook or "").lower())
        if rb is None:
            return automation_error(404, "NotFound", f"The Runbook '{runbook}' was not found.")
        if rb.published is None:
            return automation_error(400, "BadRequest", f"The runbook '{runbook}' must be published before a webhook can be created.")
        expiry = _parse_time(props.get("expiryTime")) or (self.clock() + timedelta(days=365))
        with self._lock:
            existing = acct.webhooks.get(name.lower())
            uri = props.get("uri")
            if existing is None:
                if uri not in self.issued_webhook_uris:
                    return automation_error(400, "BadRequest", "properties.uri must be a URI returned by webhooks/generateUri.")
                wh = FakeWebhook(name, uri, rb.name, expiry, bool(props.get("isEnabled", False)), props.get("parameters"), props.get("runOn"), created=self.clock())
                acct.webhooks[name.lower()] = wh
            else:
                # assumption: the token of an existing webhook never changes; other fields are updated.
                wh = existing
                wh.runbook, wh.expiry_time = rb.name, expiry
                wh.is_enabled = bool(props.get("isEnabled", wh.is_enabled))
                wh.parameters = props.get("parameters", wh.parameters)
        return FakeResponse(200 if existing else 201, self.webhook_json(acct, wh))

    def _patch_webhook(self, req: FakeRequest) -> FakeResponse:
        acct, wh, err = self._webhook(req)
        if err:
            return err
        assert acct is not None and wh is not None
        body, err = self._body(req)
        if err:
            return err
        # webhook.json#/definitions/WebhookUpdateProperties: isEnabled, runOn, parameters, description.
        props = body.get("properties") or {}
        with self._lock:
            if "isEnabled" in props:
                wh.is_enabled = bool(props["isEnabled"])
            if "parameters" in props:
                wh.parameters = props["parameters"]
            if "description" in props:
                wh.description = props["description"] or ""
            if "runOn" in props:
                wh.run_on = props["runOn"]
        return FakeResponse(200, self.webhook_json(acct, wh))

    def _delete_webhook(self, req: FakeRequest) -> FakeResponse:
        acct, wh, err = self._webhook(req)
        if err:
            return err
        assert acct is not None and wh is not None
        with self._lock:
            acct.webhooks.pop(wh.name.lower())
        return FakeResponse(200)

    # -- jobs -----------------------------------------------------------------------------------------
    def job_json(self, acct: FakeAutomationAccount, job: FakeJob) -> dict:
        """job.json#/definitions/Job (examples/job/createJob.json, getJob.json)."""
        return {
            "id": f"{acct.id}/jobs/{job.name}",
            "name": job.name,
            "type": f"{MANAGED_TYPE_PREFIX}/Jobs",
            "properties": {
                "jobId": job.job_id,
                "runbook": {"name": job.runbook},
                "provisioningState": "Succeeded" if job.status in ("Completed", "Failed", "Stopped") else "Processing",
                "creationTime": _iso(job.created),
                "startTime": _iso(job.started),
                "endTime": _iso(job.ended),
                "exception": job.exception,
                "lastModifiedTime": _iso(job.ended or job.created),
                "lastStatusModifiedTime": _iso(job.ended or job.created),
                "status": job.status,
                "statusDetails": "None",
                "parameters": dict(job.parameters),
                "runOn": job.run_on,
                "jobRuntimeEnvironment": {"runtimeEnvironmentName": job.runtime_environment},
            },
        }

    def _put_job(self, req: FakeRequest) -> FakeResponse:
        acct, err = self._account(req)
        if err:
            return err
        assert acct is not None
        body, err = self._body(req)
        if err:
            return err
        props = body.get("properties") or {}
        runbook = (props.get("runbook") or {}).get("name")
        rb = acct.runbooks.get((runbook or "").lower())
        if rb is None:
            return automation_error(404, "NotFound", f"The Runbook '{runbook}' was not found.")
        if rb.published is None:
            return automation_error(400, "BadRequest", f"The runbook '{runbook}' is not published.")
        name = req.match.group("name")
        with self._lock:
            if name.lower() in acct.jobs:
                return automation_error(409, "Conflict", f"A job named '{name}' already exists.")
            job = FakeJob(name, str(uuid.uuid4()), rb.name, dict(props.get("parameters") or {}), rb.runtime_environment, run_on=props.get("runOn") or "", created=self.clock())
            acct.jobs[name.lower()] = job
        if self.job_runner is not None:
            job.started = self.clock()
            try:
                job.status, job.output = self.job_runner(job, rb)
            except Exception as exc:  # a crashing runbook is a failed job, as in the service
                job.status, job.exception = "Failed", f"{type(exc).__name__}: {exc}"
            job.ended = self.clock()
        return FakeResponse(201, self.job_json(acct, job))

    def _job(self, req: FakeRequest) -> Tuple[Optional[FakeAutomationAccount], Optional[FakeJob], Optional[FakeResponse]]:
        acct, err = self._account(req)
        if err:
            return None, None, err
        assert acct is not None
        job = acct.jobs.get(req.match.group("name").lower())
        if job is None:
            return acct, None, automation_error(404, "NotFound", f"The job '{req.match.group('name')}' was not found.")
        return acct, job, None

    def _get_job(self, req: FakeRequest) -> FakeResponse:
        acct, job, err = self._job(req)
        return err or FakeResponse(200, self.job_json(acct, job))  # type: ignore[arg-type]

    def _get_job_output(self, req: FakeRequest) -> FakeResponse:
        _, job, err = self._job(req)
        if err:
            return err
        assert job is not None
        return FakeResponse(200, job.output, {"Content-Type": "text/plain; charset=utf-8"})
