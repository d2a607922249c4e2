"""Fault tolerance of the nightly stop sweep: the real runbook, through azure-ai-ml and azure-core,
against a fake control plane that fails in the ways Azure does.

Every test checks the same invariants (:func:`check_run`, :func:`check_converges`):

- every CI that existed when the run began appears exactly once in the JSON summary, with a final
  outcome, unless its subscription or workspace is reported as unreadable;
- the exit status is non-zero exactly when something failed;
- running the sweep again (the outage over) converges: nothing stopped twice, nothing missed, and
  the second run sends stop requests only to CIs that are still running.

Most runs use the real ``AzureMLGateway`` with azure-core's retry back-off shortened
(``retry_backoff_factor``; the number of retries and which requests are retried are unchanged), so
that a test that exhausts azure-core's retries takes milliseconds instead of ~5 s per request.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Set

import pytest

from fake_azure import Fault
from fake_azure.ml import FakeMachineLearning, FakeWorkspace
from runbooks import stop_compute_instances
from shared.azure.ml_gateway import AzureMLGateway
from shared.models import OUTCOMES, WOULD_STOP
from shared.settings import encode_settings
from tests.conftest import SUB1, SUB2, fast_stop_settings
from tests.summary import summary_from

FINAL = set(OUTCOMES) - {WOULD_STOP}
FAST_RETRIES = {"retry_backoff_factor": 0.01}
_STOP_PATH = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.MachineLearningServices"
    r"/workspaces/(?P<ws>[^/]+)/computes/(?P<ci>[^/]+)/stop$",
    re.IGNORECASE,
)


# -- the fleet and one sweep ------------------------------------------------------------------


@dataclass
class Fleet:
    a: FakeWorkspace  # SUB1
    b: FakeWorkspace  # SUB1
    c: FakeWorkspace  # SUB2


def seed(ml: FakeMachineLearning) -> Fleet:
    """Two subscriptions, three workspaces, three running CIs each and one already stopped."""
    fleet = Fleet(ml.add_workspace(SUB1, "rg-a", "mlw-a"), ml.add_workspace(SUB1, "rg-a", "mlw-b"), ml.add_workspace(SUB2, "rg-c", "mlw-c"))
    for ws in (fleet.a, fleet.b, fleet.c):
        letter = ws.name[-1]
        for i in (1, 2, 3):
            ml.add_compute_instance(ws, f"ci-{letter}{i}")
        ml.add_compute_instance(ws, f"ci-{letter}-off", state="Stopped")
    return fleet


def ci_key(sub: str, rg: str, ws: str, ci: str) -> str:
    return f"{sub}/{rg}/{ws}/{ci}".lower()


def states(ml: FakeMachineLearning) -> Dict[str, str]:
    """Every compute instance the fake holds now → its state."""
    return {ci_key(ws.subscription_id, ws.resource_group, ws.name, ci.name): ci.state for ws, ci in ml.all_instances()}


def wait_for(ml: FakeMachineLearning, ws: FakeWorkspace, name: str, state: str, timeout: float = 5.0) -> None:
    """Wait until someone else's operation on a CI has finished."""
    deadline = time.monotonic() + timeout
    while ml.compute(ws.subscription_id, ws.resource_group, ws.name, name).state != state:
        assert time.monotonic() < deadline, f"{name} never reached {state}"
        time.sleep(0.02)


@dataclass
class Sweep:
    """One run of the runbook and what the fake saw of it."""

    code: int
    summary: Dict[str, Any]
    out: str
    before: Dict[str, str]  # CI → state when the run began
    stop_requests: List[str]  # CI of every stop POST the run sent, retries included
    accepted: Set[str]  # CIs whose stop POST the service carried out (202)

    @property
    def outcomes(self) -> Dict[str, str]:
        return {ci_key(r["subscription_id"], r["resource_group"], r["workspace"], r["compute_instance"]): r["outcome"] for r in self.summary["results"]}

    def result(self, name: str) -> Dict[str, Any]:
        (found,) = [r for r in self.summary["results"] if r["compute_instance"] == name]
        return found

    def posts(self, name: str) -> int:
        return sum(1 for k in self.stop_requests if k.endswith("/" + name))


def sweep(arm: Any, ml: FakeMachineLearning, now: Any, capsys: Any, *, stop: Optional[dict] = None, credential: Any = None, fast: bool = True) -> Sweep:
    """Run the real stop runbook once over both subscriptions."""
    before = states(ml)
    first_call = len(arm.calls)
    cred = credential or arm.credential()
    doc = {"scope": {"subscriptions": [SUB1, SUB2]}, "stop": fast_stop_settings(**(stop or {}))}
    kwargs = {"gateway": AzureMLGateway(cred, client_kwargs=FAST_RETRIES)} if fast else {}
    code = stop_compute_instances.main(["--settings-b64", encode_settings(doc), "--no-teams-summary"], credential=cred, now=now, **kwargs)
    out = capsys.readouterr().out
    requests, accepted = [], set()
    for call in arm.calls[first_call:]:
        m = _STOP_PATH.match(call.path)
        if call.method == "POST" and m:
            key = ci_key(m["sub"], m["rg"], m["ws"], m["ci"])
            requests.append(key)
            if call.status == 202:
                accepted.add(key)
    return Sweep(code, summary_from(out), out, before, requests, accepted)


# -- the invariants ---------------------------------------------------------------------------


def check_run(run: Sweep, *, failed: bool) -> None:
    """Every CI once with a final outcome (or its scope reported unreadable); exit status
    non-zero exactly when something failed; and whether it failed is what the test expects."""
    reported = [ci_key(r["subscription_id"], r["resource_group"], r["workspace"], r["compute_instance"]) for r in run.summary["results"]]
    assert len(reported) == len(set(reported)), f"reported twice: {sorted(k for k in reported if reported.count(k) > 1)}"
    assert set(reported) <= set(run.before), f"reported but never existed: {set(reported) - set(run.before)}"
    bad = {r["compute_instance"]: r["outcome"] for r in run.summary["results"] if r["outcome"] not in FINAL}
    assert not bad, f"not a final outcome: {bad}"
    unreadable = [e["scope"].split()[1].lower() for e in run.summary["errors"]]  # "subscription <id>" / "workspace <sub/rg/ws>"
    missing = {k for k in run.before if k not in reported and not any(k.startswith(scope + "/") for scope in unreadable)}
    assert not missing, f"lost: {missing}"
    something_failed = bool(run.summary["errors"]) or any(r["outcome"] == "failed" for r in run.summary["results"])
    assert (run.code != 0) == something_failed, f"exit code {run.code} but failed={something_failed}"
    assert run.summary["exit_code"] == run.code and run.summary["failed"] == something_failed
    assert something_failed == failed, f"expected failed={failed}:\n" + "\n".join(run.out.splitlines()[-30:])


def check_converges(first: Sweep, arm: Any, ml: FakeMachineLearning, now: Any, capsys: Any, heal: Callable[[], None] = lambda: None) -> Sweep:
    """End the outage, sweep again: nothing stopped twice, nothing missed, requests only to CIs
    still running; afterwards no CI is left running."""
    arm.clear_faults()
    heal()
    second = sweep(arm, ml, now, capsys)
    check_run(second, failed=False)
    running = {k for k, s in second.before.items() if s == "Running"}
    assert set(second.stop_requests) <= running, f"asked to stop CIs that were not running: {set(second.stop_requests) - running}"
    assert set(second.stop_requests) == running, f"missed: {running - set(second.stop_requests)}"
    assert not second.accepted & first.accepted, f"stopped twice: {second.accepted & first.accepted}"
    assert all(o != "stopped" or k not in second.stop_requests for k, o in first.outcomes.items())
    left = {k for k, s in states(ml).items() if s == "Running"}
    assert not left, f"still running after the second sweep: {left}"
    return second


# -- the faults -------------------------------------------------------------------------------


def test_baseline_all_running_cis_stop_and_a_second_run_does_nothing(arm, ml, now, capsys):
    seed(ml)
    first = sweep(arm, ml, now, capsys)
    check_run(first, failed=False)
    assert sorted(first.summary["counts"].items()) == [("already_stopped", 3), ("stopped", 9)]
    second = check_converges(first, arm, ml, now, capsys)
    assert second.stop_requests == [] and second.summary["counts"] == {"already_stopped": 12}


def test_token_expiring_mid_run_is_refreshed_by_azure_core(arm, ml, now, capsys):
    """Tokens that live 1 s, reported truthfully: BearerTokenCredentialPolicy refreshes ahead of
    expiry (its window is 300 s), so the server never sees an expired token."""
    seed(ml)
    ml.stop_seconds = 1.5  # the run outlives several tokens
    cred = arm.credential(lifetime=1.0)
    first = sweep(arm, ml, now, capsys, credential=cred, fast=False)
    check_run(first, failed=False)
    assert first.summary["counts"]["stopped"] == 9
    assert arm.count(status=401) == 0 and cred.requests > 3
    check_converges(first, arm, ml, now, capsys)


def test_token_rejected_before_its_reported_expiry_is_recovered(arm, ml, now, capsys):
    """The server expires tokens after 1 s while the client believes they last an hour (clock
    skew, a revoked token): ARM answers 401 with a Bearer challenge; azure-core drops the token but
    does not resend, so the gateway retries once with a fresh one."""
    seed(ml)
    ml.stop_seconds = 2.0  # confirmation listings go on well past the first tokens' expiry
    cred = arm.credential(lifetime=1.0, reported_lifetime=3600)
    first = sweep(arm, ml, now, capsys, credential=cred, fast=False)
    check_run(first, failed=False)
    assert arm.count(status=401) >= 1, "the run should have outlived a token"
    assert first.summary["counts"]["stopped"] == 9 and "401" in first.out
    check_converges(first, arm, ml, now, capsys)


def test_token_expiring_at_discovery_stop_and_confirmation(arm, ml, now, capsys):
    """All tokens expire at the worst moments: while discovery lists a workspace, while a stop is
    sent, while a confirmation listing runs. Each request gets one 401 and is retried, and the
    run is clean (before the gateway retried, the workspace was reported unreadable)."""
    seed(ml)
    arm.when("GET", "/workspaces/mlw-b/computes", arm.authority.expire_all)
    arm.when("POST", "/computes/ci-c2/stop", arm.authority.expire_all)
    arm.when("GET", "/workspaces/mlw-a/computes", arm.authority.expire_all, skip=1)
    first = sweep(arm, ml, now, capsys, fast=False)
    check_run(first, failed=False)
    # Every token in use expires, so requests in flight elsewhere may get their own 401 (and a
    # retry may meet the next expiry: the sweep's own transient handling takes it from there).
    assert arm.count(status=401) >= 3 and first.out.count("retrying once with a new token") >= 3
    assert first.summary["counts"] == {"already_stopped": 3, "stopped": 9}
    check_converges(first, arm, ml, now, capsys)


def test_forbidden_subscription_and_workspace_leave_the_rest_swept(arm, ml, now, capsys):
    fleet = seed(ml)
    arm.inject(Fault(403, None, f"/subscriptions/{SUB2}/", times=None, code="AuthorizationFailed", message="No access to the subscription."))
    arm.inject(Fault(403, "GET", "/workspaces/mlw-b/computes", times=None, code="AuthorizationFailed", message="No read on computes."))
    arm.inject(Fault(403, "POST", "/computes/ci-a3/stop", times=None, code="AuthorizationFailed", message="No computes/stop/action."))
    first = sweep(arm, ml, now, capsys)
    check_run(first, failed=True)
    assert first.code == 1
    scopes = sorted(e["scope"] for e in first.summary["errors"])
    assert scopes == [f"subscription {SUB2}", f"workspace {SUB1}/rg-a/mlw-b"]
    assert {r["compute_instance"]: r["outcome"] for r in first.summary["results"]} == {
        "ci-a1": "stopped",
        "ci-a2": "stopped",
        "ci-a3": "failed",
        "ci-a-off": "already_stopped",
    }
    assert "HTTP 403" in first.result("ci-a3")["detail"] and first.posts("ci-a3") == 1  # a 403 is not retried
    assert not any(k.startswith(f"{SUB2}/") or "/mlw-b/" in k for k in first.stop_requests)
    second = check_converges(first, arm, ml, now, capsys)
    assert second.posts("ci-a3") == 1 and second.posts("ci-c1") == 1 and second.posts("ci-b2") == 1
    assert fleet.c.computes["ci-c2"].state == "Stopped"


def test_ci_deleted_between_list_and_stop_or_while_stopping(arm, ml, now, capsys):
    fleet = seed(ml)
    arm.when("POST", "/computes/ci-a2/stop", lambda: ml.delete_compute(fleet.a, "ci-a2"))  # 404 on our stop
    # Listings of mlw-b: discovery, the re-read just before its stops, then confirmation: gone at confirmation.
    arm.when("GET", "/workspaces/mlw-b/computes", lambda: ml.delete_compute(fleet.b, "ci-b1"), skip=2)
    first = sweep(arm, ml, now, capsys)
    check_run(first, failed=False)
    a2, b1 = first.result("ci-a2"), first.result("ci-b1")
    assert a2["outcome"] == "skipped" and "deleted since it was listed" in a2["detail"] and first.posts("ci-a2") == 1
    assert b1["outcome"] == "skipped" and "deleted while the stop was in progress" in b1["detail"]
    assert first.summary["counts"]["stopped"] == 7
    second = check_converges(first, arm, ml, now, capsys)
    assert "ci-a2" not in {r["compute_instance"] for r in second.summary["results"]}


def test_ci_in_transition_answers_409(arm, ml, now, capsys):
    """Someone else acts on a CI between our listing and our stop: a restart (busy: skipped, and
    the next sweep stops it) and a stop (already stopping: confirmed, reported already_stopped)."""
    fleet = seed(ml)
    ml.start_seconds = 0.3
    arm.when("POST", "/computes/ci-a1/stop", lambda: ml.begin_operation(fleet.a, "ci-a1", "Restart"))
    arm.when("POST", "/computes/ci-c2/stop", lambda: ml.begin_operation(fleet.c, "ci-c2", "Stop"))
    first = sweep(arm, ml, now, capsys)
    check_run(first, failed=False)
    a1, c2 = first.result("ci-a1"), first.result("ci-c2")
    assert a1["outcome"] == "skipped" and "Restarting" in a1["detail"] and "409" in a1["detail"]
    assert c2["outcome"] == "already_stopped" and c2["state"] == "Stopped" and "409" in c2["detail"]
    assert first.posts("ci-a1") == 1 and first.posts("ci-c2") == 1
    second = check_converges(first, arm, ml, now, capsys, heal=lambda: wait_for(ml, fleet.a, "ci-a1", "Running"))
    assert second.stop_requests == [ci_key(SUB1, "rg-a", "mlw-a", "ci-a1")]  # back from its restart


def test_5xx_on_stop_posts(arm, ml, now, capsys):
    """azure-core retries a POST on 500/503/504 only (3 times); the sweep handles the rest:
    a 502 (re-sent by the sweep), a 5xx after the service had acted (its retry gets 409: still
    ours), and a 503 that never ends (failed after 3 attempts, stopped by the next run)."""
    seed(ml)
    arm.inject(Fault(500, "POST", "/computes/ci-a1/stop", times=3))
    arm.inject(Fault(502, "POST", "/computes/ci-a2/stop", times=1))
    arm.inject(Fault(500, "POST", "/computes/ci-a3/stop", times=1, after_handler=True))
    arm.inject(Fault(503, "POST", "/computes/ci-b1/stop", times=None))
    first = sweep(arm, ml, now, capsys)
    check_run(first, failed=True)
    assert first.result("ci-a1")["outcome"] == "stopped" and first.posts("ci-a1") == 4  # azure-core: 1 + 3 retries
    assert first.result("ci-a2")["outcome"] == "stopped" and first.posts("ci-a2") == 2  # the sweep re-sent it
    a3 = first.result("ci-a3")
    assert a3["outcome"] == "stopped" and "HTTP 500" in a3["detail"] and first.posts("ci-a3") == 2
    b1 = first.result("ci-b1")
    assert b1["outcome"] == "failed" and "after 3 attempt(s)" in b1["detail"] and "HTTP 503" in b1["detail"]
    assert first.posts("ci-b1") == 12 and b1["state"] == "Running"
    second = check_converges(first, arm, ml, now, capsys)
    assert second.stop_requests == [ci_key(SUB1, "rg-a", "mlw-b", "ci-b1")]


def test_stop_that_never_completes_times_out_as_failed(arm, ml, now, capsys):
    fleet = seed(ml)
    fleet.b.computes["ci-b2"].stuck = True
    # Long enough that the other CIs (stops take 0.05 s) confirm even on a loaded CI machine.
    first = sweep(arm, ml, now, capsys, stop={"confirm_timeout_seconds": 3.0})
    check_run(first, failed=True)
    b2 = first.result("ci-b2")
    assert b2["outcome"] == "failed" and "not confirmed within 3 s" in b2["detail"] and b2["state"] == "Stopping"
    assert first.summary["counts"] == {"already_stopped": 3, "failed": 1, "stopped": 8}
    second = check_converges(first, arm, ml, now, capsys)
    assert second.outcomes[ci_key(SUB1, "rg-a", "mlw-b", "ci-b2")] == "already_stopped" and second.posts("ci-b2") == 0


def test_confirm_listing_failing_transiently_then_for_good(arm, ml, now, capsys):
    """mlw-a's listings fail twice after discovery (each exhausting azure-core's 4 attempts), then
    work: confirmed. mlw-c's fail until the timeout: failed, with the listing error; the stops did
    happen, so the next run finds them stopped and sends nothing."""
    seed(ml)
    # skip=2: discovery's listing and the re-read just before the stops work; confirmation's fail.
    flaky = arm.inject(Fault(500, "GET", "/workspaces/mlw-a/computes", skip=2, times=8))
    down = arm.inject(Fault(503, "GET", "/workspaces/mlw-c/computes", skip=2, times=None))
    first = sweep(arm, ml, now, capsys, stop={"confirm_timeout_seconds": 1.0})
    check_run(first, failed=True)
    assert flaky.hits == 8 and down.hits >= 4
    assert all(first.result(f"ci-a{i}")["outcome"] == "stopped" for i in (1, 2, 3))
    for i in (1, 2, 3):
        c = first.result(f"ci-c{i}")
        assert c["outcome"] == "failed" and "not confirmed" in c["detail"] and "last listing error: HTTP 503" in c["detail"]
    assert "Could not list" in first.out
    second = check_converges(first, arm, ml, now, capsys)
    assert second.stop_requests == []


def test_discovery_listing_failing_past_azure_cores_retries_is_tried_again(arm, ml, now, capsys):
    """A workspace whose listing fails 4 times (azure-core's 1 + 3 attempts) would be left out,
    and its CIs left running for the night; discovery tries once more after a pause."""
    seed(ml)
    fault = arm.inject(Fault(503, "GET", "/workspaces/mlw-b/computes", times=4))
    first = sweep(arm, ml, now, capsys)
    check_run(first, failed=False)
    assert fault.hits == 4 and "trying once more" in first.out
    assert first.summary["counts"] == {"already_stopped": 3, "stopped": 9}
    check_converges(first, arm, ml, now, capsys)


@pytest.mark.parametrize("seed_value", [1, 2])
def test_random_transient_faults_lose_nothing(arm, ml, now, capsys, seed_value):
    """5% of all requests fail with 500/502/503 (seeded): every CI still ends stopped."""
    import random

    arm.rng = random.Random(seed_value)
    for w in range(6):
        ws = ml.add_workspace((SUB1, SUB2)[w % 2], "rg-r", f"mlw-r{w}")
        for i in range(6):
            ml.add_compute_instance(ws, f"ci-r{w}-{i}")
    ml.page_size = 4  # several pages per workspace: each page is a request that may fail
    faults = arm.inject_random(0.05)
    first = sweep(arm, ml, now, capsys)
    assert sum(f.hits for f in faults) > 0
    check_run(first, failed=False)
    assert first.summary["counts"] == {"stopped": 36}
    check_converges(first, arm, ml, now, capsys)
