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

Behaviour the specs leave open is modelled conservatively and marked "assumption" below; where a
public source leaves two readings, the :class:`~fake_azure.platform.Platform` given as ``platform=``
chooses (docs/platform.md). Beyond the control plane the fake also serves:
- the webhook invocation endpoint (``POST https://<id>.webhook.<region>.azure-automation.net/webhooks?token=``,
  automation-webhooks.md "Use a webhook"), which starts a job with argv built as Automation does for Python;
- a job executor: a job runs the published runbook text in-process (``sys.argv``, ``__main__``, streams
  captured), with a managed-identity endpoint (``IDENTITY_ENDPOINT``/``IDENTITY_HEADER``) whose tokens the
  fake ARM server accepts; jobs/{name}/output and jobs/{name}/streams read what it wrote.
"""

from __future__ import annotations

import importlib.metadata
import io
import math
import os
import re
import secrets
import sys
import threading
import time
import traceback
import uuid
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import unquote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fake_azure.platform import Platform, resolve
from fake_azure.server import ARM_HOST, FakeArmServer, FakeRequest, FakeResponse, TokenBucket, arm_error, audience_of

API = "2024-10-23"
PROVIDER = "Microsoft.Automation"
MANAGED_TYPE_PREFIX = "Microsoft.Automation/AutomationAccounts"

_ACCT = r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Automation/automationAccounts/(?P<acct>[^/]+)"
# runbook.json and common/v1/definitions.json (RuntimeEnvironmentNameParameter) name patterns.
_RUNBOOK_NAME = re.compile(r"^[a-zA-Z][a-zA-Z\-_0-9]*$")
_ENV_NAME = re.compile(r"^[a-zA-Z][a-zA-Z\-_0-9]*$")
RUNBOOK_TYPES = {
    "Script",
    "Graph",
    "PowerShellWorkflow",
    "PowerShell",
    "GraphPowerShellWorkflow",
    "GraphPowerShell",
    "Python2",
    "Python3",
    "Python",
    "PowerShell72",
}
FREQUENCIES = {"OneTime", "Day", "Hour", "Week", "Month", "Minute"}
WEEK_DAYS = {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"}
# Python 3.10 accepts cp310 manylinux x86_64 or pure wheels only (MicrosoftDocs python-3-packages.md).
_WHEEL_OK = re.compile(r"-(py3|py2\.py3|cp310|py310|cp3\d+)-(none|abi3|cp310)-(any|manylinux[\w.]*x86_64)\.whl$", re.IGNORECASE)


# Sandbox limits (Learn automation/automation-subscription-limits-faq.md): 512 KB webhook payload, at most
# 50 runbook parameters and 512 KB of parameters; Automation resources take at most 15 tags
# (tag-support.md note; MicrosoftDocs/azure-docs#58362: 400 "Too many tags.").
MAX_WEBHOOK_PAYLOAD = 512 * 1024
MAX_JOB_PARAMETERS, MAX_JOB_PARAMETER_BYTES = 50, 512 * 1024
MAX_AUTOMATION_TAGS = 15
# Package imports: about 5 per 30 s per account (UNCONFIRMED; Microsoft's
# Utility/Python/import_py3package_from_pypi.py paces imports and waits 60 s on 429).
IMPORT_BURST, IMPORT_WINDOW_SECONDS = 5, 30.0
# The managed-identity endpoint a job sees (FACTS.md: newer workers use this form; older ones
# http://127.0.0.1:<port>/oauth2/token). azure-identity takes its App Service path for it.
IDENTITY_HOST = "http://localhost"
IDENTITY_PATH = "/metadata/identity/oauth2/token"
# Webhook host region codes as in the documented example URL (...webhook.wus.azure-automation.net);
# other regions fall back to the location name (UNCONFIRMED for regions not listed).
_REGION_CODES = {"westus": "wus", "eastus": "eus", "eastus2": "eus2", "westeurope": "we", "northeurope": "ne", "uksouth": "uks", "centralus": "cus"}
# os.environ, sys.argv and sys.stdout are process-wide: one job runs at a time in this process.
_PROCESS_LOCK = threading.RLock()


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
    """A job as the service records it: which runbook, with which parameters, how it ended.

    ``argv`` is what the runbook saw after ``sys.argv[0]``; ``streams`` the records it wrote as
    (streamType, text, time); ``exit_code`` the process's exit status (None until it ran)."""

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
    argv: List[str] = field(default_factory=list)
    streams: List[Tuple[str, str, datetime]] = field(default_factory=list)
    exit_code: Optional[int] = None
    webhook: Optional[str] = None

    def stream_text(self, stream_type: str) -> str:
        """Every record of one stream ("Output", "Error", ...), one per line."""
        return "\n".join(text for kind, text, _ in self.streams if kind == stream_type)


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


@dataclass(frozen=True)
class _Collection:
    """One kind of child resource, served by the generic lookup, list, get and delete handlers.

    Items live in the dict ``attr`` of their owner (the account, or the parent collection's item), keyed
    by lower-case name; a route names one in regex group ``group``. Hooks and ``render`` name
    :class:`FakeAutomation` methods: ``render(acct, *ancestors, item)`` gives the item's JSON,
    ``on_read(item)`` runs before an item is shown, ``on_delete(acct, item)`` runs (under the lock) before
    one is removed and may refuse with a response.
    """

    segment: str
    attr: str
    group: str
    not_found: str  # the 404 message; "{}" is the name as the request spelled it
    render: str
    parent: Optional[_Collection] = None
    serves: Tuple[str, ...] = ("list", "get", "delete")
    on_read: Optional[str] = None
    on_delete: Optional[str] = None

    @property
    def path(self) -> str:
        return f"{self.parent.item_path if self.parent else _ACCT}/{self.segment}"

    @property
    def item_path(self) -> str:
        return f"{self.path}/(?P<{self.group}>[^/]+)"

    def lineage(self) -> List[_Collection]:
        """The collections from the account down to this one."""
        return (self.parent.lineage() if self.parent else []) + [self]


# The child collections: URL segment, attribute on the owner, route group, 404 message, JSON method, then hooks.
RUNBOOKS = _Collection("runbooks", "runbooks", "name", "The Runbook '{}' was not found.", "runbook_json", on_delete="_unlink_runbook")
ENVIRONMENTS = _Collection(
    "runtimeEnvironments", "environments", "name", "Runtime environment '{}' was not found.", "environment_json", on_delete="_refuse_environment_in_use"
)
PACKAGES = _Collection("packages", "packages", "pkg", "Package '{}' was not found.", "package_json", parent=ENVIRONMENTS, on_read="_advance_import")
SCHEDULES = _Collection("schedules", "schedules", "name", "The schedule '{}' was not found.", "schedule_json", on_delete="_unlink_schedule")
JOB_SCHEDULES = _Collection("jobSchedules", "job_schedules", "id", "Job schedule '{}' was not found.", "job_schedule_json")
WEBHOOKS = _Collection("webhooks", "webhooks", "name", "The webhook '{}' was not found.", "webhook_json")
# Jobs are only created, read and their output fetched here: no list or delete route.
JOBS = _Collection("jobs", "jobs", "name", "The job '{}' was not found.", "job_json", serves=("get",))
COLLECTIONS = (RUNBOOKS, ENVIRONMENTS, PACKAGES, SCHEDULES, JOB_SCHEDULES, WEBHOOKS, JOBS)

Handler = Callable[..., FakeResponse]


class FakeAutomation:
    """The Azure Automation resource provider, registered on a :class:`FakeArmServer`.

    ``lro_polls``: how many status polls answer "still running" before a draft replace or a publish
    completes. ``package_import_reads``: how many reads of a package pass before its import ends.
    ``failing_packages``: package name (lower) -> error message for imports that should fail.
    ``job_runner``: when set, a created job is run at once: ``runner(job, runbook) -> (status, output)``.
    Without it, ``platform.run_jobs`` decides: the fake executes the published runbook (see
    :meth:`_execute`) before answering, or (LEGACY) the job stays "New".
    ``platform``: the reading of the platform (fake_azure/platform.py; default LEGACY for now);
    ``import_rate_limited`` overrides its import limit; ``rate_clock`` (monotonic seconds) drives that
    limit so tests need not sleep. ``required_distributions`` (see :meth:`require`) says which
    distributions a runbook needs from its runtime environment: a job fails with
    ``ModuleNotFoundError`` when one is missing or its wheel does not fit Python 3.10 on Linux x86_64.
    """

    def __init__(
        self,
        server: FakeArmServer,
        *,
        lro_polls: int = 1,
        package_import_reads: int = 1,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        job_runner: Optional[JobRunner] = None,
        platform: Optional[Platform] = None,
        import_rate_limited: Optional[bool] = None,
        rate_clock: Callable[[], float] = time.monotonic,
    ):
        self.server = server
        self.lro_polls = lro_polls
        self.package_import_reads = package_import_reads
        self.clock = clock
        self.job_runner = job_runner
        self.platform = resolve(platform, import_rate_limited=import_rate_limited)
        self.rate_clock = rate_clock
        self.failing_packages: Dict[str, str] = {}
        # runbook name (lower) or "*" -> {distribution name: top-level module it provides}
        self.required_distributions: Dict[str, Dict[str, str]] = {}
        self._import_buckets: Dict[str, TokenBucket] = {}
        self._identity_secrets: Dict[str, FakeAutomationAccount] = {}
        self.identity_requests = 0
        self.accounts: Dict[Tuple[str, str, str], FakeAutomationAccount] = {}
        self.resource_groups: set = set()
        self.issued_webhook_uris: List[str] = []
        self._ops: Dict[str, List[int]] = {}
        self._lock = threading.RLock()
        self._register()

    # -- seeding / inspection ---------------------------------------------------------------
    def add_account(
        self,
        subscription_id: str,
        resource_group: str,
        name: str,
        *,
        location: str = "westeurope",
        identity: Optional[str] = "SystemAssigned",
        principal_id: Optional[str] = None,
    ) -> FakeAutomationAccount:
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

    def require(self, runbook: str, distributions: List[str]) -> Dict[str, str]:
        """Declare the distributions ``runbook`` ("*": every runbook) needs in its runtime environment.

        Python 3.10 has no default packages and imports do not bring their dependencies
        (python-3-packages.md; MicrosoftDocs/azure-docs#122237), so a job needs each one imported. The
        module named in the job's ``ModuleNotFoundError`` is the distribution's top-level module, taken
        from the installed metadata (importlib.metadata.packages_distributions) or its name with "-"
        replaced by "_". Returns the mapping it stored."""
        provided: Dict[str, List[str]] = {}
        for module, dists in importlib.metadata.packages_distributions().items():
            for dist in dists:
                provided.setdefault(_normalize(dist), []).append(module)
        mapping = {}
        for dist in distributions:
            modules = sorted(m for m in provided.get(_normalize(dist), []) if not m.startswith("_"))
            mapping[_normalize(dist)] = modules[0] if modules else _normalize(dist).replace("-", "_")
        with self._lock:
            self.required_distributions.setdefault(runbook.lower(), {}).update(mapping)
        return mapping

    def job(self, subscription_id: str, resource_group: str, account: str, job_name: str) -> FakeJob:
        """The stored job; KeyError if absent."""
        return self.account(subscription_id, resource_group, account).jobs[job_name.lower()]

    def wait_for_job(self, subscription_id: str, resource_group: str, account: str, job_name: str) -> FakeJob:
        """The job once it has ended. Jobs run synchronously inside the request that created them, so
        this returns at once; it exists so tests do not depend on that."""
        return self.job(subscription_id, resource_group, account, job_name)

    # -- routes -------------------------------------------------------------------------------
    def _register(self) -> None:
        def route(method: str, path: str, handler: Handler, coll: Optional[_Collection] = None, *, body: bool = False) -> None:
            self.server.route(method, path, self._bind(handler, coll, body=body), api_versions=(API,))

        route("GET", _ACCT, self._get_account)
        for c in COLLECTIONS:
            if "list" in c.serves:
                route("GET", c.path, partial(self._list, c), c.parent)
            if "get" in c.serves:
                route("GET", c.item_path, partial(self._get, c), c)
            if "delete" in c.serves:
                route("DELETE", c.item_path, partial(self._delete, c), c)
        rb = RUNBOOKS.item_path
        route("PUT", rb, self._put_runbook, body=True)
        route("PATCH", rb, self._patch_runbook, RUNBOOKS, body=True)
        route("GET", rb + r"/content", self._get_published_content, RUNBOOKS)
        route("GET", rb + r"/draft/content", self._get_draft_content, RUNBOOKS)
        route("PUT", rb + r"/draft/content", self._replace_draft, RUNBOOKS)
        route("POST", rb + r"/publish", self._publish, RUNBOOKS)
        route("GET", rb + r"/(?P<kind>draft/content|publish)/operationResults/(?P<op>[^/]+)", self._operation_result)
        route("PUT", ENVIRONMENTS.item_path, self._put_environment, body=True)
        route("PUT", PACKAGES.item_path, self._put_package, ENVIRONMENTS, body=True)
        route("PUT", SCHEDULES.item_path, self._put_schedule, body=True)
        route("PATCH", SCHEDULES.item_path, self._patch_schedule, SCHEDULES, body=True)
        route("PUT", JOB_SCHEDULES.item_path, self._put_job_schedule, body=True)
        route("POST", WEBHOOKS.path + r"/generateUri", self._generate_uri)
        route("PUT", WEBHOOKS.item_path, self._put_webhook, body=True)
        route("PATCH", WEBHOOKS.item_path, self._patch_webhook, WEBHOOKS, body=True)
        route("PUT", JOBS.item_path, self._put_job, body=True)
        route("GET", JOBS.item_path + r"/output", self._get_job_output, JOBS)
        route("GET", JOBS.item_path + r"/streams", self._list_job_streams, JOBS)
        route("GET", JOBS.item_path + r"/streams/(?P<stream>[^/]+)", self._get_job_stream, JOBS)
        self.server.route("GET", IDENTITY_PATH, self._identity_token, host=IDENTITY_HOST, authenticated=False)

    def _bind(self, handler: Handler, coll: Optional[_Collection], *, body: bool) -> Callable[[FakeRequest], FakeResponse]:
        """A route handler: finds the account and, with ``coll``, the items down to the one the route names
        (the first missing answers 404); with ``body`` parses the JSON body (400 if bad); then calls
        ``handler(req, acct, *items)``, with the body last when parsed."""

        def handle(req: FakeRequest) -> FakeResponse:
            acct, items, err = self._lookup(req, coll)
            if err:
                return err
            if not body:
                return handler(req, acct, *items)
            data, err = self._body(req)
            return err or handler(req, acct, *items, data)

        return handle

    # -- generic collection handlers ----------------------------------------------------------
    def _lookup(self, req: FakeRequest, coll: Optional[_Collection]) -> Tuple[Optional[FakeAutomationAccount], List[Any], Optional[FakeResponse]]:
        """The account, then each item from it down to ``coll``'s (matched by lower-case name); or the 404
        of the first missing: ARM's for the account, the collection's own below it."""
        acct, err = self._account(req)
        if err:
            return None, [], err
        items: List[Any] = []
        owner: Any = acct
        for c in coll.lineage() if coll else []:
            name = req.match.group(c.group)
            owner = getattr(owner, c.attr).get(name.lower())
            if owner is None:
                return acct, [], automation_error(404, "NotFound", c.not_found.format(name))
            items.append(owner)
        return acct, items, None

    def _list(self, coll: _Collection, req: FakeRequest, acct: FakeAutomationAccount, *parents: Any) -> FakeResponse:
        items = list(getattr(parents[-1] if parents else acct, coll.attr).values())
        if coll.on_read:
            for item in items:
                getattr(self, coll.on_read)(item)
        render = getattr(self, coll.render)
        return FakeResponse(200, {"value": [render(acct, *parents, item) for item in items]})

    def _get(self, coll: _Collection, req: FakeRequest, acct: FakeAutomationAccount, *path: Any) -> FakeResponse:
        if coll.on_read:
            getattr(self, coll.on_read)(path[-1])
        return FakeResponse(200, getattr(self, coll.render)(acct, *path))

    def _delete(self, coll: _Collection, req: FakeRequest, acct: FakeAutomationAccount, *path: Any) -> FakeResponse:
        owner = path[-2] if len(path) > 1 else acct
        with self._lock:
            refusal = getattr(self, coll.on_delete)(acct, path[-1]) if coll.on_delete else None
            if refusal:
                return refusal
            getattr(owner, coll.attr).pop(req.match.group(coll.group).lower(), None)
        return FakeResponse(200)

    # -- helpers ------------------------------------------------------------------------------
    def _account(self, req: FakeRequest) -> Tuple[Optional[FakeAutomationAccount], Optional[FakeResponse]]:
        g = req.match.groupdict()
        acct = self.accounts.get((g["sub"].lower(), g["rg"].lower(), g["acct"].lower()))
        if acct is not None:
            return acct, None
        if (g["sub"].lower(), g["rg"].lower()) not in self.resource_groups:
            return None, arm_error(404, "ResourceGroupNotFound", f"Resource group '{g['rg']}' could not be found.")
        return None, arm_error(
            404, "ResourceNotFound", f"The Resource '{PROVIDER}/automationAccounts/{g['acct']}' under resource group '{g['rg']}' was not found."
        )

    @staticmethod
    def _body(req: FakeRequest) -> Tuple[dict, Optional[FakeResponse]]:
        try:
            body = req.json()
        except ValueError:
            return {}, automation_error(400, "BadRequest", "The request content was invalid and could not be deserialized.")
        if not isinstance(body, dict):
            return {}, automation_error(400, "BadRequest", "The request body must be a JSON object.")
        return body, None

    def _lro(self, acct: FakeAutomationAccount, runbook: str, kind: str) -> FakeResponse:
        op = str(uuid.uuid4())
        with self._lock:
            self._ops[op] = [self.lro_polls]
        location = f"{ARM_HOST}{acct.id}/runbooks/{runbook}/{kind}/operationResults/{op}?api-version={API}"
        return FakeResponse(202, None, {"Location": location})

    @staticmethod
    def _published_runbook(acct: FakeAutomationAccount, name: Optional[str], unpublished: str) -> Tuple[Optional[FakeRunbook], Optional[FakeResponse]]:
        """The runbook a job, job schedule or webhook names: 404 if absent, 400 ``unpublished`` if never published."""
        rb = acct.runbooks.get((name or "").lower())
        if rb is None:
            return None, automation_error(404, "NotFound", RUNBOOKS.not_found.format(name))
        if rb.published is None:
            return None, automation_error(400, "BadRequest", unpublished.format(name))
        return rb, None

    @staticmethod
    def _drop_job_schedules(acct: FakeAutomationAccount, linked: Callable[[FakeJobSchedule], bool]) -> None:
        for jid in [j for j, js in acct.job_schedules.items() if linked(js)]:
            acct.job_schedules.pop(jid)

    # -- account ------------------------------------------------------------------------------
    def _get_account(self, req: FakeRequest, acct: FakeAutomationAccount) -> FakeResponse:
        body = {
            "id": acct.id,
            "name": acct.name,
            "type": MANAGED_TYPE_PREFIX,
            "location": acct.location,
            "tags": {},
            "properties": {
                "sku": {"name": "Basic"},
                "state": "Ok",
                "creationTime": "2025-01-06T09:00:00+00:00",
                "lastModifiedTime": "2025-01-06T09:00:00+00:00",
            },
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

    def _put_runbook(self, req: FakeRequest, acct: FakeAutomationAccount, body: dict) -> FakeResponse:
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
        err = _too_many_tags(body)
        if err:
            return err
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

    def _patch_runbook(self, req: FakeRequest, acct: FakeAutomationAccount, rb: FakeRunbook, body: dict) -> FakeResponse:
        # runbook.json#/definitions/RunbookUpdateParameters: description, log options and tags only.
        props = body.get("properties") or {}
        err = _too_many_tags(body)
        if err:
            return err
        with self._lock:
            if "description" in props:
                rb.description = props["description"] or ""
            if body.get("tags") is not None:
                rb.tags = dict(body["tags"])
            rb.modified = self.clock()
        return FakeResponse(200, self.runbook_json(acct, rb))

    def _unlink_runbook(self, acct: FakeAutomationAccount, rb: FakeRunbook) -> None:
        """Deleting a runbook removes the job schedules that run it."""
        self._drop_job_schedules(acct, lambda js: js.runbook.lower() == rb.name.lower())

    def _get_published_content(self, req: FakeRequest, acct: FakeAutomationAccount, rb: FakeRunbook) -> FakeResponse:
        if rb.published is None:
            return automation_error(404, "NotFound", f"The runbook '{rb.name}' has no published content.")
        return FakeResponse(200, rb.published, {"Content-Type": "text/plain; charset=utf-8"})

    def _get_draft_content(self, req: FakeRequest, acct: FakeAutomationAccount, rb: FakeRunbook) -> FakeResponse:
        if rb.draft is None:
            return automation_error(404, "NotFound", f"The runbook '{rb.name}' has no draft.")
        return FakeResponse(200, rb.draft, {"Content-Type": "text/plain; charset=utf-8"})

    def _replace_draft(self, req: FakeRequest, acct: FakeAutomationAccount, rb: FakeRunbook) -> FakeResponse:
        body = req.body.decode("utf-8") if isinstance(req.body, bytes) else (req.body or "")
        with self._lock:
            rb.draft = body
            rb.modified = self.clock()
        return self._lro(acct, rb.name, "draft/content")

    def _publish(self, req: FakeRequest, acct: FakeAutomationAccount, rb: FakeRunbook) -> FakeResponse:
        if rb.draft is None:
            return automation_error(400, "BadRequest", f"The runbook '{rb.name}' has no draft to publish.")
        with self._lock:
            rb.published, rb.draft = rb.draft, None
            rb.publish_count += 1
            rb.modified = self.clock()
        return self._lro(acct, rb.name, "publish")

    def _operation_result(self, req: FakeRequest, acct: FakeAutomationAccount) -> FakeResponse:
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
            "properties": {
                "runtime": {"language": env.language, "version": env.version},
                "defaultPackages": dict(env.default_packages),
                "description": env.description,
            },
        }

    def _put_environment(self, req: FakeRequest, acct: FakeAutomationAccount, body: dict) -> FakeResponse:
        name = req.match.group("name")
        if not _ENV_NAME.match(name):
            return automation_error(400, "BadRequest", f"Invalid runtime environment name '{name}'.")
        props = body.get("properties") or {}
        runtime = props.get("runtime") or {}
        language, version = runtime.get("language"), runtime.get("version")
        # Learn runtime-environment-overview.md: PowerShell 5.1/7.x and Python 3.8/3.10.
        if (language, version) not in {("Python", "3.8"), ("Python", "3.10"), ("PowerShell", "5.1"), ("PowerShell", "7.2"), ("PowerShell", "7.4")}:
            return automation_error(400, "BadRequest", f"Unsupported runtime {language} {version}.")
        err = _too_many_tags(body)
        if err:
            return err
        with self._lock:
            existing = acct.environments.get(name.lower())
            if existing and (existing.language, existing.version) != (language, version):
                return automation_error(400, "BadRequest", "The language and version of a runtime environment cannot be changed.")
            # manage-runtime-environment.md's REST example sends no location: the account's is used.
            env = existing or FakeRuntimeEnvironment(name=name, location=body.get("location") or acct.location, language=language, version=version)
            env.description = props.get("description") or ""
            env.tags = dict(body.get("tags") or {})
            env.default_packages = dict(props.get("defaultPackages") or {})
            acct.environments[name.lower()] = env
        return FakeResponse(200 if existing else 201, self.environment_json(acct, env))

    def _refuse_environment_in_use(self, acct: FakeAutomationAccount, env: FakeRuntimeEnvironment) -> Optional[FakeResponse]:
        users = [rb.name for rb in acct.runbooks.values() if (rb.runtime_environment or "").lower() == env.name.lower()]
        if users:
            # assumption: an environment still used by runbooks cannot be deleted.
            return automation_error(409, "Conflict", f"Runtime environment '{env.name}' is used by runbooks: {', '.join(users)}.")
        return None

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
            # package_validation "job": automation-runbook-types.md (Python 3.10 tab): "Custom packages for
            # Python 3.10 (preview) are only validated during job runtime" -- the import ends Succeeded and
            # the job fails (see _missing_module). "import": the older fake refused the wheel here.
            if failure is None and self.platform.package_validation == "import" and not _wheel_fits(filename):
                failure = f"'{filename}' is not a wheel for Python 3.10 on Linux x86_64 (cp310/abi3/py3, manylinux x86_64 or any)."
            if failure:
                pkg.state, pkg.error = "Failed", failure
            else:
                pkg.state = "Succeeded"
                parts = filename.replace("%2B", "+").split("-")
                pkg.version = parts[1] if len(parts) >= 5 else None

    def _put_package(self, req: FakeRequest, acct: FakeAutomationAccount, env: FakeRuntimeEnvironment, body: dict) -> FakeResponse:
        link = (body.get("properties") or {}).get("contentLink") or {}
        uri = link.get("uri")
        if not isinstance(uri, str) or not uri.startswith("https://"):
            return automation_error(400, "BadRequest", "properties.contentLink.uri must be an https URL the service can download.")
        name = req.match.group("pkg")
        if self.platform.import_rate_limited:
            bucket = self._import_bucket(acct)
            wait = bucket.take()
            if wait is not None:
                # 429 + Retry-After (the status Microsoft's import_py3package_from_pypi.py waits on; the
                # error code and the Retry-After value the service sends are UNCONFIRMED).
                response = automation_error(429, "TooManyRequests", "Too many package imports for this account; retry later.")
                response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
                return response
        with self._lock:
            existing = env.packages.get(name.lower())
            env.packages[name.lower()] = FakePackage(name=name, uri=uri, content_hash=link.get("contentHash"), reads_until_done=self.package_import_reads)
        return FakeResponse(200 if existing else 201, self.package_json(acct, env, env.packages[name.lower()]))

    def _import_bucket(self, acct: FakeAutomationAccount) -> TokenBucket:
        with self._lock:
            if acct.id not in self._import_buckets:
                self._import_buckets[acct.id] = TokenBucket(IMPORT_BURST, IMPORT_BURST / IMPORT_WINDOW_SECONDS, clock=self.rate_clock)
            return self._import_buckets[acct.id]

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

    def _put_schedule(self, req: FakeRequest, acct: FakeAutomationAccount, body: dict) -> FakeResponse:
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
        sch = FakeSchedule(
            name, start, frequency, interval, tz, props.get("description") or "", week_days, _parse_time(props.get("expiryTime")), created=self.clock()
        )
        with self._lock:
            acct.schedules[name.lower()] = sch
        return FakeResponse(201, self.schedule_json(acct, sch))

    def _patch_schedule(self, req: FakeRequest, acct: FakeAutomationAccount, sch: FakeSchedule, body: dict) -> FakeResponse:
        props = body.get("properties") or {}
        with self._lock:
            if "description" in props:
                sch.description = props["description"] or ""
            if "isEnabled" in props:
                sch.is_enabled = bool(props["isEnabled"])
        return FakeResponse(200, self.schedule_json(acct, sch))

    def _unlink_schedule(self, acct: FakeAutomationAccount, sch: FakeSchedule) -> None:
        # assumption: deleting a schedule removes the job schedules that link it (the portal does so).
        self._drop_job_schedules(acct, lambda js: js.schedule.lower() == sch.name.lower())

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

    def _put_job_schedule(self, req: FakeRequest, acct: FakeAutomationAccount, body: dict) -> FakeResponse:
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
            rb, err = self._published_runbook(acct, runbook, "The runbook '{}' must be published before it can be linked to a schedule.")
            if err:
                return err
            assert rb is not None
            if any(js.schedule.lower() == schedule.lower() and js.runbook.lower() == rb.name.lower() for js in acct.job_schedules.values()):
                # assumption: one link per (schedule, runbook), as the portal enforces.
                return automation_error(409, "Conflict", f"The runbook '{runbook}' is already linked to schedule '{schedule}'.")
            js = FakeJobSchedule(jid, acct.schedules[schedule.lower()].name, rb.name, dict(props.get("parameters") or {}), props.get("runOn"))
            acct.job_schedules[jid.lower()] = js
        return FakeResponse(201, self.job_schedule_json(acct, js))

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

    def _new_uri(self, acct: FakeAutomationAccount) -> str:
        # The documented form: https://<id>.webhook.<region>.azure-automation.net/webhooks?token=<token>
        # (automation-webhooks.md: "https://ad7f1818-7ea9-4567-b43a.webhook.wus.azure-automation.net/webhooks?token=...").
        region = _REGION_CODES.get(acct.location.lower(), acct.location.lower())
        host = f"https://{uuid.uuid4()}.webhook.{region}.azure-automation.net"
        uri = f"{host}/webhooks?token={secrets.token_urlsafe(32)}"
        with self._lock:
            self.issued_webhook_uris.append(uri)
        self.server.route("POST", "/webhooks", self._invoke_webhook, host=host, authenticated=False)
        return uri

    def _generate_uri(self, req: FakeRequest, acct: FakeAutomationAccount) -> FakeResponse:
        uri = self._new_uri(acct)
        # webhook.json: Webhook_GenerateUri answers 200 with a JSON string.
        return FakeResponse(200, f'"{uri}"', {"Content-Type": "application/json; charset=utf-8"})

    def _put_webhook(self, req: FakeRequest, acct: FakeAutomationAccount, body: dict) -> FakeResponse:
        name = req.match.group("name")
        props = body.get("properties") or {}
        runbook = (props.get("runbook") or {}).get("name")
        rb, err = self._published_runbook(acct, runbook, "The runbook '{}' must be published before a webhook can be created.")
        if err:
            return err
        assert rb is not None
        expiry = _parse_time(props.get("expiryTime")) or (self.clock() + timedelta(days=365))
        with self._lock:
            existing = acct.webhooks.get(name.lower())
            uri = props.get("uri")
            generated = False
            if existing is None and not uri:
                # automation-webhooks.md, REST tab: the body has no uri; the service generates one and
                # returns it once, in this response ($response.properties.uri).
                uri, generated = self._new_uri(acct), True
            if existing is None:
                if uri not in self.issued_webhook_uris:
                    return automation_error(400, "BadRequest", "properties.uri must be a URI returned by webhooks/generateUri.")
                wh = FakeWebhook(
                    name, uri, rb.name, expiry, bool(props.get("isEnabled", False)), props.get("parameters"), props.get("runOn"), created=self.clock()
                )
                acct.webhooks[name.lower()] = wh
            else:
                # assumption: the token of an existing webhook never changes; other fields are updated.
                wh = existing
                wh.runbook, wh.expiry_time = rb.name, expiry
                wh.is_enabled = bool(props.get("isEnabled", wh.is_enabled))
                wh.parameters = props.get("parameters", wh.parameters)
        body = self.webhook_json(acct, wh)
        if existing is None and generated:
            body["properties"]["uri"] = wh.uri
        return FakeResponse(200 if existing else 201, body)

    def _patch_webhook(self, req: FakeRequest, acct: FakeAutomationAccount, wh: FakeWebhook, body: dict) -> FakeResponse:
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

    # -- jobs -----------------------------------------------------------------------------------------
    def job_json(self, acct: FakeAutomationAccount, job: FakeJob, status: Optional[str] = None) -> dict:
        """job.json#/definitions/Job (examples/job/createJob.json, getJob.json)."""
        status = status or job.status
        done = status in ("Completed", "Failed", "Stopped")
        return {
            "id": f"{acct.id}/jobs/{job.name}",
            "name": job.name,
            "type": f"{MANAGED_TYPE_PREFIX}/Jobs",
            "properties": {
                "jobId": job.job_id,
                "runbook": {"name": job.runbook},
                "provisioningState": "Succeeded" if done else "Processing",
                "creationTime": _iso(job.created),
                "startTime": _iso(job.started) if status != "New" else None,
                "endTime": _iso(job.ended) if done else None,
                "exception": job.exception if done else None,
                "lastModifiedTime": _iso(job.ended if done else job.created),
                "lastStatusModifiedTime": _iso(job.ended if done else job.created),
                "status": status,
                "statusDetails": "None",
                "parameters": dict(job.parameters),
                "runOn": job.run_on,
                "jobRuntimeEnvironment": {"runtimeEnvironmentName": job.runtime_environment},
            },
        }

    def _put_job(self, req: FakeRequest, acct: FakeAutomationAccount, body: dict) -> FakeResponse:
        props = body.get("properties") or {}
        rb, err = self._published_runbook(acct, (props.get("runbook") or {}).get("name"), "The runbook '{}' is not published.")
        if err:
            return err
        assert rb is not None
        parameters = {str(k): "" if v is None else str(v) for k, v in (props.get("parameters") or {}).items()}
        if len(parameters) > MAX_JOB_PARAMETERS or sum(len(k) + len(v) for k, v in parameters.items()) > MAX_JOB_PARAMETER_BYTES:
            return automation_error(400, "BadRequest", f"A job takes at most {MAX_JOB_PARAMETERS} parameters and 512 KB of parameter values.")
        name = req.match.group("name")
        with self._lock:
            if name.lower() in acct.jobs:
                return automation_error(409, "Conflict", f"A job named '{name}' already exists.")
            # Python runbooks get parameters positionally, each value split on whitespace into several argv
            # entries (azureautomation/runbooks#87; Utility/Python/import_py3package_from_pypi.py). Names are
            # dropped; the order is the order of the request's JSON object (the best a client can control;
            # UNCONFIRMED).
            argv = [part for value in parameters.values() for part in value.split()]
            job = FakeJob(
                name, str(uuid.uuid4()), rb.name, parameters, rb.runtime_environment, run_on=props.get("runOn") or "", created=self.clock(), argv=argv
            )
            acct.jobs[name.lower()] = job
        self._run(acct, job, rb)
        # createJob.json answers 201 with the job as queued ("New"); reads afterwards show how it went.
        return FakeResponse(201, self.job_json(acct, job, status="New"))

    def _run(self, acct: FakeAutomationAccount, job: FakeJob, rb: FakeRunbook) -> None:
        if self.job_runner is not None:
            job.started = self.clock()
            try:
                job.status, job.output = self.job_runner(job, rb)
            except Exception as exc:  # a crashing runbook is a failed job, as in the service
                job.status, job.exception = "Failed", f"{type(exc).__name__}: {exc}"
            job.ended = self.clock()
        elif self.platform.run_jobs:
            self._execute(acct, job, rb)

    def _missing_module(self, acct: FakeAutomationAccount, rb: FakeRunbook) -> Optional[str]:
        """The module a job of ``rb`` cannot import: a required distribution (see :meth:`require`) that the
        runbook's runtime environment lacks, whose import did not succeed, or whose wheel does not fit
        Python 3.10 on Linux x86_64 (cp310 / abi3 / py3-none-any; python-3-packages.md)."""
        with self._lock:
            required = {**self.required_distributions.get("*", {}), **self.required_distributions.get(rb.name.lower(), {})}
            env = acct.environments.get((rb.runtime_environment or "").lower())
            packages: Dict[str, FakePackage] = {}
            for pkg in env.packages.values() if env else []:
                self._advance_import(pkg)
                packages[_normalize(pkg.name)] = pkg
                packages.setdefault(_normalize(_filename(pkg.uri).split("-")[0]), pkg)
        for dist, module in required.items():
            pkg = packages.get(dist)
            if pkg is None or pkg.state != "Succeeded" or not _wheel_fits(_filename(pkg.uri)):
                return module
        return None

    def _execute(self, acct: FakeAutomationAccount, job: FakeJob, rb: FakeRunbook) -> None:
        """Run the published runbook as the Python 3.10 sandbox would: ``sys.argv = [script] + argv``,
        ``__name__ == "__main__"``, stdout to the Output stream and stderr to the Error stream (one record
        per line; assumption), ``IDENTITY_ENDPOINT``/``IDENTITY_HEADER`` set for the managed identity (FACTS.md,
        enable-managed-identity-for-automation.md). In-process, so the runbook reaches this fake Azure.

        Status: Completed when the script ends with exit code 0; a non-zero exit or an uncaught exception
        gives ``platform.job_nonzero_exit`` (UNCONFIRMED; the traceback is in the Error stream either way).
        A package the runbook needs but cannot import fails the job before it starts (automation-runbook-types.md,
        Python 3.10 tab: "Job is expected to fail if the package is not compatible ...")."""
        job.status, job.started = "Running", self.clock()
        missing = self._missing_module(acct, rb)
        if missing is not None:
            message = f"ModuleNotFoundError: No module named '{missing}'"
            job.streams.append(("Error", message, self.clock()))
            job.status, job.exception, job.exit_code, job.ended = "Failed", message, 1, self.clock()
            return
        secret = secrets.token_urlsafe(24)
        with self._lock:
            self._identity_secrets[secret] = acct
        out, err = io.StringIO(), io.StringIO()
        code = 0
        script = f"{rb.name}.py"
        with _PROCESS_LOCK:
            saved_env = {k: os.environ.get(k) for k in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER")}
            saved_argv = sys.argv
            os.environ["IDENTITY_ENDPOINT"] = IDENTITY_HOST + IDENTITY_PATH
            os.environ["IDENTITY_HEADER"] = secret
            sys.argv = [script, *job.argv]
            try:
                with redirect_stdout(out), redirect_stderr(err):
                    try:
                        exec(compile(rb.published or "", script, "exec"), {"__name__": "__main__", "__file__": script, "__builtins__": __builtins__})
                    except SystemExit as exc:
                        if exc.code is None or isinstance(exc.code, int):
                            code = exc.code or 0
                        else:
                            print(exc.code, file=sys.stderr)
                            code = 1
                    except Exception:  # an uncaught exception ends the process with status 1
                        traceback.print_exc()
                        code = 1
            finally:
                sys.argv = saved_argv
                for key, value in saved_env.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
                with self._lock:
                    self._identity_secrets.pop(secret, None)
        now = self.clock()
        job.streams.extend(("Output", line, now) for line in out.getvalue().splitlines())
        job.streams.extend(("Error", line, now) for line in err.getvalue().splitlines())
        job.output = job.stream_text("Output")
        job.exit_code = code
        if code == 0:
            job.status = "Completed"
        else:
            job.status = self.platform.job_nonzero_exit
            errors = [line for line in err.getvalue().splitlines() if line.strip()]
            job.exception = errors[-1] if errors else f"The runbook exited with code {code}."
        job.ended = self.clock()

    def _get_job_output(self, req: FakeRequest, acct: FakeAutomationAccount, job: FakeJob) -> FakeResponse:
        # Job_GetOutput: text/plain, the Output stream.
        return FakeResponse(200, job.output, {"Content-Type": "text/plain; charset=utf-8"})

    def _stream_json(self, acct: FakeAutomationAccount, job: FakeJob, index: int) -> dict:
        """jobStream.json#/definitions/JobStream (examples/job/listJobStreamsByJob.json, getJobStream.json)."""
        kind, text, at = job.streams[index]
        stream_id = f"{job.job_id}:{index:05d}"
        return {
            "id": f"{acct.id}/jobs/{job.name}/streams/{stream_id}",
            "properties": {"jobStreamId": stream_id, "time": _iso(at), "streamType": kind, "streamText": text, "summary": text[:80], "value": {}},
        }

    def _list_job_streams(self, req: FakeRequest, acct: FakeAutomationAccount, job: FakeJob) -> FakeResponse:
        # JobStream_ListByJob; $filter such as "properties/streamType eq 'Output'" (other clauses ignored).
        wanted = re.search(r"streamType\s+eq\s+'(\w+)'", req.query.get("$filter", ""))
        kinds = None if wanted is None or wanted.group(1) == "Any" else wanted.group(1).lower()
        items = [self._stream_json(acct, job, i) for i, (kind, _, _) in enumerate(job.streams) if kinds is None or kind.lower() == kinds]
        return FakeResponse(200, {"value": items})

    def _get_job_stream(self, req: FakeRequest, acct: FakeAutomationAccount, job: FakeJob) -> FakeResponse:
        wanted = unquote(req.match.group("stream"))  # ids look like "<jobId>:<number>" (getJobStream.json)
        for i in range(len(job.streams)):
            if f"{job.job_id}:{i:05d}" == wanted:
                return FakeResponse(200, self._stream_json(acct, job, i))
        return automation_error(404, "NotFound", f"Job stream '{wanted}' was not found.")

    # -- webhook invocation -------------------------------------------------------------------------
    def _invoke_webhook(self, req: FakeRequest) -> FakeResponse:
        """POST to a webhook URL (automation-webhooks.md, "Use a webhook"): 202 ``{"JobIds": [id]}``; 400 when
        the webhook is expired or disabled or the token is missing; 404 when no webhook has that token (or its
        runbook is gone). A payload over 512 KB (automation-subscription-limits-faq.md) is refused with 413 (the
        status is UNCONFIRMED)."""
        token = req.query.get("token")
        if not token:
            return automation_error(400, "BadRequest", "The token in the URL is invalid.")
        body = req.body if isinstance(req.body, bytes) else (req.body or "").encode("utf-8")
        if len(body) > MAX_WEBHOOK_PAYLOAD:
            return automation_error(413, "RequestEntityTooLarge", "The webhook payload is larger than 512 KB.")
        host = req.url.split("/webhooks", 1)[0].lower().replace(":443", "")
        found = None
        with self._lock:
            for acct in self.accounts.values():
                for wh in acct.webhooks.values():
                    wh_host, _, query = wh.uri.partition("/webhooks?")
                    if wh_host.lower() == host and query == f"token={token}":
                        found = (acct, wh)
        if found is None:
            return automation_error(404, "NotFound", "The webhook was not found.")
        acct, wh = found
        if not wh.is_enabled:
            return automation_error(400, "BadRequest", "The webhook is disabled.")
        if wh.expiry_time <= self.clock():
            return automation_error(400, "BadRequest", "The webhook has expired.")
        rb = acct.runbooks.get(wh.runbook.lower())
        if rb is None or rb.published is None:
            return automation_error(404, "NotFound", f"The runbook '{wh.runbook}' was not found.")
        envelope = self.webhook_envelope(wh, req.headers, body.decode("utf-8", errors="replace"), host)
        own = dict(wh.parameters or {})
        own_argv = [part for value in own.values() for part in str(value or "").split()]
        if self.platform.webhook_parameters_order == "before":
            argv, parameters = own_argv + envelope.split(), {**own, "WebhookData": envelope}
        else:
            argv, parameters = envelope.split() + own_argv, {"WebhookData": envelope, **own}
        job_id = str(uuid.uuid4())
        job = FakeJob(job_id, job_id, rb.name, parameters, rb.runtime_environment, run_on=wh.run_on or "", created=self.clock(), argv=argv, webhook=wh.name)
        with self._lock:
            acct.jobs[job_id.lower()] = job
        self._run(acct, job, rb)
        return FakeResponse(202, {"JobIds": [job_id]})

    def webhook_envelope(self, wh: FakeWebhook, headers: Dict[str, str], body: str, host: str) -> str:
        """The WebhookData text a Python runbook receives (before whitespace splitting):
        ``{WebhookName:<name>,RequestBody:<body>,RequestHeader:{Connection:Keep-Alive,Content-Type:...,Host:...,...}}``
        with unquoted keys (azureautomation/runbooks Utility/Python/process_azure_alerts.py cuts the body
        between "RequestBody:" and "RequestHeader:"; svenbaeck/azureRunbookPython3Parser; the PowerShell 7 form in
        automation-webhooks.md). With ``platform.webhook_body_escaped`` the body's quotes arrive as \\" and its
        newlines as the literal \\r\\n (automation-webhooks.md's WebhookData example)."""
        if self.platform.webhook_body_escaped:
            body = body.replace("\r\n", "\n").replace("\n", "\\r\\n").replace('"', '\\"')
        lower = {k.lower(): v for k, v in headers.items()}
        parts = ["Connection:Keep-Alive"]
        if "content-type" in lower:
            parts.append(f"Content-Type:{lower['content-type']}")
        parts.append(f"Host:{host.split('://', 1)[-1]}")
        parts += [f"{k}:{v}" for k, v in headers.items() if k.lower() not in ("connection", "content-type", "host")]
        return "{WebhookName:" + wh.name + ",RequestBody:" + body + ",RequestHeader:{" + ",".join(parts) + "}}"

    # -- managed identity ------------------------------------------------------------------------------
    def _identity_token(self, req: FakeRequest) -> FakeResponse:
        """The sandbox's managed-identity endpoint, App Service style (msal managed_identity.py
        _obtain_token_on_app_service; enable-managed-identity-for-automation.md): GET with
        ``X-IDENTITY-HEADER`` and ``resource``; answers ``access_token`` and ``expires_on`` (epoch seconds).
        The token is one the fake ARM server accepts. ``client_id`` (user-assigned) is accepted as given."""
        secret = next((v for k, v in req.headers.items() if k.lower() == "x-identity-header"), None)
        with self._lock:
            acct = self._identity_secrets.get(secret or "")
            self.identity_requests += 1
        if acct is None:
            return FakeResponse(401, {"statusCode": 401, "message": "Missing or invalid X-IDENTITY-HEADER."})
        if not acct.identity_type:
            return FakeResponse(400, {"statusCode": 400, "message": "No managed identity is enabled for this Automation account."})
        resource = req.query.get("resource", "")
        audience = audience_of((resource,))
        if audience is None:
            return FakeResponse(400, {"statusCode": 400, "message": f"The fake issues only ARM and Key Vault tokens, not for '{resource}'."})
        # Key Vault tokens (resource https://vault.azure.net) carry the identity, so the fake vault can
        # allow only the account's identity to read its secrets (fake_azure/keyvault.py).
        token, expires = self.server.authority.issue(3600, audience=audience, principal=acct.principal_id)
        return FakeResponse(
            200,
            {"access_token": token, "expires_on": str(int(expires)), "resource": resource, "token_type": "Bearer", "client_id": acct.principal_id},
        )


def _normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _filename(uri: str) -> str:
    return uri.split("?")[0].rsplit("/", 1)[-1].replace("%2B", "+")


def _wheel_fits(filename: str) -> bool:
    """Python 3.10 on Linux x86_64 takes cp310/abi3/py3 wheels for manylinux x86_64 or any (python-3-packages.md)."""
    return bool(_WHEEL_OK.search(filename.replace("%2B", "+")))


def _too_many_tags(body: dict) -> Optional[FakeResponse]:
    tags = body.get("tags") or {}
    if len(tags) > MAX_AUTOMATION_TAGS:
        # MicrosoftDocs/azure-docs#58362: Automation answers 400 BadRequest, "Too many tags."
        return automation_error(400, "BadRequest", "Too many tags.")
    return None
