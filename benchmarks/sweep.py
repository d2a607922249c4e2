"""Scale benchmark of the nightly stop sweep: the real runbook against a large fake fleet.

    ./dev bench            # 2,000 CIs / 200 workspaces / 4 subscriptions (about 2 minutes)
    ./dev bench --quick    # 200 CIs / 20 workspaces: a smoke run for CI (about 30 s)

What runs: ``runbooks.stop_compute_instances.main`` with ``credential=server.credential()`` and its
settings in ``--settings-b64``, through azure-ai-ml and azure-core, against ``fake_azure`` set up
like a large estate: per-request latency, stops that take ``--stop-seconds``, ARM's write token
bucket per subscription (429 + Retry-After past it) and a rate of transient 5xx (seeded).

What it prints: the sweep's wall time and the lower bound these parameters allow (with the
formula); the naive serial stop-and-wait baseline (measured on a few CIs, extrapolated); peak
memory of the sweep process; the runbook's cold start; the size of the job output; and PASS/FAIL
per target. Exit code 0 when every target passes.

The job-output target at 10,000 CIs / 1,000 workspaces / 20 subscriptions (``--output-cis``): the
real stop and start runbooks (``main()``, their real report, log and summary lines, the prices from
the fake Retail Prices API) over a SHORTCUT fleet: an in-memory gateway in place of azure-ai-ml and
the fake ARM (zero latency, no throttling, stops and starts that complete at once), so that the run
takes seconds; only the printed output is measured, never the speed. The fleet is mixed (stopped,
exempt, running a job, in transition, stops refused; for the start, mostly not opted in) so that
the non-routine lines printed one by one are in it too.

Each measurement runs in a fresh subprocess of this script (``--child ...``) so that memory and
import times are the sweep's own.
"""

from __future__ import annotations

import time

_PROCESS_START = time.monotonic()  # before anything else is imported: the cold-start reference

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from typing import Any, Dict, List, Optional, Tuple  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

RESULT_MARKER = "BENCH_RESULT "
MIB = 1024 * 1024
JOB_STREAM_LIMIT = 1 * MIB  # Azure Automation keeps 1 MiB per job stream (Learn: automation-subscription-limits-faq)
TARGET_RATIO = 1.5
TARGET_RSS_MB = 300.0


# -- the fleet ----------------------------------------------------------------------------------


def subscription_ids(count: int) -> List[str]:
    return [f"{i:08x}-0000-4000-8000-{i:012x}" for i in range(1, count + 1)]


def build_fake(cfg: Dict[str, Any]) -> Tuple[Any, Any, Dict[str, int]]:
    """A fake control plane holding ``cfg['cis']`` running CIs; returns (server, ml, CIs per subscription)."""
    from fake_azure import FakeArmServer
    from fake_azure.ml import FakeMachineLearning
    from fake_azure.retail_prices import FakeRetailPrices

    server = FakeArmServer(latency=cfg["latency"], seed=cfg["seed"])
    ml = FakeMachineLearning(server, stop_seconds=cfg["stop_seconds"])
    FakeRetailPrices(server)  # the runbook prices what it stopped, as in production
    subs = subscription_ids(cfg["subscriptions"])
    workspaces = [ml.add_workspace(subs[w % len(subs)], f"rg-ml-{w % len(subs)}", f"mlw-{w:04d}") for w in range(cfg["workspaces"])]
    per_sub: Dict[str, int] = {s: 0 for s in subs}
    for i in range(cfg["cis"]):
        ws = workspaces[i % len(workspaces)]
        ml.add_compute_instance(ws, f"ci-{i:05d}", vm_size="STANDARD_DS3_V2")
        per_sub[ws.subscription_id] += 1
    server.throttle_writes(cfg["write_bucket"], cfg["write_refill"])
    if cfg["fault_rate"] > 0:
        server.inject_random(cfg["fault_rate"], (500, 502, 503), path_contains="/subscriptions/")
    return server, ml, per_sub


def sweep_settings(cfg: Dict[str, Any]) -> Dict[str, Any]:
    stop: Dict[str, Any] = {"confirm_interval_seconds": cfg["confirm_interval"]}
    for key in ("concurrency", "writes_per_second", "write_burst"):
        if cfg.get(key) is not None:
            stop[key] = cfg[key]
    return {"scope": {"subscriptions": subscription_ids(cfg["subscriptions"])}, "stop": stop}


@contextlib.contextmanager
def installed(server: Any):
    """The fake under ``requests``, with ``responses``' own call log switched off: it keeps every
    request and response with their bodies, which would be the harness's memory, not the sweep's."""
    import responses

    class _Forget(responses.CallList):
        def add(self, request: Any, response: Any) -> None:
            pass

        def add_call(self, call: Any) -> None:
            pass

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        server.install(mock)
        mock._calls = _Forget()
        for registered in mock.registered():
            registered._calls = _Forget()
        yield mock


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MIB


# -- child: the sweep ---------------------------------------------------------------------------


def child_sweep(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """Run the real runbook over the big fleet; report timings, counts and checks."""
    from runbooks.stop_compute_instances import main
    from shared.report import SUMMARY_MARKER
    from shared.settings import encode_settings

    server, ml, per_sub = build_fake(cfg)
    if cfg["warm"]:
        import azure.ai.ml  # noqa: F401 - cold start is measured on its own; this times the sweep

    summary_path = os.path.join(tempfile.gettempdir(), "ci-governance-bench-summary.json")
    # The printed summary is bounded to fit Automation's job stream; the file holds every row.
    argv = ["--settings-b64", encode_settings(sweep_settings(cfg)), "--summary-file", summary_path]
    out = io.StringIO()
    with installed(server):
        rss_before = rss_mb()
        start = time.monotonic()
        with contextlib.redirect_stdout(out):
            code = main(argv, credential=server.credential())
        wall = time.monotonic() - start
    text = out.getvalue()
    log_path = os.path.join(tempfile.gettempdir(), "ci-governance-bench-sweep.log")
    with open(log_path, "w", encoding="utf-8") as fh:  # for a post-mortem of a failed target
        fh.write(text)
    printed = json.loads([ln for ln in text.splitlines() if ln.startswith(SUMMARY_MARKER)][-1][len(SUMMARY_MARKER) :])
    with open(summary_path, encoding="utf-8") as fh:
        summary = json.load(fh)
    assert printed["counts"] == summary["counts"], "the printed summary's counts differ from the full summary"

    # Every CI exactly once, with a final outcome, and the fake agrees with what the report says.
    reported: Dict[str, Dict[str, Any]] = {}
    duplicates = 0
    for r in summary["results"]:
        key = f"{r['workspace']}/{r['compute_instance']}"
        duplicates += key in reported
        reported[key] = r
    final = {"stopped", "already_stopped", "exempt", "skipped", "failed"}
    fleet = ml.all_instances()
    missing = sum(1 for ws, ci in fleet if f"{ws.name}/{ci.name}" not in reported)
    not_final = sum(1 for r in reported.values() if r["outcome"] not in final)
    disagree = sum(1 for ws, ci in fleet if reported.get(f"{ws.name}/{ci.name}", {}).get("outcome") == "stopped" and ci.state != "Stopped")

    calls = server.calls
    posts = [c for c in calls if c.method == "POST" and c.path.endswith("/stop")]
    arm_reads = [c for c in calls if c.method == "GET" and c.path.startswith("/subscriptions/")]
    return {
        "code": code,
        "wall": wall,
        "counts": summary["counts"],
        "errors": len(summary["errors"]),
        "error_texts": [f"{e['scope']}: {e['error']}" for e in summary["errors"][:5]],
        "failures": [f"{r['workspace']}/{r['compute_instance']}: {r['detail']}" for r in summary["results"] if r["outcome"] == "failed"][:5],
        "fleet": len(fleet),
        "per_sub": per_sub,
        "duplicates": duplicates,
        "missing": missing,
        "not_final": not_final,
        "disagree": disagree,
        "post_attempts": len(posts),
        "posts_accepted": sum(1 for c in posts if c.status == 202),
        "throttled": server.throttled,
        "faults": sum(1 for c in calls if c.status >= 500),
        "reads": len(arm_reads),
        "first_request": (calls[0].at - start) if calls else None,
        "first_stop": (posts[0].at - start) if posts else None,
        "last_stop": (posts[-1].at - start) if posts else None,
        "rss_before_mb": rss_before,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux: KiB
        "output_bytes": len(text.encode("utf-8")),
        "resent": sum(1 for ln in text.splitlines() if "sending again" in ln),
        "log_path": log_path,
    }


# -- child: job output at 10,000 CIs (shortcut fleet) ---------------------------------------------


class ShortcutGateway:
    """An in-memory stand-in for ``AzureMLGateway`` (same methods): zero latency, no HTTP, no
    throttling; a stop or start completes at once. Only for measuring the runbooks' printed output."""

    def __init__(self, workspaces: List[Any], instances: Dict[str, List[Any]], refuse: set):
        self.workspaces, self.instances, self.refuse = workspaces, instances, refuse

    def list_workspaces(self, subscription_id: str, resource_group: Optional[str] = None) -> List[Any]:
        return [w for w in self.workspaces if w.subscription_id == subscription_id and resource_group in (None, w.resource_group)]

    def list_compute_instances(self, workspace: Any) -> List[Any]:
        return list(self.instances[workspace.key])

    def get_compute_instance(self, workspace: Any, name: str) -> Any:
        return next(c for c in self.instances[workspace.key] if c.name == name)

    def _set(self, workspace: Any, name: str, state: str) -> None:
        import dataclasses

        from azure.core.exceptions import HttpResponseError

        if name in self.refuse:
            error = HttpResponseError(message=f"(BadRequest) The operation is not allowed on compute instance {name}.")
            error.status_code = 400
            raise error
        cis = self.instances[workspace.key]
        i = next(i for i, c in enumerate(cis) if c.name == name)
        cis[i] = dataclasses.replace(cis[i], state=state)

    def request_stop(self, workspace: Any, name: str) -> None:
        self._set(workspace, name, "Stopped")

    def request_start(self, workspace: Any, name: str) -> None:
        self._set(workspace, name, "Running")


def shortcut_fleet(cfg: Dict[str, Any], kind: str, now: Any) -> ShortcutGateway:
    """``cfg['output_cis']`` CIs over ``output_workspaces`` workspaces in ``output_subscriptions``,
    a realistic mix for ``kind`` ("stop" or "start"); names as long as real ones."""
    from datetime import timedelta

    from shared.models import ComputeInstanceRecord, WorkspaceRef
    from shared.tags import TagNames
    from shared.times import format_instant

    names = TagNames()
    subs = subscription_ids(cfg["output_subscriptions"])
    workspaces = [
        WorkspaceRef(subs[w % len(subs)], f"rg-machine-learning-{w % len(subs):02d}", f"mlw-team-workspace-{w:04d}", "westeurope")
        for w in range(cfg["output_workspaces"])
    ]
    instances: Dict[str, List[Any]] = {w.key: [] for w in workspaces}
    refuse = set()
    for i in range(cfg["output_cis"]):
        ws = workspaces[i % len(workspaces)]
        name, tags, state = f"ci-user{i:05d}-dev", {"cost-center": "CC-4711"}, "Running"
        roll = (i + 37 * (i // len(workspaces))) % 100  # every workspace gets a mix
        if kind == "stop":
            if roll < 5:
                state = "Stopped"
            elif roll < 7:
                tags.update({names.exempt_until: format_instant(now + timedelta(hours=12)), names.exempt_by: f"user{i:05d}@contoso.com"})
            elif roll == 7:
                state = "JobRunning"
            elif roll == 8:
                state = "Starting"
            elif roll == 9:
                refuse.add(name)
        else:
            state = "Stopped"
            if roll < 8:
                tags[names.auto_start] = "yes"
            elif roll == 8:
                tags[names.auto_start], state = "yes", "Running"
            elif roll == 9:
                tags[names.auto_start] = "weekdays"  # unreadable: skipped, listed
        user = (f"{i:08x}-0000-4000-8000-000000000000", "99999999-9999-4999-8999-999999999999")
        instances[ws.key].append(ComputeInstanceRecord(ws, name, state, "STANDARD_DS3_V2", "westeurope", tags, *user))
    return ShortcutGateway(workspaces, instances, refuse)


def child_output(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """The printed output of the real stop and start runbooks over the shortcut fleet."""
    from datetime import datetime, timezone

    from fake_azure import FakeArmServer
    from fake_azure.retail_prices import FakeRetailPrices
    from runbooks import start_compute_instances, stop_compute_instances
    from shared.report import SUMMARY_MARKER
    from shared.settings import encode_settings

    fast = {"concurrency": 16, "writes_per_second": 1e6, "write_burst": 1_000_000, "confirm_interval_seconds": 0.05, "confirm_timeout_seconds": 120}
    scope = {"subscriptions": subscription_ids(cfg["output_subscriptions"])}
    server = FakeArmServer()
    FakeRetailPrices(server)  # the stop sweep prices what it stopped, as in production
    result: Dict[str, Any] = {}
    runs = (
        ("stop", stop_compute_instances, datetime(2026, 11, 23, 19, 0, tzinfo=timezone.utc), {"stop": fast}, ["--no-teams-summary"]),
        ("start", start_compute_instances, datetime(2026, 11, 23, 6, 0, tzinfo=timezone.utc), {"start": fast}, []),
    )
    for kind, runbook, now, section, extra in runs:
        gateway = shortcut_fleet(cfg, kind, now)
        summary_path = os.path.join(tempfile.gettempdir(), f"ci-governance-bench-{kind}-output-summary.json")
        argv = ["--settings-b64", encode_settings({"scope": scope, **section}), "--summary-file", summary_path, *extra]
        out = io.StringIO()
        start = time.monotonic()
        with installed(server), contextlib.redirect_stdout(out):
            code = runbook.main(argv, credential=server.credential(), now=now, gateway=gateway)
        text = out.getvalue()
        log_path = os.path.join(tempfile.gettempdir(), f"ci-governance-bench-{kind}-output.log")
        with open(log_path, "w", encoding="utf-8") as fh:
            fh.write(text)
        summaries = [ln for ln in text.splitlines() if ln.startswith(SUMMARY_MARKER)]
        with open(summary_path, encoding="utf-8") as fh:
            rows = len(json.load(fh)["results"])
        result[kind] = {
            "code": code,
            "bytes": len(text.encode("utf-8")),
            "lines": len(text.splitlines()),
            "summary_lines": len(summaries),
            "summary_bytes": len(summaries[-1].encode("utf-8")) if summaries else 0,
            "counts": json.loads(summaries[-1][len(SUMMARY_MARKER) :])["counts"] if summaries else {},
            "rows_in_file": rows,
            "seconds": time.monotonic() - start,
            "log_path": log_path,
        }
    return result


# -- child: cold start --------------------------------------------------------------------------


def child_cold_start(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """Imports to first HTTP call, in this fresh process: the harness first (not counted), then
    the runbook module, then ``main`` until its first request reaches the fake."""
    t_harness = time.monotonic()
    from fake_azure import FakeArmServer
    from fake_azure.ml import FakeMachineLearning

    t_runbook = time.monotonic()
    from runbooks.stop_compute_instances import main
    from shared.settings import encode_settings

    t_main = time.monotonic()
    server = FakeArmServer()
    ml = FakeMachineLearning(server, stop_seconds=0.05)
    sub = subscription_ids(1)[0]
    ml.add_compute_instance(ml.add_workspace(sub, "rg", "mlw"), "ci-1")
    argv = ["--settings-b64", encode_settings({"scope": {"subscriptions": [sub]}, "stop": {"confirm_interval_seconds": 0.05}, "pricing": {"enabled": False}})]
    t_call = time.monotonic()
    with installed(server), contextlib.redirect_stdout(io.StringIO()):
        main(argv, credential=server.credential())
    first = server.calls[0].at
    return {
        "process_start": _PROCESS_START,
        "harness_import": t_runbook - t_harness,
        "runbook_import": t_main - t_runbook,
        "main_to_first_request": first - t_call,
        "first_request_at": first,
    }


def child_import_ml(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """How long ``import azure.ai.ml`` takes on its own in a fresh process (and its memory)."""
    before = rss_mb()
    start = time.monotonic()
    import azure.ai.ml  # noqa: F401

    return {"seconds": time.monotonic() - start, "rss_mb": rss_mb() - before}


# -- in the parent: the naive baseline ----------------------------------------------------------


def naive_baseline(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """What one-by-one ``begin_stop(name).result()`` costs per CI, on a few CIs of the same fake."""
    from azure.ai.ml import MLClient

    small = dict(cfg, cis=cfg["baseline_cis"], workspaces=1, subscriptions=1, fault_rate=0.0)
    server, ml, _ = build_fake(small)
    (ws,) = ml.workspaces.values()
    names = sorted(ws.computes)
    durations = []
    with installed(server):
        client = MLClient(server.credential(), ws.subscription_id, ws.resource_group, ws.name, polling_interval=cfg["baseline_polling"])
        for name in names:
            start = time.monotonic()
            client.compute.begin_stop(name).result()
            durations.append(time.monotonic() - start)
    assert all(ci.state == "Stopped" for ci in ws.computes.values()), "the baseline did not stop its CIs"
    return {"cis": len(names), "per_ci": sum(durations) / len(durations), "durations": durations}


# -- orchestration ------------------------------------------------------------------------------


def run_child(kind: str, cfg: Dict[str, Any], timeout: float) -> Tuple[Dict[str, Any], float]:
    """Run this script as ``--child kind``; returns its result and the parent's spawn time."""
    spawned = time.monotonic()
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", kind, "--config", json.dumps(cfg)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_MARKER)]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"benchmark child '{kind}' failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len(RESULT_MARKER) :]), spawned


def lower_bound(cfg: Dict[str, Any], per_sub: Dict[str, int]) -> Tuple[float, float, int]:
    """(bound, throttle part, CIs in the busiest subscription)."""
    busiest = max(per_sub.values())
    throttle = max(max(0.0, n - cfg["write_bucket"]) / cfg["write_refill"] for n in per_sub.values())
    return throttle + cfg["stop_seconds"] + cfg["latency"], throttle, busiest


def human(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def report(
    cfg: Dict[str, Any], sweep: Dict[str, Any], cold: Dict[str, Any], cold_spawn: float, ml_import: Dict[str, Any], base: Dict[str, Any], output: Dict[str, Any]
) -> bool:
    bound, throttle, busiest = lower_bound(cfg, sweep["per_sub"])
    ratio = sweep["wall"] / bound
    p = print
    p("=" * 100)
    p(f"CI governance: stop-sweep scale benchmark ({'quick' if cfg['quick'] else 'full'})")
    p(f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()} {platform.machine()}")
    p(
        f"Fleet: {cfg['cis']} running CIs over {cfg['workspaces']} workspaces in {cfg['subscriptions']} subscriptions "
        f"(busiest subscription: {busiest} CIs); fake ARM: {cfg['latency'] * 1000:.0f} ms per request, stops take {cfg['stop_seconds']:g} s, "
        f"write bucket {cfg['write_bucket']:g} refilled at {cfg['write_refill']:g}/s per subscription (429 + Retry-After beyond it), "
        f"transient 500/502/503 on {cfg['fault_rate'] * 100:g}% of ARM requests (seed {cfg['seed']})"
    )
    stop = sweep_settings(cfg)["stop"]
    p(f"Sweep settings (stop section): {json.dumps(stop, sort_keys=True)}; everything else at the runbook's defaults")
    p("-" * 100)
    p("Lower bound = max over subscriptions of [ max(0, n_sub - bucket) / refill ] + stop duration + one request latency")
    p(
        f"            = max(0, {busiest} - {cfg['write_bucket']:g}) / {cfg['write_refill']:g} + {cfg['stop_seconds']:g} + {cfg['latency']:g}"
        f" = {throttle:.2f} + {cfg['stop_seconds']:g} + {cfg['latency']:g} = {bound:.2f} s"
    )
    p("  why: ARM accepts `bucket` writes at once, then `refill` per second, per subscription; so the busiest subscription's")
    p("  last stop cannot be accepted before (n_sub - bucket)/refill, it then needs one request latency and a full stop")
    p("  duration. Subscriptions have separate buckets and run in parallel. Discovery, imports and confirmation reads are")
    p("  not counted, so no real sweep can reach the bound.")
    first = sweep["first_request"]
    p(
        f"Sweep wall time: {sweep['wall']:.1f} s = {ratio:.2f} x the bound  "
        f"(main() call to return{', azure.ai.ml pre-imported: its import is the cold start below' if cfg['warm'] else ', imports included'})"
    )
    if first is not None and sweep["first_stop"] is not None:
        p(
            f"  timeline: first request {first:.1f} s, first stop sent {sweep['first_stop']:.1f} s (discovery done), "
            f"last stop sent {sweep['last_stop']:.1f} s, finished {sweep['wall']:.1f} s"
        )
    p(
        f"  requests: {sweep['posts_accepted']} stops accepted of {sweep['post_attempts']} stop POSTs; {sweep['throttled']} throttled (429); "
        f"{sweep['faults']} answered 5xx; {sweep['resent']} re-sent by the sweep itself; {sweep['reads']} ARM reads in all"
    )
    p(
        f"Outcomes: {json.dumps(sweep['counts'], sort_keys=True)}; scope errors {sweep['errors']}; exit code {sweep['code']}; "
        f"CIs in the fleet {sweep['fleet']}, missing from the report {sweep['missing']}, reported twice {sweep['duplicates']}, "
        f"without a final outcome {sweep['not_final']}, 'stopped' but not Stopped in the fake {sweep['disagree']}"
    )
    for text in sweep["error_texts"] + sweep["failures"]:
        p(f"  ! {text}")
    p(
        f"Peak memory: {sweep['peak_rss_mb']:.0f} MB = ru_maxrss of the sweep subprocess (getrusage RUSAGE_SELF), which also holds the "
        f"in-process fake Azure; RSS just before main(): {sweep['rss_before_mb']:.0f} MB"
    )
    cold_total = cold["main_to_first_request"] + cold["runbook_import"]
    p(
        f"Cold start: {cold_total:.2f} s from `import runbooks.stop_compute_instances` to the first HTTP request, in a fresh process "
        f"(module import {cold['runbook_import']:.2f} s, then main() {cold['main_to_first_request']:.2f} s, which imports azure.ai.ml lazily); "
        f"{cold['first_request_at'] - cold_spawn:.2f} s from process spawn, including the interpreter and the test harness "
        f"({cold['harness_import']:.2f} s)"
    )
    p(f"  `import azure.ai.ml` alone, fresh process: {ml_import['seconds']:.2f} s and {ml_import['rss_mb']:.0f} MB")
    extrapolated = base["per_ci"] * cfg["cis"]
    p(
        f"Naive baseline (MEASURED on {base['cis']} CIs, EXTRAPOLATED to {cfg['cis']}): MLClient.compute.begin_stop(name).result() one by one, "
        f"polling_interval={cfg['baseline_polling']:g} s: {base['per_ci']:.1f} s per CI -> {cfg['cis']} x {base['per_ci']:.1f} s = {human(extrapolated)} "
        f"= {extrapolated / sweep['wall']:.0f} x this sweep (azure-ai-ml's default 30 s polling: >= {human(cfg['cis'] * 30)}; "
        "Azure Automation stops a job at 3 h)"
    )
    out_mib = sweep["output_bytes"] / MIB
    p(f"Job output: {out_mib:.2f} MiB of the runbook's stdout (Azure Automation keeps 1 MiB per job stream); saved to {sweep['log_path']}")
    scale = f"{cfg['output_cis']:,} CIs / {cfg['output_workspaces']:,} workspaces / {cfg['output_subscriptions']} subscriptions"
    for kind in ("stop", "start"):
        o = output[kind]
        p(
            f"Job output at {scale} ({kind}, SHORTCUT fleet: in-memory gateway, zero latency, no throttling; real runbook, report and log): "
            f"{o['bytes'] / MIB:.2f} MiB in {o['lines']:,} lines (summary line {o['summary_bytes'] / 1024:.0f} KiB; {o['rows_in_file']:,} rows in "
            f"--summary-file); outcomes {json.dumps(o['counts'], sort_keys=True)}; exit code {o['code']}; {o['seconds']:.1f} s; saved to {o['log_path']}"
        )
    p("-" * 100)
    complete = sweep["missing"] == 0 and sweep["duplicates"] == 0 and sweep["not_final"] == 0 and sweep["disagree"] == 0 and sweep["fleet"] == cfg["cis"]
    checks = [
        (complete, f"every CI reaches a final outcome ({sweep['fleet'] - sweep['missing']}/{cfg['cis']}, none twice, report matches the fake)"),
        (ratio <= TARGET_RATIO, f"wall time within {TARGET_RATIO} x the lower bound ({sweep['wall']:.1f} s vs {TARGET_RATIO * bound:.1f} s)"),
        (sweep["peak_rss_mb"] < TARGET_RSS_MB, f"peak RSS under {TARGET_RSS_MB:.0f} MB ({sweep['peak_rss_mb']:.0f} MB)"),
        (out_mib <= JOB_STREAM_LIMIT / MIB, f"job output within Automation's 1 MiB per stream ({out_mib:.2f} MiB)"),
    ]
    for kind in ("stop", "start"):
        o = output[kind]
        fits = o["bytes"] <= JOB_STREAM_LIMIT and o["summary_lines"] == 1 and o["rows_in_file"] == cfg["output_cis"]
        checks.append((fits, f"{kind} job output at {scale} within 1 MiB ({o['bytes'] / MIB:.2f} MiB, one summary line, every CI in the file)"))
    ok = True
    for passed, text in checks:
        ok &= passed
        p(f"  {'PASS' if passed else 'FAIL'}  {text}")
    p(
        f"  INFO  cold start {cold_total:.2f} s (reported, no target): nearly all of it is importing azure.ai.ml, already lazy "
        f"({ml_import['seconds']:.2f} s alone in a fresh process, azure.core and requests included)"
    )
    p(f"RESULT: {'PASS' if ok else 'FAIL'}")
    return ok


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 CIs over 20 workspaces, 2-CI baseline (CI smoke run)")
    parser.add_argument("--cis", type=int, help="compute instances (default 2000; --quick 200)")
    parser.add_argument("--workspaces", type=int, help="workspaces (default 200; --quick 20)")
    parser.add_argument("--subscriptions", type=int, default=4)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per request (default 0.02)")
    parser.add_argument("--stop-seconds", type=float, default=5.0, help="how long a stop takes (default 5)")
    parser.add_argument("--write-bucket", type=float, default=200, help="ARM write bucket per subscription (default 200)")
    parser.add_argument("--write-refill", type=float, default=10, help="ARM write refill per second (default 10)")
    parser.add_argument("--fault-rate", type=float, default=0.005, help="share of ARM requests answered 500/502/503 (default 0.005)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--confirm-interval", type=float, help="stop.confirm_interval_seconds (default: stop duration / 5)")
    parser.add_argument("--concurrency", type=int, help="stop.concurrency (default: the runbook's)")
    parser.add_argument("--writes-per-second", type=float, help="stop.writes_per_second (default: the runbook's)")
    parser.add_argument("--write-burst", type=int, help="stop.write_burst (default: the runbook's)")
    parser.add_argument("--cold", action="store_true", help="time the sweep with azure.ai.ml not yet imported (imports in the wall time)")
    parser.add_argument("--baseline-cis", type=int, help="CIs for the naive baseline (default 3; --quick 2)")
    parser.add_argument("--baseline-polling", type=float, default=1.0, help="poll interval of the naive baseline (default 1 s)")
    parser.add_argument("--output-cis", type=int, default=10_000, help="CIs of the job-output target's shortcut fleet (default 10000)")
    parser.add_argument("--output-workspaces", type=int, default=1_000, help="its workspaces (default 1000)")
    parser.add_argument("--output-subscriptions", type=int, default=20, help="its subscriptions (default 20)")
    parser.add_argument("--child", choices=("sweep", "cold-start", "import-ml", "output"), help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.child:
        cfg = json.loads(args.config)
        fn = {"sweep": child_sweep, "cold-start": child_cold_start, "import-ml": child_import_ml, "output": child_output}[args.child]
        result = fn(cfg)
        print(RESULT_MARKER + json.dumps(result))
        return 0
    cfg = {
        "quick": args.quick,
        "cis": args.cis or (200 if args.quick else 2000),
        "workspaces": args.workspaces or (20 if args.quick else 200),
        "subscriptions": args.subscriptions,
        "latency": args.latency,
        "stop_seconds": args.stop_seconds,
        "write_bucket": args.write_bucket,
        "write_refill": args.write_refill,
        "fault_rate": args.fault_rate,
        "seed": args.seed,
        # Confirmation looks at each workspace this often: a fifth of a stop keeps the tail short
        # and, per subscription, costs (workspaces with pending CIs / interval) reads per second,
        # which the gateway paces under ARM's read budget.
        "confirm_interval": args.confirm_interval or max(0.2, args.stop_seconds / 5),
        "concurrency": args.concurrency,
        "writes_per_second": args.writes_per_second,
        "write_burst": args.write_burst,
        "warm": not args.cold,
        "baseline_cis": args.baseline_cis or (2 if args.quick else 3),
        "baseline_polling": args.baseline_polling,
        "output_cis": args.output_cis,
        "output_workspaces": args.output_workspaces,
        "output_subscriptions": args.output_subscriptions,
    }
    if cfg["cis"] < 1 or cfg["workspaces"] < 1 or cfg["subscriptions"] < 1 or cfg["workspaces"] < cfg["subscriptions"]:
        raise SystemExit("need at least one CI, and at least as many workspaces as subscriptions")
    print(f"Running the sweep over {cfg['cis']} CIs (fresh subprocess)...", flush=True)
    sweep, _ = run_child("sweep", cfg, timeout=900)
    print("Measuring the cold start (fresh subprocesses)...", flush=True)
    cold, cold_spawn = run_child("cold-start", cfg, timeout=120)
    ml_import, _ = run_child("import-ml", cfg, timeout=120)
    print(f"Measuring the job output at {cfg['output_cis']:,} CIs (shortcut fleet, fresh subprocess)...", flush=True)
    output, _ = run_child("output", cfg, timeout=600)
    print(f"Running the naive baseline on {cfg['baseline_cis']} CIs...", flush=True)
    base = naive_baseline(cfg)
    return 0 if report(cfg, sweep, cold, cold_spawn, ml_import, base, output) else 1


if __name__ == "__main__":
    sys.exit(main())
