"""Every call to Azure Machine Learning goes through here, on top of azure-ai-ml.

Two deliberate choices, both for scale (measured: 200 per-workspace ``MLClient`` objects cost
3.3 s and 150 MB; ``begin_stop`` starts a polling thread per CI):

- one ``MLClient`` per *subscription*, whose compute operations take the resource group and
  workspace per call;
- start/stop are sent without client-side polling (``polling=False``): the sweep confirms many
  CIs at once by listing each workspace, one read instead of one poll per CI, which keeps ARM's
  read budget (25/s per subscription) for the work itself.

Two more, for long sweeps:

- reads are paced per subscription just under ARM's read budget (bucket 250, refill 25/s), one
  token per page fetched, so confirmation listings never crowd out the sweep's own work;
- a 401 (the token expired or was revoked mid-run) is retried once: azure-core's
  BearerTokenCredentialPolicy drops its cached token on a 401 but does not resend the request
  unless the challenge asks for claims, so without this one expiry would fail a whole workspace.

Both use ``MLClient.compute._operation``, the generated operations azure-ai-ml itself calls (pinned
azure-ai-ml; ``tests/test_azure_ml_gateway.py`` fails loudly if a new version moves it). Entities are
converted with azure-ai-ml's own ``Compute._from_rest_object`` so field mapping stays the SDK's.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Protocol, Tuple, TypeVar

from shared.azure.errors import translate, translated
from shared.azure.pacing import PerSubscriptionPacer
from shared.errors import GatewayError
from shared.models import CISchedule, ComputeInstanceRecord, NewComputeInstance, WorkspaceRef
from shared.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

# ARM reads: 250 per bucket, refilled at 25/s per subscription and principal. Stay under both.
READS_PER_SECOND = 20.0
READ_BURST = 200


def _ml_client_class() -> Any:
    # Imported lazily: azure.ai.ml takes ~2 s to import, and --help or a settings error should not wait.
    from azure.ai.ml import MLClient

    return MLClient


RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED_OP = "failed"


@dataclass(frozen=True)
class OperationStatus:
    """One read of a long-running start/stop operation: ``state`` running, succeeded or failed."""

    state: str
    code: str = ""
    message: str = ""
    status: int = 0

    @property
    def wrong_state(self) -> bool:
        """The service refused the action for the CI's state (e.g. StopComputeInstanceOnlyAllowedInRunningState)."""
        return "OnlyAllowedIn" in self.code


class AzureMLGateway:
    """Azure ML workspaces and compute instances across subscriptions."""

    def __init__(
        self,
        credential: Any,
        *,
        polling_interval: float = 30.0,
        client_kwargs: Optional[Dict[str, Any]] = None,
        client_factory: Optional[Callable[..., Any]] = None,
        reads_per_second: Optional[float] = READS_PER_SECOND,
        read_burst: int = READ_BURST,
    ):
        """``reads_per_second=None`` turns read pacing off."""
        self._credential = credential
        self._polling_interval = polling_interval
        self._client_kwargs = dict(client_kwargs or {})
        self._factory = client_factory
        self._clients: Dict[str, Any] = {}
        self._lock = threading.Lock()
        self._read_pacer = PerSubscriptionPacer(read_burst, reads_per_second) if reads_per_second else None

    def client(self, subscription_id: str) -> Any:
        """The subscription's MLClient (created once, thread-safe)."""
        key = subscription_id.lower()
        with self._lock:
            if key not in self._clients:
                factory = self._factory or _ml_client_class()
                self._clients[key] = factory(self._credential, subscription_id, polling_interval=self._polling_interval, **self._client_kwargs)
            return self._clients[key]

    def _ops(self, subscription_id: str) -> Any:
        ops = getattr(self.client(subscription_id).compute, "_operation", None)
        if ops is None:  # pragma: no cover - guards an azure-ai-ml upgrade
            raise GatewayError("this azure-ai-ml version has no MLClient.compute._operation; pin azure-ai-ml as in requirements.txt")
        return ops

    # -- plumbing for long runs -----------------------------------------------------------
    def _read_token(self, subscription_id: str) -> None:
        if self._read_pacer is not None:
            self._read_pacer.acquire(subscription_id)

    def _pages(self, subscription_id: str, paged: Any) -> Iterator[Any]:
        """Items of an azure-core ItemPaged, taking one read token per page fetched."""
        pages = paged.by_page()
        while True:
            self._read_token(subscription_id)
            try:
                page = next(pages)
            except StopIteration:
                return
            yield from page
            if pages.continuation_token is None:  # that was the last page: no further request
                return

    def _once_more_on_401(self, what: str, call: Callable[[], T]) -> T:
        from azure.core.exceptions import ClientAuthenticationError

        try:
            return call()
        except ClientAuthenticationError as exc:
            if getattr(exc, "status_code", None) != 401:
                raise  # the credential itself failed (no token at all): retrying will not help
            log.warning("Azure answered 401 to %s (token expired or revoked); retrying once with a new token", what)
            return call()

    # -- reads ---------------------------------------------------------------------------
    @translated
    def list_workspaces(self, subscription_id: str, resource_group: Optional[str] = None) -> List[WorkspaceRef]:
        """Workspaces in a subscription (or one of its resource groups)."""

        def call() -> List[WorkspaceRef]:
            client = self.client(subscription_id)
            if resource_group:
                self._read_token(subscription_id)
                items = _list_rg(client, resource_group)
            else:
                items = self._pages(subscription_id, client.workspaces.list(scope="subscription"))
            # The listing carries each workspace's tags (workspace-recorded exemptions) at no extra cost.
            return [
                WorkspaceRef(subscription_id, ws.resource_group or resource_group or "", ws.name, ws.location or "", dict(getattr(ws, "tags", None) or {}))
                for ws in items
            ]

        return self._once_more_on_401(f"listing workspaces of subscription {subscription_id}", call)

    @translated
    def get_workspace(self, workspace: WorkspaceRef) -> WorkspaceRef:
        """One workspace as ARM shows it now (with its tags); raises NotFoundError if absent."""

        def call() -> Any:
            self._read_token(workspace.subscription_id)
            return self.client(workspace.subscription_id).workspaces._operation.get(workspace.resource_group, workspace.name)

        rest = self._once_more_on_401(f"reading workspace {workspace.key}", call)
        name, location = rest.name or workspace.name, rest.location or workspace.location
        return WorkspaceRef(workspace.subscription_id, workspace.resource_group, name, location, dict(rest.tags or {}))

    @translated
    def list_compute_instances(self, workspace: WorkspaceRef) -> List[ComputeInstanceRecord]:
        """Every compute instance in a workspace (other compute types are left out)."""
        from azure.ai.ml.entities import Compute, ComputeInstance

        def call() -> List[ComputeInstanceRecord]:
            ops = self._ops(workspace.subscription_id)
            out = []
            for rest in self._pages(workspace.subscription_id, ops.list(workspace.resource_group, workspace.name)):
                if str(getattr(rest.properties, "compute_type", "")).lower() != "computeinstance":
                    continue
                entity = Compute._from_rest_object(rest)
                if isinstance(entity, ComputeInstance):
                    out.append(to_record(workspace, entity))
            return out

        return self._once_more_on_401(f"listing compute instances of {workspace.key}", call)

    @translated
    def get_compute_instance(self, workspace: WorkspaceRef, name: str) -> ComputeInstanceRecord:
        """One compute instance; raises shared.errors.NotFoundError if it does not exist."""
        from azure.ai.ml.entities import Compute, ComputeInstance

        def call() -> Any:
            self._read_token(workspace.subscription_id)
            return self._ops(workspace.subscription_id).get(workspace.resource_group, workspace.name, name)

        entity = Compute._from_rest_object(self._once_more_on_401(f"reading {workspace.key}/{name}", call))
        if not isinstance(entity, ComputeInstance):
            raise GatewayError(f"'{name}' in workspace {workspace.name} is a {type(entity).__name__}, not a compute instance")
        return to_record(workspace, entity)

    # -- writes --------------------------------------------------------------------------
    @translated
    def request_stop(self, workspace: WorkspaceRef, name: str) -> Optional[str]:
        """Send the stop request (202 Accepted); completion is confirmed by listing. Returns the
        operation's URL (the 202's ``Location``), which :meth:`operation_status` reads.

        On failure the exception carries ``earlier_statuses``: what azure-core's own earlier
        attempts got (e.g. ``[500]`` before a 409: the first attempt may have been carried out).
        """
        return self._action("begin_stop", workspace, name)

    @translated
    def request_start(self, workspace: WorkspaceRef, name: str) -> Optional[str]:
        """Send the start request (202 Accepted); completion is confirmed by listing (returns and
        failures as in :meth:`request_stop`)."""
        return self._action("begin_start", workspace, name)

    def _action(self, method: str, workspace: WorkspaceRef, name: str) -> Optional[str]:
        ops = self._ops(workspace.subscription_id)
        statuses: List[int] = []
        locations: List[Optional[str]] = []

        def hook(response: Any) -> None:
            statuses.append(response.http_response.status_code)
            locations.append(response.http_response.headers.get("Location") or response.http_response.headers.get("Azure-AsyncOperation"))

        def call() -> None:
            statuses.clear()
            locations.clear()
            # The hook sees every attempt azure-core's RetryPolicy makes (it runs inside the retry loop).
            getattr(ops, method)(workspace.resource_group, workspace.name, name, polling=False, raw_response_hook=hook)

        try:
            # A 401 means the request was not authorized, so nothing happened: sending it again is safe.
            self._once_more_on_401(f"{method[6:]} {workspace.key}/{name}", call)
        except Exception as exc:
            exc.earlier_statuses = statuses[:-1]  # type: ignore[attr-defined]
            raise
        return locations[-1] if locations else None

    @translated
    def operation_status(self, subscription_id: str, url: str) -> OperationStatus:
        """Read a start/stop operation once (its 202 ``Location``): 202 running, 200/204 succeeded,
        an error status failed with the service's code. A wrong-state start/stop is accepted and
        fails only here (docs/platform.md, "Azure ML compute instances": wrong-state fails late)."""
        from azure.core.exceptions import HttpResponseError
        from azure.core.rest import HttpRequest

        ops = self._ops(subscription_id)

        def call() -> Any:
            self._read_token(subscription_id)
            response = ops._client.send_request(HttpRequest("GET", url))
            if response.status_code in (401, 403, 404, 408, 429) or response.status_code >= 500:
                # Not the operation's own failure: our read failed (the caller falls back to the listing).
                raise HttpResponseError(response=response)
            return response

        try:
            response = call()
        except HttpResponseError as exc:
            if exc.status_code != 401:
                raise
            response = call()  # an expired token: once more with a fresh one, as for every other read
        if response.status_code == 202:
            return OperationStatus(RUNNING)
        if response.status_code in (200, 204):
            try:
                body = response.json() if response.text() else {}
            except ValueError:
                body = {}
            status = str((body or {}).get("status", "Succeeded")) if isinstance(body, dict) else "Succeeded"
            if status.lower() in ("failed", "canceled", "cancelled"):
                error = body.get("error") or {}
                return OperationStatus(FAILED_OP, str(error.get("code", status)), str(error.get("message", "")))
            return OperationStatus(RUNNING if status.lower() in ("inprogress", "running", "accepted") else SUCCEEDED)
        try:
            error = (response.json() or {}).get("error") or {}
        except ValueError:
            error = {}
        return OperationStatus(FAILED_OP, str(error.get("code") or f"HTTP {response.status_code}"), str(error.get("message") or ""), response.status_code)

    @translated
    def put_compute_tags(self, workspace: WorkspaceRef, name: str, transform: Callable[[Dict[str, str]], Dict[str, str]]) -> None:
        """Read the compute, replace its tags with ``transform(current tags)`` and PUT it back whole.

        No client polling: the caller proves the write by reading the compute back.
        """
        ops = self._ops(workspace.subscription_id)
        self._read_token(workspace.subscription_id)
        rest = ops.get(workspace.resource_group, workspace.name, name)
        rest.tags = transform(dict(rest.tags or {}))
        ops.begin_create_or_update(workspace.resource_group, workspace.name, name, rest, polling=False)

    @translated
    def create_compute_instance(self, workspace: WorkspaceRef, spec: NewComputeInstance, timeout_seconds: float) -> Optional[ComputeInstanceRecord]:
        """Create a compute instance and wait up to ``timeout_seconds`` for it.

        Returns its record when the operation finished (None when Azure is still creating it after
        the timeout). Raises :class:`shared.errors.ServiceError` when the request is refused, and
        :class:`shared.errors.OperationFailedError` with the service's message when the operation fails.

        The entity becomes the PUT body of Compute/createOrUpdate/ComputeInstance.json
        (2023-08-01-preview): ``properties.properties.vmSize``, ``personalComputeInstanceSettings
        .assignedUser.{objectId,tenantId}``, ``idleTimeBeforeShutdown`` ("PT60M") and top-level ``tags``.
        """
        from azure.ai.ml.entities import AssignedUserConfiguration, ComputeInstance

        entity = ComputeInstance(
            name=spec.name,
            size=spec.size,
            create_on_behalf_of=AssignedUserConfiguration(user_tenant_id=spec.user_tenant_id, user_object_id=spec.user_object_id),
            idle_time_before_shutdown_minutes=spec.idle_minutes,
            tags=dict(spec.tags),
        )
        client = self.client(workspace.subscription_id)
        scoped = type(client)(
            self._credential,
            workspace.subscription_id,
            workspace.resource_group,
            workspace.name,
            polling_interval=self._polling_interval,
            **self._client_kwargs,
        )
        poller = scoped.compute.begin_create_or_update(entity)
        try:
            poller.wait(timeout_seconds)  # re-raises a failure of the operation
            if not poller.done():
                return None
            created = poller.result()
        except Exception as exc:
            raise translate(exc, operation=True) from exc
        return to_record(workspace, created) if created is not None else self.get_compute_instance(workspace, spec.name)


def sign_in(settings: Settings, *, what: str, dry_run: bool, credential: Any = None, gateway: Optional[MLGateway] = None) -> MLGateway:
    """The gateway a runbook works through, signed in with its identity (managed identity in Azure
    Automation; ``credential`` or ``gateway`` injected in tests), after one log line saying what starts,
    over how much, and as whom."""
    from shared.azure.auth import get_credential

    cred, who = get_credential(settings.identity.client_id, credential=credential)
    subscriptions = len(settings.scope.subscriptions)
    log.info("%s starting%s over %d subscription(s); signed in with %s", what, " (DRY RUN)" if dry_run else "", subscriptions, who)
    return gateway or AzureMLGateway(cred)


class MLGateway(Protocol):
    """What capabilities and the other ports use of Azure ML (``AzureMLGateway``; fakes in tests).

    Every method raises :mod:`shared.errors` types, never an SDK's own.
    """

    def list_workspaces(self, subscription_id: str, resource_group: Optional[str] = None) -> List[WorkspaceRef]: ...

    def get_workspace(self, workspace: WorkspaceRef) -> WorkspaceRef: ...

    def list_compute_instances(self, workspace: WorkspaceRef) -> List[ComputeInstanceRecord]: ...

    def get_compute_instance(self, workspace: WorkspaceRef, name: str) -> ComputeInstanceRecord: ...

    def request_stop(self, workspace: WorkspaceRef, name: str) -> Optional[str]: ...

    def request_start(self, workspace: WorkspaceRef, name: str) -> Optional[str]: ...

    def operation_status(self, subscription_id: str, url: str) -> OperationStatus: ...

    def put_compute_tags(self, workspace: WorkspaceRef, name: str, transform: Callable[[Dict[str, str]], Dict[str, str]]) -> None: ...

    def create_compute_instance(self, workspace: WorkspaceRef, spec: NewComputeInstance, timeout_seconds: float) -> Optional[ComputeInstanceRecord]: ...


def _list_rg(client: Any, resource_group: str) -> Any:
    # MLClient.workspaces.list(scope="resource_group") uses the client's own resource group, so a
    # subscription-level client asks the generated operation directly.
    from azure.ai.ml.entities import Workspace

    rest_items = client.workspaces._operation.list_by_resource_group(resource_group)
    return [Workspace._from_rest_object(item) for item in rest_items]


def to_record(workspace: WorkspaceRef, entity: Any) -> ComputeInstanceRecord:
    """Convert an azure-ai-ml ComputeInstance entity into our record.

    azure-ai-ml 1.35 hands ``last_operation`` over as the REST dict with camelCase keys
    (``operationName``, ``operationStatus``, ``operationTrigger``; docs/platform.md, "Azure ML compute
    instances"); snake_case keys are accepted too in case a version converts them.
    """
    user = getattr(entity, "create_on_behalf_of", None)
    last = getattr(entity, "last_operation", None) or {}
    state = getattr(entity, "state", None)
    idle = getattr(entity, "idle_time_before_shutdown_minutes", None)
    return ComputeInstanceRecord(
        workspace=workspace,
        name=entity.name,
        state=str(getattr(state, "value", state) or "Unknown"),
        vm_size=entity.size or "",
        location=entity.location or workspace.location,
        tags=dict(entity.tags or {}),
        assigned_user_object_id=getattr(user, "user_object_id", None) if user else None,
        assigned_user_tenant_id=getattr(user, "user_tenant_id", None) if user else None,
        idle_shutdown_minutes=int(idle) if idle else None,
        last_operation=_last(last, "operationName", "operation_name"),
        last_operation_trigger=_last(last, "operationTrigger", "operation_trigger"),
        last_operation_status=_last(last, "operationStatus", "operation_status"),
        stop_schedules=_stop_schedules(getattr(entity, "schedules", None)),
        created_on=str(getattr(entity, "created_on", None) or "") or None,
    )


def _last(last: Any, camel: str, snake: str) -> Optional[str]:
    if not isinstance(last, dict):
        last = {camel: getattr(last, snake, None)}
    value = last.get(camel, last.get(snake))
    value = getattr(value, "value", value)
    return str(value) if value else None


def _stop_schedules(schedules: Any) -> Tuple[CISchedule, ...]:
    """The CI's enabled Stop schedules (ComputeSchedules.compute_start_stop) as records; unreadable ones are skipped."""
    out = []
    for item in getattr(schedules, "compute_start_stop", None) or []:
        try:
            action = str(getattr(item.action, "value", item.action) or "")
            status = str(getattr(item.state, "value", item.state) or "Enabled")
            if action.lower() != "stop" or status.lower() != "enabled":
                continue
            trigger = item.trigger
            zone = getattr(trigger, "time_zone", None) or "UTC"
            kind = str(getattr(getattr(trigger, "type", None), "value", getattr(trigger, "type", ""))).lower()
            if kind == "cron":
                out.append(CISchedule("Stop", "cron", zone, expression=str(trigger.expression or "")))
            else:
                pattern = getattr(trigger, "schedule", None)
                out.append(
                    CISchedule(
                        "Stop",
                        "recurrence",
                        zone,
                        frequency=str(getattr(trigger.frequency, "value", trigger.frequency) or ""),
                        interval=int(getattr(trigger, "interval", 1) or 1),
                        hours=tuple(int(h) for h in (getattr(pattern, "hours", None) or [])),
                        minutes=tuple(int(m) for m in (getattr(pattern, "minutes", None) or [])),
                        week_days=tuple(str(getattr(d, "value", d)) for d in (getattr(pattern, "week_days", None) or [])),
                    )
                )
        except Exception:  # noqa: BLE001 - a schedule we cannot read is left out, never fails a listing
            log.debug("Could not read a compute schedule", exc_info=True)
    return tuple(out)
