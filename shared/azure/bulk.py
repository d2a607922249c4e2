"""Start or stop many compute instances at once: send every request (bounded concurrency, paced
per subscription), then confirm them together by listing each affected workspace.

Used by the stop sweep and the morning start. Each CI ends with one :class:`OperationResult`.

How a run is scheduled (one dispatcher thread, a bounded pool of workers):

- **Per-subscription lanes.** ARM's write budget is per subscription, so each subscription has its
  own queue and token bucket. The dispatcher takes a token without blocking and serves whichever
  subscription has one: a subscription that is out of tokens never holds up the others (a shared
  queue would let 500 CIs of one subscription block the workers while the rest sit idle).
- **Workspace order within a lane.** A workspace's CIs are sent together, so the workspace can be
  confirmed (one list call) while later workspaces are still being sent.
- **Confirmation overlaps sending.** A workspace is listed ``confirm_interval_seconds`` after its
  first request and then at that interval while any of its CIs is unconfirmed: one read confirms
  all of them, instead of one poll per CI (ARM's read budget is 25/s per subscription).
- **What protects a CI is read again just before its request** (with ``precheck``): the workspace
  is listed once, just before its first request goes out (re-listed when that listing is older than
  ``RECHECK_MAX_AGE_SECONDS``), and ``precheck`` judges each CI as it is now. An exemption recorded
  after discovery (someone pressing "keep running" at the stop time) is honoured; the cost is one
  read per workspace, not one per CI.
- **Transient failures are retried here too.** azure-core retries a POST only on 500/503/504; a
  502, a connection error, a 429 past azure-core's retries or a 401 (expired token) comes back as
  an exception. Such a request may still have reached the service, so the CI is read first: if it
  is already on its way, it is confirmed like any other; if not, it is re-sent later (up to
  ``send_attempts`` in all) and only then reported as failed.
- **Errors that arrive late.** A start/stop of a CI in the wrong state is accepted (202) and fails
  later as an operation (docs/platform.md, "Azure ML compute instances": wrong-state fails late).
  So a CI seen in the goal state without having been seen on its way, or seen neither there nor on
  its way, has its operation (the 202's Location) read once before it is called done, already
  there, busy or failed. A CI that got there by its own schedule or idle shutdown
  (``lastOperation.operationTrigger``) is reported as such, not as ours.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple

from shared.azure.errors import describe_error, is_transient
from shared.azure.ml_gateway import FAILED_OP, MLGateway, OperationStatus
from shared.azure.pacing import PerSubscriptionPacer
from shared.errors import ConflictError, NotFoundError
from shared.models import (
    ALREADY_RUNNING,
    ALREADY_STOPPED,
    PLATFORM_TRIGGERS,
    SKIPPED,
    STARTED,
    STOPPED,
    TRIGGER_IDLE_SHUTDOWN,
    WOULD_START,
    WOULD_STOP,
    ComputeInstanceRecord,
    WorkspaceRef,
)
from shared.models import FAILED as FAILED_OUTCOME
from shared.report import CIResult, RunReport
from shared.sections import BulkSettings
from shared.tags import Exemption

log = logging.getLogger(__name__)

DONE = "done"  # the operation completed (confirmed by listing)
ALREADY = "already"  # nothing to do: the CI was already in (or heading to) the goal state
GONE = "gone"  # the CI was deleted meanwhile (404)
BUSY = "busy"  # another operation holds the CI (409) and it is not heading to the goal
FAILED = "failed"  # refused or failed; detail says why
TIMEOUT = "timeout"  # requested but not confirmed in time
SPARED = "spared"  # not sent: the check just before sending (precheck) said to leave it alone

BAD_STATES = ("CreateFailed", "SetupFailed", "UserSetupFailed", "Unusable")
PROGRESS_LOG_SECONDS = 30.0
DEFAULT_RETRY_DELAY_SECONDS = 2.0
# A workspace's re-read (precheck) serves its CIs' requests while it is younger than this: the
# requests of one workspace leave together, so this is one read per workspace in practice, and a
# paced or retried request still never goes out on a listing older than a few seconds.
RECHECK_MAX_AGE_SECONDS = 5.0

# ``precheck(listed, current)``: ``current`` is the CI as re-read just before its request (None: no
# longer there). None sends the request; an OperationResult is the CI's result, nothing sent.
Precheck = Callable[[ComputeInstanceRecord, Optional[ComputeInstanceRecord]], Optional["OperationResult"]]


@dataclass(frozen=True)
class Operation:
    """What to do, what success looks like, and the report's words for each result."""

    name: str  # "stop" or "start"
    goal_state: str  # "Stopped" / "Running"
    heading_states: Tuple[str, ...]  # states meaning "already on its way" ("Stopping",)
    done: str  # outcome word when it was done ("stopped")
    already: str  # outcome word when there was nothing to do ("already_stopped")
    would: str  # outcome word in a dry run ("would_stop")

    def outcome(self, status: str) -> str:
        """The report's outcome word for a bulk status."""
        return {DONE: self.done, ALREADY: self.already, GONE: SKIPPED, BUSY: SKIPPED}.get(status, FAILED_OUTCOME)


STOP = Operation("stop", "Stopped", ("Stopping",), STOPPED, ALREADY_STOPPED, WOULD_STOP)
START = Operation("start", "Running", ("Starting",), STARTED, ALREADY_RUNNING, WOULD_START)


class PlannedAction(Protocol):
    """What a capability's pure policy decided for one CI (stop's Decision, start's StartDecision)."""

    @property
    def act(self) -> bool: ...

    @property
    def outcome(self) -> str: ...

    @property
    def reason(self) -> str: ...

    @property
    def exemption_record(self) -> Optional[Exemption]: ...


def sweep(
    gateway: MLGateway,
    report: RunReport,
    decisions: Sequence[Tuple[ComputeInstanceRecord, PlannedAction]],
    operation: Operation,
    settings: BulkSettings,
    *,
    dry_run: bool,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    precheck: Optional[Precheck] = None,
    fresh: Optional[Mapping[str, PlannedAction]] = None,
) -> None:
    """The skeleton the nightly stop and the morning start share: report every CI the plan leaves
    alone with its own outcome, then act on the rest in bulk (or, in a dry run, report what would
    happen), each CI ending with exactly one row in ``report``.

    With ``precheck`` (see :func:`run_bulk`), a CI it spares is reported with the decision it
    stored in ``fresh``: what protects the CI now, not what the plan saw."""
    to_act = [(ci, d) for ci, d in decisions if d.act]
    for ci, d in decisions:
        if not d.act:
            report.results.append(CIResult.for_ci(ci, d.outcome, d.reason, d.exemption_record))
    log.info("Plan: %d to %s, %d left alone", len(to_act), operation.name, len(decisions) - len(to_act))
    if dry_run:
        for ci, d in to_act:
            report.results.append(CIResult.for_ci(ci, operation.would, f"would {operation.name}; {d.reason}", d.exemption_record))
        return
    outcomes = run_bulk(gateway, [ci for ci, _ in to_act], operation, settings, clock=clock, sleep=sleep, precheck=precheck)
    for ci, d in to_act:
        res = outcomes[ci.key]
        if res.status == SPARED:
            late = (fresh or {})[ci.key]
            detail = f"{late.reason} (seen just before its {operation.name}; {res.detail})"
            report.results.append(CIResult.for_ci(ci, late.outcome, detail, late.exemption_record, state=res.final_state))
            continue
        detail = f"{res.detail}; {d.reason}" if res.status == DONE else res.detail
        report.results.append(CIResult.for_ci(ci, operation.outcome(res.status), detail, d.exemption_record, state=res.final_state))




@dataclass(frozen=True)
class OperationResult:
    status: str
    detail: str
    final_state: str


def run_bulk(
    gateway: MLGateway,
    targets: List[ComputeInstanceRecord],
    operation: Operation,
    settings: BulkSettings = BulkSettings(),
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    precheck: Optional[Precheck] = None,
) -> Dict[str, OperationResult]:
    """Run ``operation`` on every target; returns a result per ``ComputeInstanceRecord.key``.

    With ``precheck``, each CI is judged again, as re-read just before its request (see the module
    docstring); a CI whose workspace cannot be re-read is not sent, but retried like a transient
    failure and in the end reported failed.
    """
    if not targets:
        return {}
    run = _BulkRun(gateway, operation, settings, clock, sleep)
    run.precheck = precheck
    return run.run(targets)


# -- internals -------------------------------------------------------------------------------


@dataclass
class _Send:
    """One CI's request, queued (again, after a transient failure)."""

    ci: ComputeInstanceRecord
    attempt: int = 1
    not_before: float = 0.0
    last_error: str = ""


@dataclass
class _Waiting:
    """A CI whose request was accepted, waiting to be seen in the goal state."""

    ci: ComputeInstanceRecord
    success: str  # DONE, or ALREADY when someone else's operation was already taking it there
    note: str
    deadline: float
    last_seen: str
    seen_heading: bool = False
    location: Optional[str] = None  # the operation's URL (202 Location), read once when the listing is ambiguous
    op: Optional[OperationStatus] = None


@dataclass
class _Watch:
    """A workspace with CIs waiting for confirmation."""

    ref: WorkspaceRef
    due: float
    waiting: Dict[str, _Waiting] = field(default_factory=dict)
    listing: bool = False
    last_error: str = ""


@dataclass(frozen=True)
class _SendOutcome:
    """What a worker learnt from sending one request (exactly one of the fields is set)."""

    final: Optional[OperationResult] = None  # the CI's result, no confirmation needed
    confirm: Optional[Tuple[str, str]] = None  # (success status, note): watch it until it gets there
    retry: Optional[str] = None  # transient failure, not on its way: send again (error detail)
    location: Optional[str] = None  # with confirm: the operation's URL


_ACCEPTED = _SendOutcome(confirm=(DONE, ""))


class _BulkRun:
    def __init__(self, gateway: MLGateway, operation: Operation, settings: BulkSettings, clock: Callable[[], float], sleep: Callable[[float], None]):
        self.gateway = gateway
        self.op = operation
        self.settings = settings
        self.clock = clock
        self.sleep = sleep
        self.pacer = PerSubscriptionPacer(settings.write_burst, settings.writes_per_second, clock=clock, sleep=sleep)
        self.request = gateway.request_stop if operation.name == "stop" else gateway.request_start
        self.results: Dict[str, OperationResult] = {}
        self.watches: Dict[str, _Watch] = {}
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.retries: Dict[str, List[_Send]] = {}  # per subscription: requests to send again later
        self.in_flight = 0  # tasks in the pool (requests and listings)
        self.sending = 0  # of which requests
        self.sent = 0
        self.resent = 0
        self.precheck: Optional[Precheck] = None
        self.rechecks = 0  # workspace listings made for precheck
        self._fresh: Dict[str, Tuple[float, Dict[str, ComputeInstanceRecord]]] = {}
        self._fresh_locks: Dict[str, threading.Lock] = {}
        self._fresh_guard = threading.Lock()
        self._prefetched: set = set()  # workspace keys whose listing was started ahead of their requests

    # -- the dispatcher ----------------------------------------------------------------------
    def run(self, targets: List[ComputeInstanceRecord]) -> Dict[str, OperationResult]:
        lanes: Dict[str, Deque[_Send]] = {}
        for ci in sorted(targets, key=lambda c: (c.workspace.key.lower(), c.name.lower())):
            lanes.setdefault(ci.workspace.subscription_id.lower(), deque()).append(_Send(ci))
        retries = self.retries = {sub: [] for sub in lanes}
        order = list(lanes)
        total = len(targets)
        started = self.clock()
        next_progress = started + PROGRESS_LOG_SECONDS
        all_sent_logged = False
        log.info(
            "%s: %d compute instance(s) in %d subscription(s), paced at %.1f writes/s per subscription (burst %d), %d at a time",
            self.op.name.capitalize(),
            total,
            len(lanes),
            self.settings.writes_per_second,
            self.settings.write_burst,
            self.settings.concurrency,
        )
        with ThreadPoolExecutor(max_workers=self.settings.concurrency, thread_name_prefix="bulk") as pool:
            while any(lanes.values()) or any(retries.values()) or self.watches or self.in_flight:
                now = self.clock()
                wake = math.inf
                # Confirmation first: a listing can settle many CIs at once.
                for key, watch in self.watches.items():
                    if watch.listing:
                        continue
                    due = min(watch.due, min(w.deadline for w in watch.waiting.values()))
                    if due > now:
                        wake = min(wake, due)
                    elif self.in_flight < self.settings.concurrency:
                        watch.listing = True
                        checks = [(w.ci.name.lower(), w.location, w.seen_heading) for w in watch.waiting.values() if w.location and w.op is None]
                        self._submit(pool, self._list, key, watch.ref, checks)
                # Then requests: round-robin over the subscriptions that have a token now.
                order = order[1:] + order[:1]
                progress = True
                while progress and self.in_flight < self.settings.concurrency:
                    progress = False
                    for sub in order:
                        item, ready_at = _next_ready(lanes[sub], retries[sub], now)
                        if item is None:
                            wake = min(wake, ready_at)
                            continue
                        wait = self.pacer.try_acquire(sub)
                        if wait > 0:
                            wake = min(wake, now + wait)
                            continue
                        _take(lanes[sub], retries[sub], item)
                        self._submit(pool, self._send, item)
                        if self.precheck is not None:
                            self._prefetch_next(pool, lanes[sub], item)
                        progress = True
                        if self.in_flight >= self.settings.concurrency:
                            break
                if not all_sent_logged and not self.sending and not any(lanes.values()) and not any(retries.values()):
                    all_sent_logged = True
                    log.info(
                        "Sent %d %s request(s) (%d re-sent after transient errors) in %.1f s; confirming by listing their workspaces",
                        self.sent,
                        self.op.name,
                        self.resent,
                        self.clock() - started,
                    )
                if now >= next_progress:
                    next_progress = now + PROGRESS_LOG_SECONDS
                    waiting = sum(len(w.waiting) for w in self.watches.values())
                    log.info("Progress: %d/%d sent, %d waiting for confirmation, %d finished", self.sent, total, waiting, len(self.results))
                self._wait(wake)
        if self.precheck is not None:
            log.info("Re-read %d workspace listing(s) just before sending, to honour changes made since discovery", self.rechecks)
        log.info("%s finished for %d compute instance(s) in %.1f s", self.op.name.capitalize(), len(self.results), self.clock() - started)
        return self.results

    def _submit(self, pool: ThreadPoolExecutor, fn: Callable[..., Any], *args: Any) -> None:
        self.in_flight += 1
        self.sending += isinstance(args[0], _Send)

        def task() -> None:
            try:
                event = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - a bug must not strand the dispatcher
                event = ("crash", args, exc)
            self.events.put(event)

        pool.submit(task)

    def _wait(self, wake: float) -> None:
        """Block until a worker reports or the next timer (token, retry, listing) is due; then
        handle everything that has been reported."""
        timeout = max(0.0, wake - self.clock()) if wake < math.inf else None
        if self.in_flight == 0:
            if timeout is None:
                return
            self.sleep(timeout)  # nothing in flight: only a timer can be next (honours an injected clock)
            return
        if timeout is not None and timeout <= 0:
            self._drain(block=False)
            return
        self._drain(block=True, timeout=timeout)

    def _drain(self, block: bool, timeout: Optional[float] = None) -> None:
        try:
            event = self.events.get(block=block, timeout=timeout)
        except queue.Empty:
            return
        while True:
            self.in_flight -= 1
            self._handle(event)
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return

    def _handle(self, event: Tuple[Any, ...]) -> None:
        kind = event[0]
        if kind == "sent":
            _, item, outcome = event
            self._after_send(item, outcome)
        elif kind == "listed":
            _, key, listing, at, ops = event
            self._after_list(key, listing, at, ops)
        elif kind == "prefetched":
            pass  # the listing is in the cache for the workspace's requests
        else:  # "crash": report it against what the task was about, never lose a CI
            _, args, exc = event
            if isinstance(args[0], WorkspaceRef):
                return  # a prefetch: the requests list the workspace themselves
            if isinstance(args[0], _Send):
                self._after_send(args[0], _SendOutcome(final=OperationResult(FAILED, f"{self.op.name} failed: {describe_error(exc)}", args[0].ci.state)))
            else:
                self._after_list(args[0], exc, self.clock(), {})

    # -- sending -----------------------------------------------------------------------------
    def _send(self, item: _Send) -> Tuple[str, _Send, _SendOutcome]:
        """Worker: (re-check, then) send one request and classify what came back."""
        if self.precheck is not None:
            try:
                current = self._current(item.ci)
            except Exception as exc:  # noqa: BLE001 - unverified means unsent: retried, then failed
                why = f"not sent: could not re-read workspace {item.ci.workspace.key} just before the {self.op.name} ({describe_error(exc)})"
                return "sent", item, _SendOutcome(retry=why)
            verdict = self.precheck(item.ci, current)
            if verdict is not None:
                return "sent", item, _SendOutcome(final=verdict)
        try:
            location = self.request(item.ci.workspace, item.ci.name)
            return "sent", item, _SendOutcome(confirm=(DONE, ""), location=location if isinstance(location, str) else None)
        except Exception as exc:  # noqa: BLE001 - every failure becomes this CI's outcome
            return "sent", item, self._classify_failure(item.ci, exc)

    def _current(self, ci: ComputeInstanceRecord) -> Optional[ComputeInstanceRecord]:
        """Worker: ``ci`` as its workspace lists it now (one listing shared by the workspace's requests)."""
        return self._listing(ci.workspace).get(ci.name.lower())

    def _listing(self, workspace: WorkspaceRef) -> Dict[str, ComputeInstanceRecord]:
        """Worker: the workspace's CIs by lower-case name, listed at most ``RECHECK_MAX_AGE_SECONDS`` ago."""
        key = workspace.key.lower()
        with self._fresh_guard:
            lock = self._fresh_locks.setdefault(key, threading.Lock())
        with lock:  # the workspace's other workers wait for this one listing instead of making their own
            cached = self._fresh.get(key)
            if cached is None or self.clock() - cached[0] > RECHECK_MAX_AGE_SECONDS:
                listing = {c.name.lower(): c for c in self.gateway.list_compute_instances(workspace)}
                cached = self._fresh[key] = (self.clock(), listing)
                self.rechecks += 1
        return cached[1]

    def _prefetch_next(self, pool: ThreadPoolExecutor, lane: Deque[_Send], sent: _Send) -> None:
        """Dispatcher: when a workspace's first request goes out, list the lane's next workspace
        meanwhile, so that its requests find their re-read ready instead of waiting for it."""
        if not lane or lane[0].ci.workspace.key.lower() == sent.ci.workspace.key.lower():
            return
        upcoming = lane[0].ci.workspace
        if upcoming.key.lower() in self._prefetched:
            return
        self._prefetched.add(upcoming.key.lower())
        self._submit(pool, self._prefetch, upcoming)

    def _prefetch(self, workspace: WorkspaceRef) -> Tuple[str, str]:
        """Worker: fill the re-read cache for ``workspace``; a failure is left to its requests."""
        try:
            self._listing(workspace)
        except Exception as exc:  # noqa: BLE001 - each request re-lists and reports on its own
            log.debug("Prefetching %s failed: %s", workspace.key, describe_error(exc))
        return "prefetched", workspace.key

    def _after_send(self, item: _Send, outcome: _SendOutcome) -> None:
        ci = item.ci
        self.sending -= 1
        self.sent += item.attempt == 1
        self.resent += item.attempt > 1
        if outcome.final is not None:
            self.results[ci.key] = outcome.final
            level = logging.ERROR if outcome.final.status == FAILED else logging.INFO
            log.log(level, "%s not sent for %s: %s", self.op.name.capitalize(), ci.key, outcome.final.detail)
        elif outcome.confirm is not None:
            success, note = outcome.confirm
            now = self.clock()
            watch = self.watches.get(ci.workspace.key)
            if watch is None:
                watch = self.watches[ci.workspace.key] = _Watch(ci.workspace, due=now + self.settings.confirm_interval_seconds)
            deadline = now + self.settings.confirm_timeout_seconds
            watch.waiting[ci.key] = _Waiting(ci, success, note, deadline, ci.state, location=outcome.location)
            log.debug("%s requested: %s", self.op.name.capitalize(), ci.key)
        else:
            error = outcome.retry or "unknown error"
            if item.attempt >= self.settings.send_attempts:
                detail = f"{self.op.name} failed after {item.attempt} attempt(s): {error}"
                self.results[ci.key] = OperationResult(FAILED, detail, ci.state)
                log.error("%s %s", detail, ci.key)
                return
            base = self.settings.retry_delay_seconds
            if base is None:
                base = min(DEFAULT_RETRY_DELAY_SECONDS, self.settings.confirm_interval_seconds)
            delay = base * (2 ** (item.attempt - 1))
            log.warning("%s for %s failed (%s); sending again in %.0f s", self.op.name.capitalize(), ci.key, error, delay)
            self._requeue(_Send(ci, item.attempt + 1, self.clock() + delay, error))

    def _requeue(self, item: _Send) -> None:
        self.retries.setdefault(item.ci.workspace.subscription_id.lower(), []).append(item)

    def _classify_failure(self, ci: ComputeInstanceRecord, exc: BaseException) -> _SendOutcome:
        """Worker: what a failed request means for this CI (may read the CI once)."""
        op = self.op
        if isinstance(exc, NotFoundError):
            # Only a CI that is really gone is "deleted": a 404 from a CI that is still there (a
            # routing or API-version problem) must not pass as a harmless outcome.
            now, again = self._read(ci)
            if isinstance(again, NotFoundError):
                return _SendOutcome(final=OperationResult(GONE, f"deleted since it was listed ({describe_error(exc)})", "Deleted"))
            if now is not None:
                detail = f"{op.name} answered {describe_error(exc)} although the compute instance exists (state {now.state})"
                return _SendOutcome(final=OperationResult(FAILED, detail, now.state))
            detail = f"{op.name} answered {describe_error(exc)} and re-reading the compute instance failed ({describe_error(again) if again else 'no answer'})"
            return _SendOutcome(final=OperationResult(FAILED, detail, ci.state))
        if isinstance(exc, ConflictError):
            # 409: another operation holds the CI. Look again: it may already be where we want it.
            now, again = self._read(ci)
            if again is not None:
                if isinstance(again, NotFoundError):
                    return _SendOutcome(final=OperationResult(GONE, "deleted since it was listed", "Deleted"))
                detail = f"{op.name} refused ({describe_error(exc)}) and re-reading failed ({describe_error(again)})"
                return _SendOutcome(final=OperationResult(FAILED, detail, ci.state))
            assert now is not None
            ours = [s for s in getattr(exc, "earlier_statuses", ()) if s >= 500]
            if ours and (now.state == op.goal_state or now.state in op.heading_states):
                # azure-core re-sent our request after a 5xx: that first attempt is what did it.
                return _SendOutcome(confirm=(DONE, f"accepted by an attempt that got HTTP {ours[0]}; its retry got 409"))
            if now.state == op.goal_state:
                return _SendOutcome(final=OperationResult(ALREADY, f"already {now.state.lower()}{_by_platform(op, now)} (409 on {op.name})", now.state))
            if now.state in op.heading_states:
                # Someone else's operation is taking it there: confirm that it arrives.
                return _SendOutcome(confirm=(ALREADY, f"was already {now.state.lower()} when our {op.name} arrived (409)"))
            return _SendOutcome(final=OperationResult(BUSY, f"busy in state {now.state}: {describe_error(exc)}", now.state))
        if not is_transient(exc):
            return _SendOutcome(final=OperationResult(FAILED, f"{op.name} refused: {describe_error(exc)}", ci.state))
        # Transient: the service may have acted on it anyway (a gateway 5xx after the RP accepted).
        now, again = self._read(ci)
        if now is not None and (now.state == op.goal_state or now.state in op.heading_states):
            return _SendOutcome(confirm=(DONE, f"accepted although the response was {describe_error(exc)}"))
        if isinstance(again, NotFoundError):
            return _SendOutcome(final=OperationResult(GONE, "deleted since it was listed", "Deleted"))
        return _SendOutcome(retry=describe_error(exc))

    def _read(self, ci: ComputeInstanceRecord) -> Tuple[Optional[ComputeInstanceRecord], Optional[BaseException]]:
        try:
            return self.gateway.get_compute_instance(ci.workspace, ci.name), None
        except Exception as exc:  # noqa: BLE001
            return None, exc

    # -- confirming --------------------------------------------------------------------------
    def _list(self, key: str, ref: WorkspaceRef, checks: Sequence[Tuple[str, str, bool]] = ()) -> Tuple[str, str, Any, float, Dict[str, OperationStatus]]:
        """Worker: list one workspace (an exception is returned, not raised), then read once the
        operation of each CI the listing leaves ambiguous (see the module doc)."""
        ops: Dict[str, OperationStatus] = {}
        try:
            listing: Any = {c.name.lower(): c for c in self.gateway.list_compute_instances(ref)}
        except Exception as exc:  # noqa: BLE001 - try again at the next interval
            return "listed", key, exc, self.clock(), ops
        for name, location, seen_heading in checks:
            now = listing.get(name)
            if now is None or now.state in self.op.heading_states or (now.state == self.op.goal_state and seen_heading):
                continue  # gone, on its way, or seen on its way and arrived: the listing settles it
            try:
                ops[name] = self.gateway.operation_status(ref.subscription_id, location)
            except Exception as exc:  # noqa: BLE001 - the listing still decides, as before
                log.debug("Could not read the %s operation of %s/%s: %s", self.op.name, key, name, describe_error(exc))
        return "listed", key, listing, self.clock(), ops

    def _after_list(self, key: str, listing: Any, at: float, ops: Optional[Dict[str, OperationStatus]] = None) -> None:
        watch = self.watches[key]
        watch.listing = False
        watch.due = at + self.settings.confirm_interval_seconds
        if isinstance(listing, BaseException):
            watch.last_error = describe_error(listing)
            log.warning("Could not list %s to confirm (will retry): %s", key, watch.last_error)
        for ci_key, w in list(watch.waiting.items()):
            if ops and w.ci.name.lower() in ops:
                w.op = ops[w.ci.name.lower()]
            result = None if isinstance(listing, BaseException) else self._judge(w, listing.get(w.ci.name.lower()))
            if result is None and at >= w.deadline:
                note = f"; last listing error: {watch.last_error}" if watch.last_error else ""
                result = OperationResult(
                    TIMEOUT, f"{self.op.name} not confirmed within {self.settings.confirm_timeout_seconds:g} s (last seen {w.last_seen}){note}", w.last_seen
                )
            if result is not None:
                self.results[ci_key] = result
                del watch.waiting[ci_key]
                if result.status in (FAILED, TIMEOUT):
                    log.error("%s of %s: %s", self.op.name.capitalize(), ci_key, result.detail)
        if not watch.waiting:
            del self.watches[key]

    def _judge(self, w: _Waiting, now: Optional[ComputeInstanceRecord]) -> Optional[OperationResult]:
        """The final result if this listing settles the CI, else None (and remember what was seen)."""
        op = self.op
        if now is None:
            return OperationResult(GONE, f"deleted while the {op.name} was in progress", "Deleted")
        failed_op = w.op is not None and w.op.state == FAILED_OP
        if now.state == op.goal_state:
            by_platform = _by_platform(op, now)
            if failed_op:
                assert w.op is not None
                # Accepted, then refused as an operation: it was already there (or got there some other way).
                return OperationResult(ALREADY, f"already {now.state.lower()}{by_platform}; our {op.name} was refused ({w.op.code})", now.state)
            if by_platform and (w.op is None or w.success == ALREADY):
                return OperationResult(ALREADY, f"already {now.state.lower()}{by_platform}", now.state)
            detail = f"{op.name} confirmed" + (f" ({w.note})" if w.note else "")
            if w.success == ALREADY:
                detail = f"already {now.state.lower()}: {w.note}" if w.note else f"already {now.state.lower()}"
            return OperationResult(w.success, detail, now.state)
        if failed_op and now.state not in op.heading_states:
            assert w.op is not None
            if w.op.wrong_state:
                return OperationResult(BUSY, f"in state {now.state}: the service refused the {op.name} ({w.op.code})", now.state)
            return OperationResult(FAILED, f"{op.name} failed: {w.op.code}" + (f" {w.op.message}" if w.op.message else ""), now.state)
        if now.state in BAD_STATES:
            return OperationResult(FAILED, f"{op.name} left it in state {now.state}", now.state)
        if now.state in op.heading_states:
            w.seen_heading = True
        elif w.seen_heading:
            # It was on its way and came back: the operation failed on the service side.
            return OperationResult(FAILED, f"{op.name} did not complete: was {w.last_seen}, now {now.state}", now.state)
        w.last_seen = now.state
        return None


def _next_ready(lane: Deque[_Send], retries: List[_Send], now: float) -> Tuple[Optional[_Send], float]:
    """The next request of one subscription that may go now (retries first), or when one may."""
    ready_at = math.inf
    for item in retries:
        if item.not_before <= now:
            return item, now
        ready_at = min(ready_at, item.not_before)
    if lane:
        return lane[0], now
    return None, ready_at


def _take(lane: Deque[_Send], retries: List[_Send], item: _Send) -> None:
    if lane and lane[0] is item:
        lane.popleft()
    else:
        retries.remove(item)


def _by_platform(op: Operation, ci: ComputeInstanceRecord) -> str:
    """`` by its own schedule`` / `` by its own idle shutdown`` when the CI's last operation of this
    kind was the platform's own (lastOperation.operationTrigger), else empty."""
    if (ci.last_operation or "").lower() != op.name or ci.last_operation_trigger not in PLATFORM_TRIGGERS:
        return ""
    return " by its own idle shutdown" if ci.last_operation_trigger == TRIGGER_IDLE_SHUTDOWN else " by its own schedule"
