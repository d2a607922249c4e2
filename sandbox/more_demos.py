"""Sandbox demos of the create and morning-start runbooks against the built-in fake Azure.

    run_create(extra_args)   requests for compute instances, as the Teams flow sends them, each answered in Teams
    run_start(extra_args)    the weekday-morning start over the seeded fleet plus opted-in CIs

Each demo runs the real runbook (through azure-ai-ml and azure-core, at the HTTP layer), prints
its output, then checks every outcome against what the scenario was built to produce. Extra
arguments (e.g. ``--dry-run``) are passed to every runbook run.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import responses

from fake_azure import FakeArmServer
from fake_azure.ml import FakeMachineLearning
from fake_azure.teams import FakeTeamsWorkflow
from sandbox.cardtext import show_new
from sandbox.fleet import SUB_PRODUCT, SUB_RESEARCH, TENANT, seed_fleet
from shared.report import SUMMARY_MARKER
from shared.settings import encode_settings
from shared.tags import TagNames

NAMES = TagNames()
# A Monday morning in Amsterdam that is not a holiday, so the start demo has work to do.
START_NOW = datetime(2026, 11, 23, 5, 30, tzinfo=timezone.utc)
SECRET_HEADER = "X-CI-Governance-Secret"
SECRET = "sandbox-shared-secret"


class _Tee:
    """Capture the runbook's stdout while still showing it."""

    def __init__(self, stream: Any):
        self.stream = stream
        self.text: List[str] = []

    def write(self, s: str) -> int:
        self.text.append(s)
        return self.stream.write(s)

    def flush(self) -> None:
        self.stream.flush()


@contextmanager
def _fake_azure(**ml_options: Any) -> Iterator[Tuple[FakeArmServer, FakeMachineLearning]]:
    server = FakeArmServer(latency=0.005)
    ml = FakeMachineLearning(server, **ml_options)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        server.install(mock)
        yield server, ml


def _run(main: Callable[..., int], args: List[str], **kwargs: Any) -> Tuple[int, Dict[str, Any]]:
    """Run a runbook's main, showing its output; returns (exit code, JSON summary)."""
    tee = _Tee(sys.stdout)
    old, sys.stdout = sys.stdout, tee
    try:
        code = main(args, **kwargs)
    finally:
        sys.stdout = old
    line = next((ln for ln in "".join(tee.text).splitlines() if ln.startswith(SUMMARY_MARKER)), None)
    return code, json.loads(line[len(SUMMARY_MARKER) :]) if line else {}


# -- create -------------------------------------------------------------------------------


def _user(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def _teams_body(workspace: str, name: str, size: str, user: int, upn: str, approver: Optional[str] = None) -> Dict[str, Any]:
    body: Dict[str, Any] = {
        "data": {"action": "request_compute_instance", "workspace": workspace, "name": name, "size": size, "idle_minutes": "90", "cost_center": "CC-4711"},
        "responder": {"objectId": _user(user), "tenantId": TENANT, "userPrincipalName": upn, "displayName": upn.split("@")[0].title()},
        "messageId": f"msg-{name}",
    }
    if approver:
        body["approval"] = {"approver": {"objectId": _user(99), "userPrincipalName": approver}, "outcome": "Approve"}
    return body


def _webhook(body: Dict[str, Any]) -> str:
    """What Azure Automation hands the runbook when the Teams flow POSTs ``body`` to its webhook."""
    return json.dumps({"WebhookName": "ci-governance-create_compute_instance", "RequestBody": json.dumps(body), "RequestHeader": {SECRET_HEADER: SECRET}})


@dataclass(frozen=True)
class _Scenario:
    title: str
    body: Dict[str, Any]
    outcome: str
    dry_outcome: str  # with --dry-run nothing is created, so later scenarios see a different world


def run_create(extra_args: List[str]) -> int:
    """Send a handful of requests through the create runbook and check each outcome."""
    from runbooks import create_compute_instance

    dry_run = "--dry-run" in extra_args
    vision = f"{SUB_RESEARCH}/rg-ml-research/mlw-vision"
    nlp = f"{SUB_RESEARCH}/rg-ml-research/mlw-nlp"
    scenarios = [
        _Scenario("A new user asks for a CPU instance", _teams_body(nlp, "ci-nora", "Standard_DS3_v2", 20, "nora@contoso.com"), "created", "would_create"),
        _Scenario(
            "The same Teams post arrives again", _teams_body(nlp, "ci-nora", "Standard_DS3_v2", 20, "nora@contoso.com"), "already_exists", "would_create"
        ),
        _Scenario(
            "A GPU size, no approval yet", _teams_body(vision, "ci-olga-gpu", "Standard_NC6s_v3", 21, "olga@contoso.com"), "needs_approval", "needs_approval"
        ),
        _Scenario("The team lead presses Approve on the approval card the runbook posted", {}, "created", "would_create"),
        _Scenario("A name Azure ML would refuse", _teams_body(nlp, "cpu-cluster-1", "Standard_DS3_v2", 22, "piet@contoso.com"), "rejected", "rejected"),
        _Scenario("A size that is not allowed", _teams_body(nlp, "ci-piet", "Standard_ND96asr_v4", 22, "piet@contoso.com"), "rejected", "rejected"),
        _Scenario(
            "Alice already has her one CI in mlw-vision", _teams_body(vision, "ci-alice-two", "Standard_DS3_v2", 1, "alice@contoso.com"), "rejected", "rejected"
        ),
        _Scenario("Azure runs out of quota", _teams_body(nlp, "ci-quota", "Standard_E4ds_v4", 23, "quinn@contoso.com"), "failed", "would_create"),
    ]
    settings = {
        "scope": {"subscriptions": [SUB_RESEARCH, SUB_PRODUCT]},
        "teams": {"shared_secret": SECRET, "workflow_url": "", "approvers_recipient": "lead@contoso.com"},
        "create": {
            "allowed_sizes": ["Standard_DS3_v2", "Standard_E4ds_v4", "Standard_NC6s_v3"],
            "sizes_needing_approval": ["STANDARD_NC*"],
            "approvers": ["lead@contoso.com"],
            "require_shared_secret": SECRET_HEADER,
            "polling_interval_seconds": 0.2,
            "timeout_seconds": 30,
        },
    }
    problems = []
    with _fake_azure(create_seconds=0.5) as (server, ml):
        teams = FakeTeamsWorkflow(server)
        settings["teams"]["workflow_url"] = teams.url
        seen = 0
        seed_fleet(ml, datetime.now(timezone.utc))
        ml.create_errors["ci-quota"] = (
            "QuotaExceeded",
            "Operation could not be completed as it results in exceeding approved standardEDSv4Family Cores quota.",
        )
        print(f"Sandbox: fake Azure with {len(ml.workspaces)} workspaces; {len(scenarios)} requests arrive through the create runbook's webhook.")
        for i, sc in enumerate(scenarios, 1):
            if not sc.body:  # the approver answers the approval card of the request before
                approval = next(c for q, c in teams.addressed_cards if q.get("audience") == "approvers")
                press = next(a["data"] for a in approval["actions"] if a["title"] == "Approve")
                lead = {"objectId": _user(99), "tenantId": TENANT, "userPrincipalName": "lead@contoso.com", "displayName": "Lena"}
                sc = _Scenario(
                    sc.title, {"data": {**press, "comments": "OK for this sprint"}, "responder": lead, "messageId": "msg-approve"}, sc.outcome, sc.dry_outcome
                )
            data = sc.body["data"].get("request") or sc.body["data"]
            print("=" * 100)
            print(f"{i}. {sc.title}: {data['name']} ({data['size']}) in {data['workspace'].split('/')[-1]}, from {sc.body['responder']['userPrincipalName']}")
            asker = (sc.body["data"].get("requester") or sc.body["responder"])["userPrincipalName"]
            print("-" * 100)
            writes_before = sum(server.count(m) for m in ("PUT", "POST", "PATCH", "DELETE")) - server.count("POST", "/workflows/")
            code, summary = _run(
                create_compute_instance.main, ["--settings-b64", encode_settings(settings), _webhook(sc.body), *extra_args], credential=server.credential()
            )
            got = [r["outcome"] for r in summary.get("results", [])]
            want = sc.dry_outcome if dry_run else sc.outcome
            writes = sum(server.count(m) for m in ("PUT", "POST", "PATCH", "DELETE")) - server.count("POST", "/workflows/") - writes_before
            print(f"-> exit code {code}, outcome {got}, {writes} write(s) sent to Azure; the answer in Teams:")
            if got != [want]:
                problems.append(f"{i}. {sc.title}: expected [{want}], got {got}")
            answers = [q for q, c in teams.addressed_cards[seen:] if q.get("audience") != "approvers"]
            if [q.get("recipient") for q in answers] != [asker]:
                problems.append(f"{i}. {sc.title}: the answer did not go (only) to {asker}: {answers}")
            seen = show_new(teams, seen, "create", sc.title)
    print("=" * 100)
    if problems:
        print("Sandbox check FAILED:\n  " + "\n  ".join(problems))
        return 1
    print(f"Sandbox check passed: each of the {len(scenarios)} requests ended as expected and was answered in Teams to the person who asked.")
    return 0


# -- start --------------------------------------------------------------------------------


def _seed_opt_ins(ml: FakeMachineLearning) -> Dict[Tuple[str, str], str]:
    """Add CIs that opted in to the morning start; returns their expected outcomes on START_NOW."""
    vision = ml.add_workspace(SUB_RESEARCH, "rg-ml-research", "mlw-vision")
    forecast = ml.add_workspace(SUB_PRODUCT, "rg-ml-product", "mlw-forecasting", "northeurope")
    seeds = [
        (vision, "ci-nina-auto", "Stopped", "true", "started"),
        (vision, "ci-omar-mwf", "Stopped", "mon,wed,fri", "started"),
        (vision, "ci-pia-tue", "Stopped", "tue", "skipped"),
        (forecast, "ci-quinn-early", "Running", "yes", "already_running"),
        (forecast, "ci-rosa-auto", "Stopped", "yes", "started"),
        (forecast, "ci-sam-off", "Stopped", "no", "skipped"),
    ]
    expected = {}
    for i, (ws, name, state, value, outcome) in enumerate(seeds, 30):
        ml.add_compute_instance(ws, name, state=state, vm_size="STANDARD_DS3_V2", assigned_user=(_user(i), TENANT), tags={NAMES.auto_start: value})
        expected[(ws.name, name)] = outcome
    return expected


def run_start(extra_args: List[str]) -> int:
    """Run the morning start on a Monday over the fleet plus opted-in CIs; check every outcome."""
    from runbooks import start_compute_instances

    dry_run = "--dry-run" in extra_args
    settings = {
        "scope": {"subscriptions": [SUB_RESEARCH, SUB_PRODUCT]},
        "start": {"time_zone": "Europe/Amsterdam", "holidays": ["2026-12-24", "2026-12-25"], "confirm_interval_seconds": 0.2, "confirm_timeout_seconds": 30},
    }
    with _fake_azure(start_seconds=0.5) as (server, ml):
        # The fleet's CIs have no auto-start tag: the start leaves every one of them alone.
        expected = {(e.workspace, e.name): "skipped" for e in seed_fleet(ml, START_NOW)}
        expected.update(_seed_opt_ins(ml))
        local = START_NOW.astimezone(_zone("Europe/Amsterdam"))
        print(f"Sandbox: fake Azure with {len(ml.workspaces)} workspaces and {len(expected)} compute instances; it is {local:%A %Y-%m-%d %H:%M} in Amsterdam.")
        print("Running runbooks/start_compute_instances.py " + " ".join(["--settings-b64 <sandbox settings>", *extra_args]))
        print("-" * 100)
        code, summary = _run(
            start_compute_instances.main, ["--settings-b64", encode_settings(settings), *extra_args], credential=server.credential(), now=START_NOW
        )
        print("-" * 100)
        print(f"Runbook exit code: {code}; start requests sent: {server.count('POST', '/start')}")
    problems = []
    seen: Dict[Tuple[str, str], List[str]] = {}
    for r in summary.get("results", []):
        seen.setdefault((r["workspace"], r["compute_instance"]), []).append(r["outcome"])
    for key, outcome in sorted(expected.items()):
        want = "would_start" if dry_run and outcome == "started" else outcome
        got = seen.pop(key, [])
        if got != [want]:
            problems.append(f"{key[0]}/{key[1]}: expected [{want}], report says {got}")
    problems += [f"{ws}/{ci}: reported but never seeded ({outs})" for (ws, ci), outs in seen.items()]
    if problems:
        print("Sandbox check FAILED:\n  " + "\n  ".join(problems))
        return 1
    print(f"Sandbox check passed: each of the {len(expected)} compute instances is reported exactly once, with the expected outcome.")
    return code


def _zone(name: str) -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)
