"""Start or stop many compute instances at once: send every request (bounded concurrency, paced
per subscription), then confirm them together by listing each affected workspace.

Used by the stop sweep and the morning start. Each CI ends with one :class:`OperationResult`.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from shared.discovery import describe_error
from shared.models import ComputeInstanceRecord, WorkspaceRef
from shared.pacing import PerSubscriptionPacer

log = logging.getLogger(__name__)

DONE = "done"  # the operation completed (confirmed by listing)
ALREADY = "already"  # nothing to do: the CI was already in (or heading to) the goal state
GONE = "gone"  # the CI was deleted meanwhile (404)
BUSY = "busy"  # another operation holds the CI (409) and it is not heading to the goal
FAILED = "failed"  # refused or failed; detail says why
TIMEOUT = "timeout"  # requested but not confirmed in time

BAD_STATES = ("CreateFailed", "SetupFailed", "UserSetupFailed", "Unusable")


@dataclass(frozen=True)
class Operation:
    """What to do and what success looks like."""

    name: str  # "stop" or "start"
    goal_state: str  # "Stopped" / "Running"
    heading_states: Tuple[str, ...]  # states meaning "already on its way" ("Stopping",)


STOP = Operation("stop", "Stopped", ("Stopping",))
START = Operation("start", "Running", ("Starting",))


@dataclass(frozen=True)
class BulkSettings:
    """Concurrency and pacing (settings section of the runbook that uses it)."""

    concurrency: int = 16
    writes_per_second: float = 9.0  # ARM refills 10/s per subscription: stay just under
    write_burst: int = 180  # ARM's bucket holds 200
    confirm_timeout_seconds: float = 1200.0
    confirm_interval_seconds: float = 15.0

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.concurrency > 64:
            raise ValueError("concurrency must be between 1 and 64")
        if self.confirm_timeout_seconds <= 0 or self.confirm_interval_seconds <= 0:
            raise ValueError("confirm_timeout_seconds and confirm_interval_seconds must be positive")


@dataclass(frozen=True)
class OperationResult:
    status: str
    detail: str
    final_state: str


def run_bulk(
    gateway: Any,
    targets: List[ComputeInstanceRecord],
    operation: Operation,
    settings: BulkSettings = BulkSettings(),
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Dict[str, OperationResult]:
    """Run ``operation`` on every target; returns a result per ``ComputeInstanceRecord.key``."""
    results: Dict[str, OperationResult] = {}
    if not targets:
        return results
    pacer = PerSubscriptionPacer(settings.write_burst, settings.writes_per_second, clock=clock, sleep=sleep)
    request = gateway.request_stop if operation.name == "stop" else gateway.request_start

    def send(ci: ComputeInstanceRecord) -> Tuple[ComputeInstanceRecord, Optional[OperationResult]]:
        pacer.acquire(ci.workspace.subscription_id)
        try:
            request(ci.workspace, ci.name)
            return ci, None
        except Exception as exc:  # noqa: BLE001 - every failure becomes this CI's outcome
            return ci, _classify_refusal(gateway, ci, operation, exc)

    pending: List[ComputeInstanceRecord] = []
    started = clock()
    with ThreadPoolExecutor(max_workers=settings.concurrency) as pool:
        for ci, refused in pool.map(send, targets):
            if refused is None:
                pending.append(ci)
                log.info("%s requested: %s", operation.name.capitalize(), ci.key)
            else:
                results[ci.key] = refused
                log.log(
                    logging.ERROR if refused.status == FAILED else logging.INFO, "%s not sent for %s: %s", operation.name.capitalize(), ci.key, refused.detail
                )
    log.info("Sent %d %s request(s) in %.1f s; confirming by listing their workspaces", len(pending), operation.name, clock() - started)
    results.update(_confirm(gateway, pending, operation, settings, clock, sleep))
    return results


def _classify_refusal(gateway: Any, ci: ComputeInstanceRecord, operation: Operation, exc: BaseException) -> OperationResult:
    from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

    if isinstance(exc, ResourceNotFoundError):
        return OperationResult(GONE, f"deleted since it was listed ({describe_error(exc)})", "Deleted")
    if isinstance(exc, ResourceExistsError):
        # 409: another operation holds the CI. Look again: it may already be where we want it.
        try:
            now = gateway.get_compute_instance(ci.workspace, ci.name)
        except ResourceNotFoundError:
            return OperationResult(GONE, "deleted since it was listed", "Deleted")
        except Exception as again:  # noqa: BLE001
            return OperationResult(FAILED, f"{operation.name} refused ({describe_error(exc)}) and re-reading failed ({describe_error(again)})", ci.state)
        if now.state == operation.goal_state or now.state in operation.heading_states:
            return OperationResult(ALREADY, f"already {now.state.lower()} (409 on {operation.name})", now.state)
        return OperationResult(BUSY, f"busy in state {now.state}: {describe_error(exc)}", now.state)
    return OperationResult(FAILED, f"{operation.name} refused: {describe_error(exc)}", ci.state)


def _confirm(
    gateway: Any,
    pending: List[ComputeInstanceRecord],
    operation: Operation,
    settings: BulkSettings,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> Dict[str, OperationResult]:
    results: Dict[str, OperationResult] = {}
    waiting: Dict[str, ComputeInstanceRecord] = {ci.key: ci for ci in pending}
    last_seen: Dict[str, str] = {ci.key: ci.state for ci in pending}
    last_error: Dict[str, str] = {}
    deadline = clock() + settings.confirm_timeout_seconds
    while waiting:
        if clock() >= deadline:
            break
        sleep(min(settings.confirm_interval_seconds, max(0.0, deadline - clock())))
        by_ws: Dict[str, List[ComputeInstanceRecord]] = defaultdict(list)
        workspaces: Dict[str, WorkspaceRef] = {}
        for ci in waiting.values():
            by_ws[ci.workspace.key].append(ci)
            workspaces[ci.workspace.key] = ci.workspace

        def look(ws_key: str, workspaces: Dict[str, WorkspaceRef] = workspaces) -> Tuple[str, Any]:
            try:
                return ws_key, {c.name.lower(): c for c in gateway.list_compute_instances(workspaces[ws_key])}
            except Exception as exc:  # noqa: BLE001 - try again next round
                return ws_key, exc

        with ThreadPoolExecutor(max_workers=settings.concurrency) as pool:
            for ws_key, listing in pool.map(look, list(by_ws)):
                if isinstance(listing, BaseException):
                    for ci in by_ws[ws_key]:
                        last_error[ci.key] = describe_error(listing)
                    log.warning("Could not list %s to confirm (will retry): %s", ws_key, describe_error(listing))
                    continue
                for ci in by_ws[ws_key]:
                    now = listing.get(ci.name.lower())
                    if now is None:
                        results[ci.key] = OperationResult(GONE, f"deleted while the {operation.name} was in progress", "Deleted")
                    elif now.state == operation.goal_state:
                        results[ci.key] = OperationResult(DONE, f"{operation.name} confirmed", now.state)
                    elif now.state in BAD_STATES:
                        results[ci.key] = OperationResult(FAILED, f"{operation.name} left it in state {now.state}", now.state)
                    else:
                        last_seen[ci.key] = now.state
                        continue
                    waiting.pop(ci.key, None)
    for key in waiting:
        note = f"; last listing error: {last_error[key]}" if key in last_error else ""
        results[key] = OperationResult(
            TIMEOUT, f"{operation.name} not confirmed within {settings.confirm_timeout_seconds:.0f} s (last seen {last_seen[key]}){note}", last_seen[key]
        )
    return results
