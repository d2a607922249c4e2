"""Fake Microsoft.MachineLearningServices: workspaces, compute instances, their long-running
operations, and tags on computes.

Shapes follow Azure/azure-rest-api-specs,
specification/machinelearningservices/resource-manager/Microsoft.MachineLearningServices/:
- computes: preview/2023-08-01-preview/machineLearningServices.json and its examples
  Compute/list.json, Compute/get/ComputeInstance.json, Compute/createOrUpdate/ComputeInstance.json,
  Compute/start.json (202 + Location), Compute/updateIdleShutdownSetting.json;
- workspaces: preview/2024-10-01-preview/workspaceRP.json, example Workspace/listBySubscription.json.
These are the api-versions azure-ai-ml 1.35 sends (checked on the wire). Tags on a compute go through
the generic ARM Tags API (specification/resources/.../stable/2021-04-01/resources.json,
Tags_GetAtScope / Tags_CreateOrUpdateAtScope / Tags_UpdateAtScope / Tags_DeleteAtScope) or a full
PUT of the compute; whether the real service accepts either is unconfirmed (docs/platform.md, "Unconfirmed"),
so both follow the :class:`~fake_azure.platform.Platform` given as ``platform=`` (docs/platform.md).
Workspace tags are writable (tag-support.md: workspaces "Supports tags: Yes"): Workspaces_Update
PATCH (2024-10-01-preview workspaceRP.json) and the Tags API at the workspace's scope.

State changes are driven by time: a stop puts a CI in ``Stopping`` and it becomes ``Stopped``
``stop_seconds`` later, observed on the next read (list, get or operation poll).
"""

from __future__ import annotations

import itertools
import math
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Dict, List, Optional, Tuple

from fake_azure.platform import Platform, resolve
from fake_azure.server import ARM_HOST, FakeArmServer, FakeRequest, FakeResponse, arm_error

COMPUTE_API = "2023-08-01-preview"
WORKSPACE_API = "2024-10-01-preview"
TAGS_API = "2021-04-01"
PROVIDER = "Microsoft.MachineLearningServices"

_WS = r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)"
_CI = _WS + r"/computes/(?P<name>[^/]+)"

# States in which a CI is busy with an operation: a new start/stop is refused with 409.
TRANSITIONAL = {"Creating", "Deleting", "Restarting", "Resizing", "SettingUp", "Starting", "Stopping", "UserSettingUp"}
# ARM tag limits (Learn azure-resource-manager/management/tag-resources.md, "Limitations"): 50 tags per
# resource, tag names <= 512 and values <= 256 characters. The error codes the service answers with
# are UNCONFIRMED; the fake uses 400 with the codes below.
MAX_TAGS, MAX_TAG_NAME, MAX_TAG_VALUE = 50, 512, 256
# lastOperation.operationTrigger (2023-08-01-preview machineLearningServices.json, ComputeInstanceLastOperation).
TRIGGERS = ("User", "Schedule", "IdleShutdown")
# lastOperation.operationStatus enum (same definition): there is no plain "Failed".
_FAILED_STATUS = {"Create": "CreateFailed", "Start": "StartFailed", "Stop": "StopFailed", "Restart": "RestartFailed"}
# Compute name pattern (Compute_CreateOrUpdate computeName parameter, 2023-08-01-preview).
_COMPUTE_NAME = re.compile(r"^[a-zA-Z](?![a-zA-Z0-9-]*-\d+$)[a-zA-Z0-9\-]{2,23}$")


@dataclass
class PendingOperation:
    """A long-running operation in flight on one CI."""

    op_id: str
    name: str  # Start, Stop, Restart, Create
    target_state: str
    completes_at: float
    error: Optional[Tuple[str, str]] = None  # (code, message) if it ends in failure
    failed_state: str = "Running"
    trigger: str = "User"  # lastOperation.operationTrigger: User, Schedule or IdleShutdown
    # "late" wrong-state failure: the request was accepted but never changed the CI.
    rejected: bool = False


@dataclass
class FakeComputeInstance:
    """One compute instance, as the service stores it."""

    name: str
    state: str = "Running"
    vm_size: str = "STANDARD_DS3_V2"
    location: str = "westeurope"
    tags: Dict[str, str] = field(default_factory=dict)
    assigned_user: Optional[Tuple[str, str]] = None  # (objectId, tenantId)
    created_by: str = "someone@contoso.com"
    idle_minutes: Optional[int] = None
    compute_type: str = "ComputeInstance"
    created_on: str = "2026-01-05T09:00:00.0000000+00:00"
    stop_error: Optional[Tuple[int, str, str]] = None  # a stop POST always answers (status, code, message)
    stuck: bool = False  # operations on it never complete
    operation: Optional[PendingOperation] = None
    last_operation: Optional[Dict[str, str]] = None
    extra_properties: Dict[str, object] = field(default_factory=dict)
    # properties.properties.schedules.computeStartStop (ComputeStartStopSchedule JSON; see compute_schedule()).
    schedules: List[Dict[str, object]] = field(default_factory=list)
    pending_tags: Optional[Tuple[float, Dict[str, str]]] = None  # Tags API accepted (202), applied at [0]


@dataclass
class FakeWorkspace:
    """One Azure ML workspace and its computes (keyed by lower-case name: ARM names are case-insensitive)."""

    subscription_id: str
    resource_group: str
    name: str
    location: str = "westeurope"
    computes: Dict[str, FakeComputeInstance] = field(default_factory=dict)
    tags: Dict[str, str] = field(default_factory=dict)
    pending_tags: Optional[Tuple[float, Dict[str, str]]] = None

    @property
    def id(self) -> str:
        return f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}/providers/{PROVIDER}/workspaces/{self.name}"


class FakeMachineLearning:
    """The Azure ML resource provider, registered on a :class:`FakeArmServer`."""

    def __init__(
        self,
        server: FakeArmServer,
        *,
        stop_seconds: float = 0.2,
        start_seconds: float = 0.2,
        create_seconds: float = 0.2,
        retry_after: int = 0,
        page_size: int = 100,
        tags_api_supported: Optional[bool] = None,
        tags_api_ignored: Optional[bool] = None,
        full_put_of_existing_allowed: Optional[bool] = None,
        clock: Callable[[], float] = time.monotonic,
        platform: Optional[Platform] = None,
        tags_apply_seconds: float = 0.2,
    ):
        self.server = server
        self.stop_seconds = stop_seconds
        self.start_seconds = start_seconds
        self.create_seconds = create_seconds
        self.retry_after = retry_after
        self.page_size = page_size
        # The older switches map onto platform fields (fake_azure.platform.resolve): tags_api_supported
        # -> compute_tags_api applied_200/refused, tags_api_ignored -> ignored_200 (200 echoing the new
        # tags, compute unchanged), full_put_of_existing_allowed -> compute_full_put_existing applied/refused.
        self.platform = resolve(
            platform, tags_api_supported=tags_api_supported, tags_api_ignored=tags_api_ignored, full_put_of_existing_allowed=full_put_of_existing_allowed
        )
        # accepted_202: how long after the 202 the tags are applied (or when the Location is polled).
        self.tags_apply_seconds = tags_apply_seconds
        self._tag_ops: Dict[str, object] = {}
        self.clock = clock
        self.create_errors: Dict[str, Tuple[str, str]] = {}  # CI name (lower) -> (code, message)
        self.workspaces: Dict[Tuple[str, str, str], FakeWorkspace] = {}
        self._ops: Dict[str, Tuple[FakeWorkspace, FakeComputeInstance, PendingOperation]] = {}
        self._op_ids = itertools.count(1)
        self._lock = threading.RLock()
        self._register()

    # -- seeding -------------------------------------------------------------------------
    def add_workspace(
        self, subscription_id: str, resource_group: str, name: str, location: str = "westeurope", tags: Optional[Dict[str, str]] = None
    ) -> FakeWorkspace:
        """Create a workspace (idempotent)."""
        key = (subscription_id.lower(), resource_group.lower(), name.lower())
        with self._lock:
            if key not in self.workspaces:
                self.workspaces[key] = FakeWorkspace(subscription_id, resource_group, name, location, tags=dict(tags or {}))
            return self.workspaces[key]

    def add_compute_instance(
        self,
        workspace: FakeWorkspace,
        name: str,
        *,
        idle_shutdown_minutes: Optional[int] = None,
        schedules: Optional[List[Dict[str, object]]] = None,
        **fields: object,
    ) -> FakeComputeInstance:
        """Create a compute instance directly in a given state (no operation).

        ``idle_shutdown_minutes`` gives ``idleTimeBeforeShutdown`` ``PT<n>M`` (spec: ISO 8601, 15 min to
        3 days); ``schedules`` its native start/stop schedules (build them with :func:`compute_schedule`;
        at most 4 per CI, Learn how-to-create-compute-instance "Schedule automatic start and stop").
        """
        fields.setdefault("location", workspace.location)
        if idle_shutdown_minutes is not None:
            if not 15 <= idle_shutdown_minutes <= 3 * 24 * 60:
                raise ValueError("idle shutdown must be between 15 minutes and 3 days")
            fields["idle_minutes"] = idle_shutdown_minutes
        if schedules:
            if len(schedules) > 4:
                raise ValueError("a compute instance has at most 4 schedules")
            fields["schedules"] = [dict(sch) for sch in schedules]
        ci = FakeComputeInstance(name=name, **fields)  # type: ignore[arg-type]
        with self._lock:
            workspace.computes[name.lower()] = ci
        return ci

    def workspace(self, subscription_id: str, resource_group: str, name: str) -> FakeWorkspace:
        """The stored workspace (pending tag writes applied when due); KeyError if absent."""
        ws = self.workspaces[(subscription_id.lower(), resource_group.lower(), name.lower())]
        self._settle_tags(ws)
        return ws

    def simulate_idle_shutdown(self, workspace: FakeWorkspace, name: str) -> None:
        """The platform stops a Running CI after its idle time: lastOperation Stop, trigger IdleShutdown
        (operationTrigger enum, 2023-08-01-preview). Completes ``stop_seconds`` later like ours."""
        self.begin_operation(workspace, name, "Stop", trigger="IdleShutdown")

    def simulate_schedule_stop(self, workspace: FakeWorkspace, name: str) -> None:
        """The CI's own stop schedule fires: lastOperation Stop, trigger Schedule."""
        self.begin_operation(workspace, name, "Stop", trigger="Schedule")

    def simulate_schedule_start(self, workspace: FakeWorkspace, name: str) -> None:
        """The CI's own start schedule fires: lastOperation Start, trigger Schedule."""
        self.begin_operation(workspace, name, "Start", trigger="Schedule")

    def compute(self, subscription_id: str, resource_group: str, workspace: str, name: str) -> FakeComputeInstance:
        """The stored CI (after applying any operation that has completed); KeyError if absent."""
        ws = self.workspaces[(subscription_id.lower(), resource_group.lower(), workspace.lower())]
        ci = ws.computes[name.lower()]
        self._settle(ci)
        return ci

    def delete_compute(self, workspace: FakeWorkspace, name: str) -> None:
        """Remove a CI at once (simulates a deletion by someone else)."""
        with self._lock:
            workspace.computes.pop(name.lower(), None)

    def begin_operation(self, workspace: FakeWorkspace, name: str, operation: str, trigger: str = "User") -> None:
        """Start ``operation`` ("Start", "Stop" or "Restart") on a CI as someone else would (the
        portal, a schedule, another tool): no request, no checks; it completes like ours.
        ``trigger`` is the lastOperation.operationTrigger it records (User, Schedule, IdleShutdown)."""
        if trigger not in TRIGGERS:
            raise ValueError(f"trigger must be one of {TRIGGERS}")
        steps = {
            "Start": ("Starting", "Running", self.start_seconds),
            "Stop": ("Stopping", "Stopped", self.stop_seconds),
            "Restart": ("Restarting", "Running", self.start_seconds),
        }
        transitional, target, seconds = steps[operation]
        ci = workspace.computes[name.lower()]
        self._settle(ci)
        self._start_operation(workspace, ci, operation, transitional, target, seconds, trigger=trigger)

    def all_instances(self) -> List[Tuple[FakeWorkspace, FakeComputeInstance]]:
        """Every stored compute instance with its workspace, settled."""
        with self._lock:
            out = [(ws, ci) for ws in self.workspaces.values() for ci in ws.computes.values() if ci.compute_type == "ComputeInstance"]
        for _, ci in out:
            self._settle(ci)
        return out

    # -- routes ----------------------------------------------------------------------------
    def _register(self) -> None:
        s = self.server
        s.route(
            "GET",
            r"/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.MachineLearningServices/workspaces",
            self._list_workspaces,
            api_versions=(WORKSPACE_API,),
        )
        s.route(
            "GET",
            r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.MachineLearningServices/workspaces",
            self._list_workspaces,
            api_versions=(WORKSPACE_API,),
        )
        # azure-ai-ml reads the workspace location with the compute api-version before creating a CI
        # (ComputeOperations._get_workspace_location); spec: 2023-08-01-preview examples/Workspace/get.json.
        s.route("GET", _WS, self._get_workspace, api_versions=(WORKSPACE_API, COMPUTE_API))
        s.route("GET", _WS + "/computes", self._list_computes, api_versions=(COMPUTE_API,))
        s.route("GET", _CI, self._get_compute, api_versions=(COMPUTE_API,))
        s.route("PUT", _CI, self._put_compute, api_versions=(COMPUTE_API,))
        s.route("POST", _CI + r"/(?P<action>start|stop|restart)", self._post_action, api_versions=(COMPUTE_API,))
        s.route("POST", _CI + r"/updateIdleShutdownSetting", self._update_idle, api_versions=(COMPUTE_API,))
        s.route(
            "GET",
            r"/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.MachineLearningServices/locations/(?P<loc>[^/]+)/computeOperationsStatus/(?P<op>[^/]+)",
            self._get_operation,
            api_versions=(COMPUTE_API,),
        )
        s.route("PATCH", _WS, self._patch_workspace, api_versions=(WORKSPACE_API,))
        for scope in (_CI, _WS):
            tags = scope + r"/providers/Microsoft\.Resources/tags/default"
            for method, handler in (("GET", self._get_tags), ("PUT", self._put_tags), ("PATCH", self._patch_tags), ("DELETE", self._delete_tags)):
                s.route(method, tags, handler, api_versions=(TAGS_API,))
        s.route(
            "GET",
            r"/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.Resources/operationResults/(?P<op>[^/]+)",
            self._get_tag_operation,
            api_versions=(TAGS_API,),
        )

    # -- helpers ---------------------------------------------------------------------------
    def _workspace(self, req: FakeRequest) -> Optional[FakeWorkspace]:
        g = req.match.groupdict()
        return self.workspaces.get((g["sub"].lower(), g["rg"].lower(), g["ws"].lower()))

    def _lookup(self, req: FakeRequest) -> Tuple[Optional[FakeWorkspace], Optional[FakeComputeInstance], Optional[FakeResponse]]:
        ws = self._workspace(req)
        if ws is None:
            g = req.match.groupdict()
            return (
                None,
                None,
                arm_error(404, "ResourceNotFound", f"The Resource '{PROVIDER}/workspaces/{g['ws']}' under resource group '{g['rg']}' was not found."),
            )
        ci = ws.computes.get(req.match.group("name").lower())
        if ci is None:
            return ws, None, arm_error(404, "NotFound", f"Compute '{req.match.group('name')}' was not found in workspace '{ws.name}'.")
        self._settle(ci)
        return ws, ci, None

    def _settle(self, ci: FakeComputeInstance) -> None:
        """Apply a pending operation (and a Tags API write accepted with 202) whose time has come."""
        self._settle_tags(ci)
        with self._lock:
            op = ci.operation
            if op is None or self.clock() < op.completes_at:
                return
            ci.state = op.failed_state if op.error else op.target_state
            ci.operation = None
            ci.last_operation = _last_operation(op.name, _FAILED_STATUS.get(op.name, "Failed") if op.error else "Succeeded", op.trigger)

    def _settle_tags(self, target: FakeWorkspace | FakeComputeInstance) -> None:
        """Apply a Tags API write accepted with 202 once its time has come."""
        with self._lock:
            pending = target.pending_tags
            if pending is not None and self.clock() >= pending[0]:
                target.tags, target.pending_tags = dict(pending[1]), None

    def _start_operation(
        self,
        ws: FakeWorkspace,
        ci: FakeComputeInstance,
        name: str,
        transitional: str,
        target: str,
        seconds: float,
        error: Optional[Tuple[str, str]] = None,
        trigger: str = "User",
    ) -> PendingOperation:
        with self._lock:
            op = PendingOperation(
                op_id=f"op-{next(self._op_ids)}",
                name=name,
                target_state=target,
                completes_at=math.inf if ci.stuck else self.clock() + seconds,
                error=error,
                failed_state="CreateFailed" if name == "Create" else ci.state,
                trigger=trigger,
            )
            ci.state = transitional
            ci.operation = op
            ci.last_operation = _last_operation(name, "InProgress", trigger)
            self._ops[op.op_id] = (ws, ci, op)
            return op

    def _reject_late(self, ws: FakeWorkspace, ci: FakeComputeInstance, name: str, code: str, message: str) -> PendingOperation:
        """wrong_state "late": the POST was accepted (202) but the operation fails at once with 400
        ``code`` and leaves the CI as it was (microsoft/vscode-tools-for-ai#2096: "Long running
        operation failed with error: {"error":{"code":"StartComputeInstanceOnlyAllowedInStoppedState"...")."""
        with self._lock:
            op = PendingOperation(f"op-{next(self._op_ids)}", name, ci.state, self.clock(), (code, message), ci.state, rejected=True)
            self._ops[op.op_id] = (ws, ci, op)
            return op

    def _status_url(self, ws: FakeWorkspace, op: PendingOperation) -> str:
        # The Location / Azure-AsyncOperation URL is opaque to clients (ARM async-operation RPC);
        # this one mimics the service's location-scoped operation status resource.
        base = f"{ARM_HOST}/subscriptions/{ws.subscription_id}/providers/{PROVIDER}/locations/{ws.location}"
        return f"{base}/computeOperationsStatus/{op.op_id}?api-version={COMPUTE_API}"

    def compute_json(self, ws: FakeWorkspace, ci: FakeComputeInstance) -> dict:
        """The ComputeResource JSON of one compute (Compute/get/ComputeInstance.json)."""
        inner: Dict[str, object] = {"vmSize": ci.vm_size, "state": ci.state}
        if ci.compute_type == "ComputeInstance":
            inner.update(
                {
                    "applicationSharingPolicy": "Personal",
                    "computeInstanceAuthorizationType": "personal",
                    "createdBy": {
                        "userName": ci.created_by,
                        "userOrgId": "00000000-0000-0000-0000-000000000000",
                        "userId": "00000000-0000-0000-0000-000000000000",
                    },
                    "errors": None,
                }
            )
            if ci.assigned_user:
                inner["personalComputeInstanceSettings"] = {"assignedUser": {"objectId": ci.assigned_user[0], "tenantId": ci.assigned_user[1]}}
            if ci.idle_minutes:
                inner["idleTimeBeforeShutdown"] = f"PT{ci.idle_minutes}M"
            if ci.last_operation:
                inner["lastOperation"] = dict(ci.last_operation)
            if ci.schedules:
                inner["schedules"] = {"computeStartStop": [dict(sch) for sch in ci.schedules]}
        else:
            inner = {"vmSize": ci.vm_size, "scaleSettings": {"maxNodeCount": 4, "minNodeCount": 0}, "allocationState": "Steady"}
        inner.update(ci.extra_properties)
        return {
            "id": f"{ws.id}/computes/{ci.name}",
            "type": f"{PROVIDER}/workspaces/computes",
            "name": ci.name,
            "location": ci.location,
            "tags": dict(ci.tags),
            "properties": {
                "computeType": ci.compute_type,
                "provisioningState": "Creating" if ci.state == "Creating" else ("Failed" if ci.state == "CreateFailed" else "Succeeded"),
                "createdOn": ci.created_on,
                "modifiedOn": ci.created_on,
                "isAttachedCompute": False,
                "disableLocalAuth": True,
                "properties": inner,
            },
        }

    def _page(self, req: FakeRequest, items: List[dict]) -> FakeResponse:
        # nextLink is opaque to clients; the spec's PaginationParameter is $skip.
        start = int(req.query.get("$skip", "0") or 0)
        page = items[start : start + self.page_size]
        body: Dict[str, object] = {"value": page}
        if start + self.page_size < len(items):
            base = req.url.split("?")[0]
            body["nextLink"] = f"{base}?api-version={req.query['api-version']}&$skip={start + self.page_size}"
        return FakeResponse(200, body)

    # -- workspace handlers ----------------------------------------------------------------
    def _workspace_json(self, ws: FakeWorkspace) -> dict:
        rg_id = f"/subscriptions/{ws.subscription_id}/resourceGroups/{ws.resource_group}"
        return {
            "id": ws.id,
            "name": ws.name,
            "type": f"{PROVIDER}/workspaces",
            "location": ws.location,
            "kind": "Default",
            "identity": {"type": "SystemAssigned"},
            "sku": {"name": "Basic", "tier": "Basic"},
            "tags": dict(ws.tags),
            "properties": {
                "friendlyName": ws.name,
                "description": "",
                "provisioningState": "Succeeded",
                "storageAccount": f"{rg_id}/providers/Microsoft.Storage/storageAccounts/st{ws.name[:18]}",
                "keyVault": f"{rg_id}/providers/Microsoft.KeyVault/vaults/kv{ws.name[:18]}",
                "discoveryUrl": f"https://{ws.location}.api.azureml.ms/discovery",
                "mlFlowTrackingUri": f"azureml://{ws.location}.api.azureml.ms/mlflow/v1.0{ws.id}",
                "workspaceId": "00000000-0000-0000-0000-000000000000",
            },
        }

    def _list_workspaces(self, req: FakeRequest) -> FakeResponse:
        g = req.match.groupdict()
        rg = g.get("rg")
        with self._lock:
            chosen = [
                ws
                for ws in self.workspaces.values()
                if ws.subscription_id.lower() == g["sub"].lower() and (rg is None or ws.resource_group.lower() == rg.lower())
            ]
            for ws in chosen:
                self._settle_tags(ws)
            items = [self._workspace_json(ws) for ws in chosen]
        return self._page(req, items)

    def _get_workspace(self, req: FakeRequest) -> FakeResponse:
        ws = self._workspace(req)
        if ws is None:
            return arm_error(404, "ResourceNotFound", f"The Resource '{PROVIDER}/workspaces/{req.match.group('ws')}' was not found.")
        self._settle_tags(ws)
        return FakeResponse(200, self._workspace_json(ws))

    def _patch_workspace(self, req: FakeRequest) -> FakeResponse:
        """Workspaces_Update (2024-10-01-preview workspaceRP.json): PATCH WorkspaceUpdateParameters; ``tags``
        replaces the workspace's tags; 200 with the workspace (the spec also allows 202)."""
        ws = self._workspace(req)
        if ws is None:
            return arm_error(404, "ResourceNotFound", f"The Resource '{PROVIDER}/workspaces/{req.match.group('ws')}' was not found.")
        try:
            body = req.json() or {}
        except ValueError:
            return arm_error(400, "InvalidRequestContent", "The request content was invalid and could not be deserialized.")
        if "tags" in body:
            tags = body.get("tags") or {}
            err = _check_tags(tags)
            if err:
                return err
            with self._lock:
                self._settle_tags(ws)
                ws.tags = dict(tags)
        return FakeResponse(200, self._workspace_json(ws))

    # -- compute handlers ------------------------------------------------------------------
    def _list_computes(self, req: FakeRequest) -> FakeResponse:
        ws = self._workspace(req)
        if ws is None:
            return arm_error(404, "ResourceNotFound", f"The Resource '{PROVIDER}/workspaces/{req.match.group('ws')}' was not found.")
        with self._lock:
            computes = list(ws.computes.values())
        for ci in computes:
            self._settle(ci)
        return self._page(req, [self.compute_json(ws, ci) for ci in computes])

    def _get_compute(self, req: FakeRequest) -> FakeResponse:
        ws, ci, err = self._lookup(req)
        return err or FakeResponse(200, self.compute_json(ws, ci))  # type: ignore[arg-type]

    def _post_action(self, req: FakeRequest) -> FakeResponse:
        ws, ci, err = self._lookup(req)
        if err:
            return err
        assert ws is not None and ci is not None
        action = req.match.group("action").lower()
        with self._lock:
            if ci.operation is not None or (self.platform.wrong_state == "sync_409" and ci.state in TRANSITIONAL):
                # Another operation in progress: 409 (FACTS.md: 409 -> ResourceExistsError, "another operation in progress").
                return arm_error(409, "Conflict", f"Compute instance '{ci.name}' is in state {ci.state}: another operation is in progress.")
            if action == "stop" and ci.stop_error:
                status, code, message = ci.stop_error
                return arm_error(status, code, message)
            wrong = {
                "stop": (
                    ci.state not in ("Running", "JobRunning"),
                    "StopComputeInstanceOnlyAllowedInRunningState",
                    f"Compute instance '{ci.name}' is {ci.state}; only a running compute instance can be stopped.",
                ),
                "start": (
                    ci.state != "Stopped",
                    "StartComputeInstanceOnlyAllowedInStoppedState",
                    f"Compute instance '{ci.name}' is {ci.state}; only a stopped compute instance can be started.",
                ),
                "restart": (ci.state != "Running", "RestartComputeInstanceOnlyAllowedInRunningState", f"Compute instance '{ci.name}' is {ci.state}."),
            }[action]
            if wrong[0]:
                if self.platform.wrong_state == "sync_409":
                    return arm_error(409, wrong[1], wrong[2])
                op = self._reject_late(ws, ci, action.capitalize(), wrong[1], wrong[2])
            elif action == "stop":
                op = self._start_operation(ws, ci, "Stop", "Stopping", "Stopped", self.stop_seconds)
            elif action == "start":
                op = self._start_operation(ws, ci, "Start", "Starting", "Running", self.start_seconds)
            else:
                op = self._start_operation(ws, ci, "Restart", "Restarting", "Running", self.start_seconds)
        # examples/Compute/start.json, stop.json: 202 with a Location header; azure-ai-ml polls it with
        # ARMPolling (no Azure-AsyncOperation header, so LocationPolling: 202 = running, 200/204 = done,
        # an error status = the operation failed).
        return FakeResponse(202, None, {"Location": self._status_url(ws, op), **_retry_header(self.retry_after)})

    def _get_operation(self, req: FakeRequest) -> FakeResponse:
        entry = self._ops.get(req.match.group("op"))
        if entry is None:
            return arm_error(404, "NotFound", "Operation not found.")
        ws, ci, op = entry
        if op.rejected:  # wrong_state "late": the accepted request fails as an operation, CI unchanged
            return arm_error(400, op.error[0], op.error[1])  # type: ignore[index]
        self._settle(ci)
        if ci.operation is op:
            if op.name == "Create":
                return FakeResponse(200, {"status": "InProgress"}, _retry_header(self.retry_after))
            return FakeResponse(202, None, {"Location": self._status_url(ws, op), **_retry_header(self.retry_after)})
        if op.name == "Create":  # Azure-AsyncOperation status resource
            if op.error:
                return FakeResponse(200, {"status": "Failed", "error": {"code": op.error[0], "message": op.error[1]}})
            return FakeResponse(200, {"status": "Succeeded"})
        if op.error:
            return arm_error(400, op.error[0], op.error[1])
        return FakeResponse(204)

    def _put_compute(self, req: FakeRequest) -> FakeResponse:
        ws = self._workspace(req)
        if ws is None:
            return arm_error(404, "ResourceNotFound", f"The Resource '{PROVIDER}/workspaces/{req.match.group('ws')}' was not found.")
        try:
            body = req.json() or {}
        except ValueError:
            return arm_error(400, "InvalidRequestContent", "The request content was invalid and could not be deserialized.")
        name = req.match.group("name")
        props = body.get("properties") or {}
        inner = props.get("properties") or {}
        with self._lock:
            existing = ws.computes.get(name.lower())
            if existing is not None:
                self._settle(existing)
                mode = self.platform.compute_full_put_existing
                if mode == "refused":
                    return arm_error(400, "BadRequest", f"Compute '{name}' already exists; updating a compute instance with PUT is not supported.")
                if existing.operation is not None:
                    return arm_error(409, "Conflict", f"Compute instance '{name}' is busy with {existing.operation.name}.")
                if mode == "ignored":
                    # Azure/bicep#17617 (re-PUT of workspaces/computes "does not update properties" yet
                    # succeeds): 200 with the compute as it is.
                    return FakeResponse(200, self.compute_json(ws, existing))
                err = _check_tags(body.get("tags") or {})
                if err:
                    return err
                existing.tags = dict(body.get("tags") or {})
                return FakeResponse(200, self.compute_json(ws, existing))
            if not _COMPUTE_NAME.match(name):
                return arm_error(400, "BadRequest", f"Compute name '{name}' is invalid: 3-24 characters, letters, digits and '-', starting with a letter.")
            err = _check_tags(body.get("tags") or {})
            if err:
                return err
            if props.get("computeType") != "ComputeInstance":
                return arm_error(400, "BadRequest", "The fake serves only computeType ComputeInstance.")
            assigned = ((inner.get("personalComputeInstanceSettings") or {}).get("assignedUser")) or None
            idle = inner.get("idleTimeBeforeShutdown")
            ci = FakeComputeInstance(
                name=name,
                state="Creating",
                vm_size=inner.get("vmSize") or "STANDARD_DS3_V2",
                location=body.get("location") or ws.location,
                tags=dict(body.get("tags") or {}),
                assigned_user=(assigned["objectId"], assigned["tenantId"]) if assigned else None,
                idle_minutes=int(idle[2:-1]) if isinstance(idle, str) and idle.startswith("PT") and idle.endswith("M") else None,
                created_on=_now_iso(),
                schedules=[dict(sch, provisioningStatus="Completed") for sch in ((inner.get("schedules") or {}).get("computeStartStop") or [])],
            )
            error = self.create_errors.get(name.lower())
            ws.computes[name.lower()] = ci
            op = self._start_operation(ws, ci, "Create", "Creating", "Running", self.create_seconds, error)
        return FakeResponse(201, self.compute_json(ws, ci), {"Azure-AsyncOperation": self._status_url(ws, op), **_retry_header(self.retry_after)})

    def _update_idle(self, req: FakeRequest) -> FakeResponse:
        ws, ci, err = self._lookup(req)
        if err:
            return err
        assert ci is not None
        value = (req.json() or {}).get("idleTimeBeforeShutdown", "")
        if not (isinstance(value, str) and value.startswith("PT") and value.endswith("M") and value[2:-1].isdigit()):
            return arm_error(400, "BadRequest", f"idleTimeBeforeShutdown must look like PT30M, not {value!r}.")
        ci.idle_minutes = int(value[2:-1])
        return FakeResponse(200)

    # -- tags (ARM Tags API at a compute's or a workspace's scope) -----------------------------
    def _tags_resource(self, scope_id: str, tags: Dict[str, str]) -> dict:
        return {
            "id": f"{scope_id}/providers/Microsoft.Resources/tags/default",
            "name": "default",
            "type": "Microsoft.Resources/tags",
            "properties": {"tags": dict(tags)},
        }

    def _tags_target(self, req: FakeRequest) -> Tuple[Optional[str], Optional[FakeWorkspace | FakeComputeInstance], str, Optional[FakeResponse]]:
        """(scope id, the resource holding the tags, mode, error) for a Tags API request.

        A compute follows ``platform.compute_tags_api``. A workspace supports tags (tag-support.md), so its
        writes are applied, with the Tags API's 202 form when the platform answers 202 for computes (the 202
        comes from the Tags API itself: TagsResource.tsp, PatchTagsResource.json)."""
        if req.match.groupdict().get("name") is None:
            ws = self._workspace(req)
            if ws is None:
                return None, None, "", arm_error(404, "ResourceNotFound", f"The Resource '{PROVIDER}/workspaces/{req.match.group('ws')}' was not found.")
            self._settle_tags(ws)
            return ws.id, ws, "accepted_202" if self.platform.compute_tags_api == "accepted_202" else "applied_200", None
        mode = self.platform.compute_tags_api
        if mode == "refused":
            # tag-support.md: workspaces/computes "Supports tags: No". The status and code ARM answers
            # are UNCONFIRMED; 400 UnsupportedResourceOperation is the fake's choice.
            return (
                None,
                None,
                mode,
                arm_error(
                    400, "UnsupportedResourceOperation", "The resource type 'workspaces/computes' does not support tags through Microsoft.Resources/tags."
                ),
            )
        ws, ci, err = self._lookup(req)
        if err:
            return None, None, mode, err
        assert ws is not None and ci is not None
        self._settle_tags(ci)
        return f"{ws.id}/computes/{ci.name}", ci, mode, None

    def _write_tags(self, req: FakeRequest, scope_id: str, target: FakeWorkspace | FakeComputeInstance, mode: str, new: Dict[str, str]) -> FakeResponse:
        if mode == "ignored_200":
            return FakeResponse(200, self._tags_resource(scope_id, new))
        if mode == "accepted_202":
            with self._lock:
                op_id = f"tags-{next(self._op_ids)}"
                target.pending_tags = (self.clock() + self.tags_apply_seconds, dict(new))
                self._tag_ops[op_id] = (scope_id, target)
            sub = scope_id.split("/")[2]
            location = f"{ARM_HOST}/subscriptions/{sub}/providers/Microsoft.Resources/operationResults/{op_id}?api-version={TAGS_API}"
            return FakeResponse(202, None, {"Location": location})
        with self._lock:
            target.tags = dict(new)
        return FakeResponse(200, self._tags_resource(scope_id, target.tags))

    def _get_tag_operation(self, req: FakeRequest) -> FakeResponse:
        """The Location of a Tags API write accepted with 202: polling it applies the write (200 with the
        tags resource), as ARM's async pattern ends an operation when its Location answers 200."""
        entry = self._tag_ops.get(req.match.group("op"))
        if entry is None:
            return arm_error(404, "NotFound", "Operation not found.")
        scope_id, target = entry  # type: ignore[misc]
        with self._lock:
            if target.pending_tags is not None:
                target.tags, target.pending_tags = dict(target.pending_tags[1]), None
        return FakeResponse(200, self._tags_resource(scope_id, target.tags))

    def _get_tags(self, req: FakeRequest) -> FakeResponse:
        scope, target, _, err = self._tags_target(req)
        return err or FakeResponse(200, self._tags_resource(scope, target.tags))  # type: ignore[arg-type, union-attr]

    def _put_tags(self, req: FakeRequest) -> FakeResponse:
        scope, target, mode, err = self._tags_target(req)
        if err:
            return err
        tags, err = _tags_from_body(req)
        return err or _check_tags(tags) or self._write_tags(req, scope, target, mode, tags)  # type: ignore[arg-type]

    def _patch_tags(self, req: FakeRequest) -> FakeResponse:
        scope, target, mode, err = self._tags_target(req)
        if err:
            return err
        assert target is not None
        tags, err = _tags_from_body(req)
        if err:
            return err
        operation = (req.json() or {}).get("operation")
        with self._lock:
            current = dict(target.pending_tags[1]) if target.pending_tags else dict(target.tags)
            if operation == "Merge":
                merged = {**current, **tags}
            elif operation == "Replace":
                merged = dict(tags)
            elif operation == "Delete":
                # Deletes a tag when the name matches and the value matches (or is empty).
                merged = {k: v for k, v in current.items() if not (k in tags and tags[k] in ("", v))}
            else:
                return arm_error(400, "InvalidTagOperation", f"operation must be Merge, Replace or Delete, not {operation!r}.")
        return _check_tags(merged) or self._write_tags(req, scope, target, mode, merged)  # type: ignore[arg-type]

    def _delete_tags(self, req: FakeRequest) -> FakeResponse:
        scope, target, mode, err = self._tags_target(req)
        if err:
            return err
        response = self._write_tags(req, scope, target, mode, {})  # type: ignore[arg-type]
        return FakeResponse(200) if response.status == 200 else response


def compute_schedule(
    action: str = "Stop",
    *,
    cron: Optional[str] = "0 19 * * *",
    time_zone: str = "UTC",
    recurrence: Optional[Dict[str, object]] = None,
    enabled: bool = True,
    start_time: Optional[str] = None,
) -> Dict[str, object]:
    """One ComputeStartStopSchedule (2023-08-01-preview machineLearningServices.json): ``action`` Start or
    Stop, ``triggerType`` Cron (``cron.expression``) or Recurrence (``recurrence`` with frequency, interval,
    schedule{hours, minutes, weekDays}); ``status`` Enabled/Disabled; ``provisioningStatus`` Completed."""
    if action not in ("Start", "Stop"):
        raise ValueError("action must be Start or Stop")
    sch: Dict[str, object] = {
        "id": str(uuid.uuid4()),
        "provisioningStatus": "Completed",
        "status": "Enabled" if enabled else "Disabled",
        "action": action,
    }
    if recurrence is not None:
        sch["triggerType"] = "Recurrence"
        sch["recurrence"] = {"timeZone": time_zone, **({"startTime": start_time} if start_time else {}), **recurrence}
    else:
        sch["triggerType"] = "Cron"
        sch["cron"] = {"expression": cron, "timeZone": time_zone, **({"startTime": start_time} if start_time else {})}
    return sch


def _last_operation(name: str, status: str, trigger: str) -> Dict[str, str]:
    """ComputeInstanceLastOperation: operationName, operationTime, operationStatus, operationTrigger."""
    return {"operationName": name, "operationTime": _now_iso(), "operationStatus": status, "operationTrigger": trigger}


def _check_tags(tags: Dict[str, str]) -> Optional[FakeResponse]:
    """ARM's tag limits (see MAX_TAGS): None if ``tags`` may be stored, else the 400 (codes UNCONFIRMED)."""
    if len(tags) > MAX_TAGS:
        return arm_error(400, "InvalidTagCount", f"A resource can have at most {MAX_TAGS} tags; the request would leave {len(tags)}.")
    for key, value in tags.items():
        if len(key) > MAX_TAG_NAME:
            return arm_error(400, "InvalidTagNameLength", f"The tag name '{key[:40]}...' is longer than {MAX_TAG_NAME} characters.")
        if not isinstance(value, str) or len(value) > MAX_TAG_VALUE:
            return arm_error(400, "InvalidTagValueLength", f"The value of tag '{key}' is longer than {MAX_TAG_VALUE} characters.")
    return None


def _tags_from_body(req: FakeRequest) -> Tuple[Dict[str, str], Optional[FakeResponse]]:
    try:
        body = req.json() or {}
    except ValueError:
        return {}, arm_error(400, "InvalidRequestContent", "The request content was invalid and could not be deserialized.")
    tags = (body.get("properties") or {}).get("tags")
    if not isinstance(tags, dict):
        return {}, arm_error(400, "InvalidRequestContent", "properties.tags is required.")
    for key in tags:
        # tag-resources.md: names can't contain <, >, %, &, \\, ?, /
        if any(c in key for c in "<>%&\\?/"):
            return {}, arm_error(400, "InvalidTagNameCharacters", f"The tag name '{key}' has characters that are not allowed.")
    return tags, None


def _retry_header(seconds: int) -> Dict[str, str]:
    # azure-ai-ml deserializes Retry-After on these responses as an int (as the spec declares it),
    # so only whole seconds are valid; 0 means "no header" (the published start/stop examples send none).
    return {"Retry-After": str(int(seconds))} if seconds else {}


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f0+00:00")
