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
so both are switchable here.

State changes are driven by time: a stop puts a CI in ``Stopping`` and it becomes ``Stopped``
``stop_seconds`` later, observed on the next read (list, get or operation poll).
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Dict, List, Optional, Tuple

from fake_azure.server import ARM_HOST, FakeArmServer, FakeRequest, FakeResponse, arm_error

COMPUTE_API = "2023-08-01-preview"
WORKSPACE_API = "2024-10-01-preview"
TAGS_API = "2021-04-01"
PROVIDER = "Microsoft.MachineLearningServices"

_WS = r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)"
_CI = _WS + r"/computes/(?P<name>[^/]+)"

# States in which a CI is busy with an operation: a new start/stop is refused with 409.
TRANSITIONAL = {"Creating", "Deleting", "Restarting", "Resizing", "SettingUp", "Starting", "Stopping", "UserSettingUp"}


@dataclass
class PendingOperation:
    """A long-running operation in flight on one CI."""

    op_id: str
    name: str  # Start, Stop, Restart, Create
    target_state: str
    completes_at: float
    error: Optional[Tuple[str, str]] = None  # (code, message) if it ends in failure
    failed_state: str = "Running"


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


@dataclass
class FakeWorkspace:
    """One Azure ML workspace and its computes (keyed by lower-case name: ARM names are case-insensitive)."""

    subscription_id: str
    resource_group: str
    name: str
    location: str = "westeurope"
    computes: Dict[str, FakeComputeInstance] = field(default_factory=dict)

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
        tags_api_supported: bool = True,
        tags_api_ignored: bool = False,
        full_put_of_existing_allowed: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.server = server
        self.stop_seconds = stop_seconds
        self.start_seconds = start_seconds
        self.create_seconds = create_seconds
        self.retry_after = retry_after
        self.page_size = page_size
        self.tags_api_supported = tags_api_supported
        # The Tags API answers 200 with the new tags but the compute keeps its old ones (the
        # failure a read-back must catch).
        self.tags_api_ignored = tags_api_ignored
        self.full_put_of_existing_allowed = full_put_of_existing_allowed
        self.clock = clock
        self.create_errors: Dict[str, Tuple[str, str]] = {}  # CI name (lower) -> (code, message)
        self.workspaces: Dict[Tuple[str, str, str], FakeWorkspace] = {}
        self._ops: Dict[str, Tuple[FakeWorkspace, FakeComputeInstance, PendingOperation]] = {}
        self._op_ids = itertools.count(1)
        self._lock = threading.RLock()
        self._register()

    # -- seeding -------------------------------------------------------------------------
    def add_workspace(self, subscription_id: str, resource_group: str, name: str, location: str = "westeurope") -> FakeWorkspace:
        """Create a workspace (idempotent)."""
        key = (subscription_id.lower(), resource_group.lower(), name.lower())
        with self._lock:
            if key not in self.workspaces:
                self.workspaces[key] = FakeWorkspace(subscription_id, resource_group, name, location)
            return self.workspaces[key]

    def add_compute_instance(self, workspace: FakeWorkspace, name: str, **fields: object) -> FakeComputeInstance:
        """Create a compute instance directly in a given state (no operation)."""
        fields.setdefault("location", workspace.location)
        ci = FakeComputeInstance(name=name, **fields)  # type: ignore[arg-type]
        with self._lock:
            workspace.computes[name.lower()] = ci
        return ci

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

    def begin_operation(self, workspace: FakeWorkspace, name: str, operation: str) -> None:
        """Start ``operation`` ("Start", "Stop" or "Restart") on a CI as someone else would (the
        portal, a schedule, another tool): no request, no checks; it completes like ours."""
        steps = {
            "Start": ("Starting", "Running", self.start_seconds),
            "Stop": ("Stopping", "Stopped", self.stop_seconds),
            "Restart": ("Restarting", "Running", self.start_seconds),
        }
        transitional, target, seconds = steps[operation]
        ci = workspace.computes[name.lower()]
        self._settle(ci)
        self._start_operation(workspace, ci, operation, transitional, target, seconds)

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
        tags = _CI + r"/providers/Microsoft\.Resources/tags/default"
        for method, handler in (("GET", self._get_tags), ("PUT", self._put_tags), ("PATCH", self._patch_tags), ("DELETE", self._delete_tags)):
            s.route(method, tags, handler, api_versions=(TAGS_API,))

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
        """Apply a pending operation whose time has come."""
        with self._lock:
            op = ci.operation
            if op is None or self.clock() < op.completes_at:
                return
            ci.state = op.failed_state if op.error else op.target_state
            ci.operation = None
            ci.last_operation = {
                "operationName": op.name,
                "operationTime": _now_iso(),
                "operationStatus": "Failed" if op.error else "Succeeded",
                "operationTrigger": "User",
            }

    def _start_operation(
        self, ws: FakeWorkspace, ci: FakeComputeInstance, name: str, transitional: str, target: str, seconds: float, error: Optional[Tuple[str, str]] = None
    ) -> PendingOperation:
        with self._lock:
            op = PendingOperation(
                op_id=f"op-{next(self._op_ids)}",
                name=name,
                target_state=target,
                completes_at=math.inf if ci.stuck else self.clock() + seconds,
                error=error,
                failed_state="CreateFailed" if name == "Create" else ci.state,
            )
            ci.state = transitional
            ci.operation = op
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
        start = int(req.query.get("$skipToken", "0") or 0)
        page = items[start : start + self.page_size]
        body: Dict[str, object] = {"value": page}
        if start + self.page_size < len(items):
            base = req.url.split("?")[0]
            body["nextLink"] = f"{base}?api-version={req.query['api-version']}&$skipToken={start + self.page_size}"
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
            "tags": {},
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
            items = [
                self._workspace_json(ws)
                for ws in self.workspaces.values()
                if ws.subscription_id.lower() == g["sub"].lower() and (rg is None or ws.resource_group.lower() == rg.lower())
            ]
        return self._page(req, items)

    def _get_workspace(self, req: FakeRequest) -> FakeResponse:
        ws = self._workspace(req)
        if ws is None:
            return arm_error(404, "ResourceNotFound", f"The Resource '{PROVIDER}/workspaces/{req.match.group('ws')}' was not found.")
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
            if ci.operation is not None or ci.state in TRANSITIONAL:
                return arm_error(409, "Conflict", f"Compute instance '{ci.name}' is in state {ci.state}: another operation is in progress.")
            if action == "stop":
                if ci.stop_error:
                    status, code, message = ci.stop_error
                    return arm_error(status, code, message)
                if ci.state not in ("Running", "JobRunning"):
                    return arm_error(
                        409,
                        "StopComputeInstanceOnlyAllowedInRunningState",
                        f"Compute instance '{ci.name}' is {ci.state}; only a running compute instance can be stopped.",
                    )
                op = self._start_operation(ws, ci, "Stop", "Stopping", "Stopped", self.stop_seconds)
            elif action == "start":
                if ci.state != "Stopped":
                    return arm_error(
                        409,
                        "StartComputeInstanceOnlyAllowedInStoppedState",
                        f"Compute instance '{ci.name}' is {ci.state}; only a stopped compute instance can be started.",
                    )
                op = self._start_operation(ws, ci, "Start", "Starting", "Running", self.start_seconds)
            else:
                if ci.state != "Running":
                    return arm_error(409, "RestartComputeInstanceOnlyAllowedInRunningState", f"Compute instance '{ci.name}' is {ci.state}.")
                op = self._start_operation(ws, ci, "Restart", "Restarting", "Running", self.start_seconds)
        return FakeResponse(202, None, {"Location": self._status_url(ws, op), **_retry_header(self.retry_after)})

    def _get_operation(self, req: FakeRequest) -> FakeResponse:
        entry = self._ops.get(req.match.group("op"))
        if entry is None:
            return arm_error(404, "NotFound", "Operation not found.")
        ws, ci, op = entry
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
                if not self.full_put_of_existing_allowed:
                    return arm_error(400, "BadRequest", f"Compute '{name}' already exists; updating a compute instance with PUT is not supported.")
                if existing.operation is not None:
                    return arm_error(409, "Conflict", f"Compute instance '{name}' is busy with {existing.operation.name}.")
                existing.tags = dict(body.get("tags") or {})
                return FakeResponse(200, self.compute_json(ws, existing))
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

    # -- tags (ARM Tags API at the compute's scope) ------------------------------------------
    def _tags_resource(self, ws: FakeWorkspace, ci: FakeComputeInstance) -> dict:
        return {
            "id": f"{ws.id}/computes/{ci.name}/providers/Microsoft.Resources/tags/default",
            "name": "default",
            "type": "Microsoft.Resources/tags",
            "properties": {"tags": dict(ci.tags)},
        }

    def _tags_target(self, req: FakeRequest) -> Tuple[Optional[FakeWorkspace], Optional[FakeComputeInstance], Optional[FakeResponse]]:
        if not self.tags_api_supported:
            return (
                None,
                None,
                arm_error(
                    400, "UnsupportedResourceOperation", "The resource type 'workspaces/computes' does not support tags through Microsoft.Resources/tags."
                ),
            )
        return self._lookup(req)

    def _get_tags(self, req: FakeRequest) -> FakeResponse:
        ws, ci, err = self._tags_target(req)
        return err or FakeResponse(200, self._tags_resource(ws, ci))  # type: ignore[arg-type]

    def _put_tags(self, req: FakeRequest) -> FakeResponse:
        ws, ci, err = self._tags_target(req)
        if err:
            return err
        tags, err = _tags_from_body(req)
        if err:
            return err
        if self.tags_api_ignored:
            return FakeResponse(200, {**self._tags_resource(ws, ci), "properties": {"tags": dict(tags)}})  # type: ignore[arg-type]
        with self._lock:
            ci.tags = dict(tags)  # type: ignore[union-attr]
        return FakeResponse(200, self._tags_resource(ws, ci))  # type: ignore[arg-type]

    def _patch_tags(self, req: FakeRequest) -> FakeResponse:
        ws, ci, err = self._tags_target(req)
        if err:
            return err
        assert ws is not None and ci is not None
        tags, err = _tags_from_body(req)
        if err:
            return err
        operation = (req.json() or {}).get("operation")
        with self._lock:
            if operation == "Merge":
                merged = {**ci.tags, **tags}
            elif operation == "Replace":
                merged = dict(tags)
            elif operation == "Delete":
                # Deletes a tag when the name matches and the value matches (or is empty).
                merged = {k: v for k, v in ci.tags.items() if not (k in tags and tags[k] in ("", v))}
            else:
                return arm_error(400, "InvalidTagOperation", f"operation must be Merge, Replace or Delete, not {operation!r}.")
            if len(merged) > 50:
                return arm_error(400, "InvalidTagCount", "A resource can have at most 50 tags.")
            if self.tags_api_ignored:
                return FakeResponse(200, {**self._tags_resource(ws, ci), "properties": {"tags": merged}})
            ci.tags = merged
        return FakeResponse(200, self._tags_resource(ws, ci))

    def _delete_tags(self, req: FakeRequest) -> FakeResponse:
        ws, ci, err = self._tags_target(req)
        if err:
            return err
        with self._lock:
            ci.tags = {}  # type: ignore[union-attr]
        return FakeResponse(200)


def _tags_from_body(req: FakeRequest) -> Tuple[Dict[str, str], Optional[FakeResponse]]:
    try:
        body = req.json() or {}
    except ValueError:
        return {}, arm_error(400, "InvalidRequestContent", "The request content was invalid and could not be deserialized.")
    tags = (body.get("properties") or {}).get("tags")
    if not isinstance(tags, dict):
        return {}, arm_error(400, "InvalidRequestContent", "properties.tags is required.")
    for key, value in tags.items():
        if len(key) > 512 or any(c in key for c in "<>%&\\?/"):
            return {}, arm_error(400, "InvalidTagNameCharacters", f"The tag name '{key}' has characters that are not allowed.")
        if not isinstance(value, str) or len(value) > 256:
            return {}, arm_error(400, "InvalidTagValueLength", f"The value of tag '{key}' is longer than 256 characters.")
    return tags, None


def _retry_header(seconds: int) -> Dict[str, str]:
    # azure-ai-ml deserializes Retry-After on these responses as an int (as the spec declares it),
    # so only whole seconds are valid; 0 means "no header" (the published start/stop examples send none).
    return {"Retry-After": str(int(seconds))} if seconds else {}


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f0+00:00")
