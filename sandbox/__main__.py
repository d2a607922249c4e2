"""Run the real runbooks against the built-in fake Azure.

    python -m sandbox sweep [--dry-run]      the nightly stop sweep over a seeded fleet
    python -m sandbox create [--dry-run]     a compute instance requested from Teams, created by policy
    python -m sandbox start [--dry-run]      the weekday-morning start of CIs that opted in
    python -m sandbox evening                the pre-stop warning, an exemption from its card, then the sweep
    python -m sandbox teams [--route job|webhook] [--create]
                                             the same story through the Teams Logic App template (issue 14)
    python -m sandbox publish                publish.py against a fake Automation account: deploy, re-run, settings change

Everything the runbook does goes through azure-ai-ml and azure-core to the fake control plane at
the HTTP layer; nothing reaches the network. The sandbox then checks the report against what the
fleet was seeded to produce, and prints the Teams card(s) the run posted in a readable text form.

    python -m sandbox cards [--out DIR]      every card the demos post, as PNG and HTML previews (./dev cards)
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from typing import List, Optional

import responses

from fake_azure import FakeArmServer
from fake_azure.ml import FakeMachineLearning
from fake_azure.retail_prices import FakeRetailPrices
from fake_azure.teams import FakeTeamsWorkflow
from sandbox.cardtext import show_new
from sandbox.fleet import sandbox_settings, seed_fleet
from shared.report import SUMMARY_MARKER
from shared.settings import encode_settings


class _Tee:
    """Capture the runbook's stdout while still showing it."""

    def __init__(self, stream):
        self.stream, self.text = stream, []

    def write(self, s):
        self.text.append(s)
        return self.stream.write(s)

    def flush(self):
        self.stream.flush()


def run_sweep(extra_args: List[str]) -> int:
    from runbooks import stop_compute_instances

    now = datetime.now(timezone.utc)
    server = FakeArmServer(latency=0.005)
    ml = FakeMachineLearning(server, stop_seconds=0.5)
    teams = FakeTeamsWorkflow(server)
    FakeRetailPrices(server)  # the public Azure Retail Prices API, for the money saved
    expected = seed_fleet(ml, now)
    settings = sandbox_settings(teams.url)
    print(f"Sandbox: fake Azure with {len(ml.workspaces)} workspaces and {len(expected)} compute instances in 2 subscriptions.")
    print("Running runbooks/stop_compute_instances.py " + " ".join(["--settings-b64 <sandbox settings>", *extra_args]))
    print("-" * 100)
    tee = _Tee(sys.stdout)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        server.install(mock)
        old, sys.stdout = sys.stdout, tee
        try:
            code = stop_compute_instances.main(["--settings-b64", encode_settings(settings), *extra_args], credential=server.credential())
        finally:
            sys.stdout = old
    print("-" * 100)
    print(f"Runbook exit code: {code}")
    return _check(expected, "".join(tee.text), "--dry-run" in extra_args, teams) or code


def _check(expected, output: str, dry_run: bool, teams) -> int:
    line = next((ln for ln in output.splitlines() if ln.startswith(SUMMARY_MARKER)), None)
    if line is None:
        print("Sandbox check FAILED: the runbook printed no JSON summary.")
        return 1
    summary = json.loads(line[len(SUMMARY_MARKER) :])
    seen = {}
    for r in summary["results"]:
        seen.setdefault((r["workspace"], r["compute_instance"]), []).append(r["outcome"])
    problems = []
    for e in expected:
        want = "would_stop" if dry_run and e.outcome == "stopped" else e.outcome
        got = seen.pop((e.workspace, e.name), [])
        if got != [want]:
            problems.append(f"{e.workspace}/{e.name}: expected [{want}], report says {got}")
    problems += [f"{ws}/{ci}: reported but never seeded ({outs})" for (ws, ci), outs in seen.items()]
    if summary.get("cost_avoided_text"):
        print(summary["cost_avoided_text"])
    if teams.cards:
        print(f"Teams: the run posted {len(teams.cards)} card(s) to the fake Teams workflow:")
        show_new(teams, 0, "sweep", "the nightly stop")
    if problems:
        print("Sandbox check FAILED:\n  " + "\n  ".join(problems))
        return 1
    print(f"Sandbox check passed: each of the {len(expected)} seeded compute instances is reported exactly once, with the expected outcome.")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "command",
        nargs="?",
        default="sweep",
        choices=["sweep", "create", "start", "evening", "teams", "cards", "publish"],
        help="what to run (default: sweep)",
    )
    args, rest = parser.parse_known_args(argv)
    if args.command == "sweep":
        return run_sweep(rest)
    if args.command == "teams":
        from sandbox.teams import main as run_teams

        return run_teams(rest)
    if args.command == "cards":
        from sandbox.cards import main as cards_main

        return cards_main(rest)
    if args.command == "evening":
        from sandbox.evening import run_evening

        return run_evening(rest)
    if args.command == "publish":
        from sandbox.publish_demo import run_publish

        return run_publish(rest)
    from sandbox import more_demos

    return more_demos.run_create(rest) if args.command == "create" else more_demos.run_start(rest)


if __name__ == "__main__":
    sys.exit(main())
