"""The evening in the sandbox: the pre-stop warning reaches each owner with prices; Alice answers
her warning card to keep her GPU instance running overnight; the exemption runbook records it; the
nightly sweep then leaves her CI running and stops the rest, saying what that saves."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Tuple

import responses

from fake_azure import FakeArmServer
from fake_azure.ml import FakeMachineLearning
from fake_azure.retail_prices import FakeRetailPrices
from fake_azure.teams import FakeTeamsWorkflow
from sandbox.fleet import TENANT, sandbox_settings, seed_fleet
from shared.report import SUMMARY_MARKER
from shared.settings import encode_settings
from shared.teams.cards import iter_elements

LEAD = {
    "objectId": "00000000-0000-4000-8000-000000000099",
    "tenantId": TENANT,
    "email": "lead@contoso.com",
    "userPrincipalName": "lead@contoso.com",
    "displayName": "Lena (team lead)",
}
ALICE = {
    "objectId": "00000000-0000-4000-8000-000000000001",
    "tenantId": TENANT,
    "email": "alice@contoso.com",
    "userPrincipalName": "alice@contoso.com",
    "displayName": "Alice",
}


def _summary(text: str) -> Dict[str, Any]:
    line = next(ln for ln in text.splitlines() if ln.startswith(SUMMARY_MARKER))
    return json.loads(line[len(SUMMARY_MARKER) :])


class _Capture:
    def __init__(self) -> None:
        self.parts: List[str] = []
        self.real = sys.stdout

    def write(self, s: str) -> int:
        self.parts.append(s)
        return self.real.write(s)

    def flush(self) -> None:
        self.real.flush()


def _run(main: Any, argv: List[str], **kwargs: Any) -> Tuple[int, Dict[str, Any]]:
    cap = _Capture()
    sys.stdout = cap
    try:
        code = main(argv, **kwargs)
    finally:
        sys.stdout = cap.real
    return code, _summary("".join(cap.parts))


def _submit_for(card: Dict[str, Any], compute_instance: str) -> Dict[str, Any]:
    """The data of the card's "keep running" action for one CI (what Teams returns on a press)."""
    found = [e["data"] for e in iter_elements(card) if e.get("type") == "Action.Submit" and (e.get("data") or {}).get("compute_instance") == compute_instance]
    if not found:
        raise SystemExit(f"the warning card has no keep-running action for {compute_instance}")
    return dict(found[0])


def _approve(pending_card: Dict[str, Any], approver: Dict[str, str], now: datetime) -> Dict[str, Any]:
    """The approver presses Approve on the pending card; the answer flow's Compose (docs/admin.md, "Cost-aware
    approval") turns Teams' response into the request again, with the approval."""
    action = next(a for a in pending_card.get("actions", []) if a.get("title") == "Approve")
    data = dict(action["data"])
    approval = {"outcome": data["outcome"], "approver": approver, "comments": "OK for tonight", "responseTime": now.strftime("%Y-%m-%dT%H:%M:%SZ")}
    return {"data": data["request"], "responder": data["requester"], "messageId": data["request_message_id"], "approval": approval}


def _webhook(body: Dict[str, Any]) -> str:
    """What Azure Automation hands the runbook when a flow POSTs ``body`` to the exemption webhook."""
    return json.dumps(
        {"WebhookName": "ci-governance-handle_exemption_request", "RequestBody": json.dumps(body), "RequestHeader": {"Content-Type": "application/json"}}
    )


def run_evening(extra_args: List[str]) -> int:
    """Warning → exemption from the warning card → sweep; returns non-zero if any step misbehaves."""
    from runbooks import handle_exemption_request, stop_compute_instances, warn_before_stop

    now = datetime.now(timezone.utc).replace(microsecond=0)
    server = FakeArmServer(latency=0.005)
    ml = FakeMachineLearning(server, stop_seconds=0.5)
    teams = FakeTeamsWorkflow(server)
    FakeRetailPrices(server)
    seed_fleet(ml, now)
    doc = sandbox_settings(teams.url)
    doc["exemption"] = {
        "readback_delay_seconds": 0,
        "time_zones": ["UTC", "Europe/Amsterdam"],
        "default_time_zone": "Europe/Amsterdam",
        # Exemptions estimated at USD 20 or more need an approver who is not the requester.
        "auto_approve_below": {"amount": 20, "currency": "USD"},
        "approvers": ["lead@contoso.com"],
    }
    settings = ["--settings-b64", encode_settings(doc)]
    problems: List[str] = []
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        server.install(mock)

        print("=" * 100 + "\n1. 18:30 - the pre-stop warning (runbooks/warn_before_stop.py)\n" + "=" * 100)
        code, warn = _run(warn_before_stop.main, settings + extra_args, credential=server.credential(), now=now)
        warning_cards = list(teams.cards)
        print(f"-> exit code {code}; {len(warning_cards)} warning card(s) posted, one per owner")
        alice_card = next((c for c in warning_cards if "ci-alice-gpu" in json.dumps(c)), None)
        if code != 0 or alice_card is None:
            problems.append("the warning did not reach Alice about ci-alice-gpu")
            return _verdict(problems)

        print("=" * 100 + '\n2. Alice presses "Keep ci-alice-gpu running" on her card (runbooks/handle_exemption_request.py)\n' + "=" * 100)
        tomorrow = (now + timedelta(days=1)).astimezone(timezone.utc).strftime("%Y-%m-%d")
        data = {
            **_submit_for(alice_card, "ci-alice-gpu"),
            "until_date": tomorrow,
            "until_time": "08:00",
            "time_zone": "Europe/Amsterdam",
            "reason": "Fine-tuning run; checkpoint at 06:00",
        }
        response = {
            "data": data,
            "responder": ALICE,
            "responseTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "messageId": "sandbox-msg-1",
            "submitActionId": "Keep running",
        }
        code, answer = _run(handle_exemption_request.main, settings + [_webhook(response)], credential=server.credential(), now=now)
        outcomes = [r["outcome"] for r in answer["results"]]
        print(f"-> exit code {code}; outcome {outcomes}; estimated cost {(answer.get('cost') or {}).get('text')}")
        if outcomes != ["pending_approval"]:
            problems.append(f"a GPU exemption above the cost limit was not sent for approval: {outcomes}")
            return _verdict(problems)

        print("=" * 100 + "\n3. Her team lead presses Approve on the waiting-for-approval card\n" + "=" * 100)
        approved = _approve(teams.cards[-1], LEAD, now)
        code, answer = _run(handle_exemption_request.main, settings + [_webhook(approved)], credential=server.credential(), now=now)
        outcomes = [r["outcome"] for r in answer["results"]]
        print(f"-> exit code {code}; outcome {outcomes}; approved by {answer.get('approved_by')}")
        if code != 0 or outcomes != ["exempted"]:
            problems.append(f"Alice's approved exemption was not recorded: {outcomes}")

        print("=" * 100 + "\n4. 19:00 - the nightly sweep (runbooks/stop_compute_instances.py)\n" + "=" * 100)
        code, sweep = _run(stop_compute_instances.main, settings, credential=server.credential(), now=now + timedelta(minutes=30))
        outcome = {r["compute_instance"]: r["outcome"] for r in sweep["results"]}
        if outcome.get("ci-alice-gpu") != "exempt":
            problems.append(f"the sweep did not honour Alice's exemption: {outcome.get('ci-alice-gpu')}")
        if code != 0:
            problems.append(f"the sweep exited {code}")
        print(f"-> exit code {code}; money: {sweep.get('cost_avoided_text') or 'no price known'}")
    return _verdict(problems)


def _verdict(problems: List[str]) -> int:
    print("=" * 100)
    if problems:
        print("Sandbox evening FAILED:\n  " + "\n  ".join(problems))
        return 1
    print("Sandbox evening passed: warned with prices; exemption asked from the warning card, priced, approved above the cost limit; the sweep honoured it.")
    return 0
