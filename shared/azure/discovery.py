"""Find the managed workspaces and their compute instances, concurrently, isolating failures:
a subscription or workspace that cannot be read is reported and the rest is still swept.

A listing that fails for a reason that may pass (5xx, throttling, an expired token, a dropped
connection: :func:`is_transient`) is tried once more after a short pause, on top of azure-core's
own retries: a workspace left out of discovery is left running for the night."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, List, Tuple, TypeVar

from shared.azure.errors import describe_error, is_transient
from shared.azure.ml_gateway import MLGateway
from shared.models import ComputeInstanceRecord, WorkspaceRef
from shared.report import ScopeError
from shared.settings import Scope, workspace_in_scope

log = logging.getLogger(__name__)
T = TypeVar("T")

LIST_RETRY_DELAY_SECONDS = 2.0


@dataclass
class Inventory:
    """What discovery found, and what it could not read."""

    workspaces: List[WorkspaceRef] = field(default_factory=list)
    instances: List[ComputeInstanceRecord] = field(default_factory=list)
    errors: List[ScopeError] = field(default_factory=list)








def _twice(what: str, call: Callable[[], T], sleep: Callable[[float], None]) -> T:
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 - classified below
        if not is_transient(exc):
            raise
        log.warning("Listing %s failed (%s); trying once more in %.0f s", what, describe_error(exc), LIST_RETRY_DELAY_SECONDS)
        sleep(LIST_RETRY_DELAY_SECONDS)
        return call()


def discover(gateway: MLGateway, scope: Scope, *, concurrency: int = 16, sleep: Callable[[float], None] = time.sleep) -> Inventory:
    """List the workspaces in scope and every compute instance in them."""
    inventory = Inventory()
    # ARM names are case-insensitive: a subscription or resource group named twice (any case) is listed once.
    targets = list({(sub.lower(), (rg or "").lower()): (sub, rg) for sub in scope.subscriptions for rg in (scope.resource_groups or (None,))}.values())

    def list_ws(target: Tuple[str, Any]) -> Tuple[Tuple[str, Any], Any]:
        sub, rg = target
        try:
            return target, _twice(f"workspaces of subscription {sub}", lambda: gateway.list_workspaces(sub, rg), sleep)
        except Exception as exc:  # noqa: BLE001 - isolate any failure to its scope
            return target, exc

    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(targets) or 1))) as pool:
        for (sub, rg), found in pool.map(list_ws, targets):
            where = f"subscription {sub}" + (f" resource group {rg}" if rg else "")
            if isinstance(found, BaseException):
                inventory.errors.append(ScopeError(where, f"cannot list workspaces: {describe_error(found)}"))
                log.error("Cannot list workspaces in %s: %s", where, describe_error(found))
                continue
            known = {w.key.lower() for w in inventory.workspaces}
            for ws in found:
                if workspace_in_scope(ws, scope) and ws.key.lower() not in known:  # each workspace (and so each CI) once
                    known.add(ws.key.lower())
                    inventory.workspaces.append(ws)

    def list_cis(ws: WorkspaceRef) -> Tuple[WorkspaceRef, Any]:
        try:
            return ws, _twice(f"compute instances of {ws.key}", lambda: gateway.list_compute_instances(ws), sleep)
        except Exception as exc:  # noqa: BLE001
            return ws, exc

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for ws, found in pool.map(list_cis, inventory.workspaces):
            if isinstance(found, BaseException):
                inventory.errors.append(ScopeError(f"workspace {ws.key}", f"cannot list compute instances: {describe_error(found)}"))
                log.error("Cannot list compute instances in workspace %s: %s", ws.key, describe_error(found))
                continue
            inventory.instances.extend(found)
    log.info(
        "Discovered %d workspace(s) and %d compute instance(s) in %d subscription(s)",
        len(inventory.workspaces),
        len(inventory.instances),
        len(scope.subscriptions),
    )
    return inventory
