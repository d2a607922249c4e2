"""The evening in the sandbox: the pre-stop warning reaches each owner with prices; Alice answers
her warning card to keep her GPU instance running overnight; it costs more than the auto-approval
limit, so she is told it waits while her team lead gets the approval card; the lead approves and
Alice gets the answer; she asks for the form again ("Keep another"), mistypes a name and gets it back
pre-filled ("Try again"), cancels a keep; a flow that skips its Compose reaches only the admins. The
nightly sweep then leaves her CI running and stops the rest, saying what that saves. Every card posted
is printed in a readable form, with whom it went to.

The fake platform is the pessimistic reading (fake_azure/platform.py): CI tags are refused, so the
exemption lands on the workspace. Teams answers reach the exemption runbook as Azure Automation
delivers them: the flow POSTs the armoured body ``{"b64": base64(<Teams response>)}`` with the
shared-secret header to the Automation webhook, which starts a job whose argv is the whitespace-split
envelope plus the webhook's own ``--settings-b64`` parameter (docs/admin.md, "Exemptions from Teams")."""

from __future__ import annotations

import base64
import json
import os
import sys
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Tuple

import requests
import responses

from fake_azure import FakeArmServer
from fake_azure.automation import FakeAutomation
from fake_azure.ml import FakeMachineLearning
from fake_azure.platform import PESSIMISTIC
from fake_azure.retail_prices import FakeRetailPrices
from fake_azure.teams import FakeTeamsWorkflow
from sandbox.cardtext import show_new
from sandbox.fleet import TENANT, sandbox_settings, seed_fleet
from shared.report import SUMMARY_MARKER
from shared.settings import encode_settings
from shared.tags import TagNames, read_exemption, workspace_exemption_tag, workspace_exemption_value
from shared.teams.routing import iter_elements

LEAD = {
    "objectId": "00000000-0000-4000-8000-000000000099",
    "tenantId": TENANT,
    "email": "lead@contoso.com",
    "userPrincipalName": "lead@contoso.com",
    "displayName": "Lena (team lead)",
}
CAROL = {
    "objectId": "00000000-0000-4000-8000-000000000003",
    "tenantId": TENANT,
    "email": "carol@contoso.com",
    "userPrincipalName": "carol@contoso.com",
    "displayName": "Carol",
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
    """What Teams returns when the card's "Other time…" button is pressed with ``compute_instance`` chosen."""
    found = [e["data"] for e in iter_elements(card) if e.get("type") == "Action.Submit" and e.get("title") == "Keep running until then"]
    if not found:
        raise SystemExit("the warning card has no keep-running action")
    return {**found[0], "compute_instance": compute_instance}


def _button(card: Dict[str, Any], title: str) -> Dict[str, Any]:
    found = [e["data"] for e in iter_elements(card) if e.get("type") == "Action.Submit" and e.get("title") == title]
    if not found:
        raise SystemExit(f"the card has no {title!r} button")
    return dict(found[0])


def _answered_to(teams: Any, since: int, who: str) -> bool:
    """Did every card posted after ``since`` that is not for the approvers or the admins go to ``who``?"""
    answers = [
        q
        for q, c in teams.addressed_cards[since:]
        if q.get("audience") != "approvers" and not str(c.get("fallbackText", "")).startswith("CI governance, for admins")
    ]
    return bool(answers) and all(q.get("recipient") == who for q in answers)


def _approve(pending_card: Dict[str, Any], approver: Dict[str, str], now: datetime) -> Dict[str, Any]:
    """The approver presses Approve on the pending card; the answer flow's Compose (docs/admin.md, "Cost-aware
    approval") turns Teams' response into the request again, with the approval."""
    action = next(a for a in pending_card.get("actions", []) if a.get("title") == "Approve")
    data = dict(action["data"])
    approval = {"outcome": data["outcome"], "approver": approver, "comments": "OK for tonight", "responseTime": now.strftime("%Y-%m-%dT%H:%M:%SZ")}
    return {"data": data["request"], "responder": data["requester"], "messageId": data["request_message_id"], "approval": approval}


SECRET_HEADER, SECRET = "X-CI-Governance-Secret", "sandbox-shared-secret-0042"
_RG, _ACCT, _SUB = "rg-automation", "aa-ci-governance", "00000000-0000-4000-8000-00000000aaaa"


def _exemption_webhook(server: FakeArmServer, doc: Dict[str, Any]) -> Tuple[FakeAutomation, str]:
    """The exemption runbook published in a (fake) Automation account, with its webhook; returns the URL."""
    from azure.mgmt.automation import AutomationClient
    from azure.mgmt.automation import models as m

    automation = FakeAutomation(server, platform=PESSIMISTIC.but(import_rate_limited=False))
    automation.add_account(_SUB, _RG, _ACCT, principal_id="00000000-0000-4000-8000-0000000000aa")
    client = AutomationClient(server.credential(), _SUB, polling_interval=0)
    runtime = m.RuntimeProperties(language="Python", version="3.10")
    client.runtime_environments.create(_RG, _ACCT, "ci-governance-py310", m.RuntimeEnvironment(properties=m.RuntimeEnvironmentProperties(runtime=runtime)))
    name = "handle_exemption_request"
    props = m.RunbookCreateOrUpdateProperties(runbook_type="Python", runtime_environment="ci-governance-py310", draft=m.RunbookDraft())
    client.runbook.create_or_update(_RG, _ACCT, name, m.RunbookCreateOrUpdateParameters(name=name, location="westeurope", properties=props))
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(here, "runbooks", f"{name}.py"), encoding="utf-8") as f:
        client.runbook_draft.begin_replace_content(_RG, _ACCT, name, f.read()).result()
    client.runbook.begin_publish(_RG, _ACCT, name).result()
    uri = json.loads(client.webhook.generate_uri(_RG, _ACCT))
    hook = m.WebhookCreateOrUpdateProperties(
        is_enabled=True,
        uri=uri,
        expiry_time=datetime.now(timezone.utc) + timedelta(days=365),
        parameters={"args": f"--settings-b64 {encode_settings(doc)}"},
        runbook=m.RunbookAssociationProperty(name=name),
    )
    hook_name = "ci-governance-handle_exemption_request"
    client.webhook.create_or_update(_RG, _ACCT, hook_name, m.WebhookCreateOrUpdateParameters(name=hook_name, properties=hook))
    return automation, uri


def _post(automation: FakeAutomation, uri: str, body: Dict[str, Any]) -> Tuple[int, Dict[str, Any]]:
    """What the flow's HTTP action does: POST the armoured body with the shared secret; the job's exit and summary."""
    armoured = {"b64": base64.b64encode(json.dumps(body).encode("utf-8")).decode("ascii")}
    r = requests.post(uri, json=armoured, headers={SECRET_HEADER: SECRET}, timeout=60)
    if r.status_code != 202:
        raise SystemExit(f"the webhook answered {r.status_code}: {r.text}")
    job = automation.job(_SUB, _RG, _ACCT, r.json()["JobIds"][0])
    output = job.stream_text("Output")
    print(output)
    print(f"(job {job.job_id}: {job.status}; argv had {len(job.argv)} whitespace-split values)")
    return job.exit_code if job.exit_code is not None else 1, _summary(output)


def _keep_on_workspace(ml: FakeMachineLearning, ci_name: str, now: datetime) -> None:
    """Move a seeded exemption from the CI's tags to its workspace tag, where the exemption runbook
    records one when the platform refuses CI tag writes."""
    ws, ci = next((ws, ci) for ws, ci in ml.all_instances() if ci.name == ci_name)
    names = TagNames()
    found = read_exemption(ci.tags, now, names)
    assert found.exemption is not None, f"{ci_name} was seeded without an exemption"
    ws.tags[workspace_exemption_tag(ci_name, names)] = workspace_exemption_value(found.exemption)
    for key in names.exemption_keys:
        ci.tags.pop(key, None)


def run_evening(extra_args: List[str]) -> int:
    """Warning → exemption from the warning card → sweep; returns non-zero if any step misbehaves."""
    from runbooks import stop_compute_instances, warn_before_stop

    now = datetime.now(timezone.utc).replace(microsecond=0)
    server = FakeArmServer(latency=0.005)
    ml = FakeMachineLearning(server, stop_seconds=0.5, platform=PESSIMISTIC)
    teams = FakeTeamsWorkflow(server)
    FakeRetailPrices(server)
    seed_fleet(ml, now)
    # On this (pessimistic) platform an exemption recorded from Teams lives on the workspace, since the
    # CI's own tags are not writable: Carol's earlier keep is there too, so she can cancel it from Teams.
    _keep_on_workspace(ml, "ci-carol-train", now)
    doc = sandbox_settings(teams.url)
    doc["teams"]["shared_secret"] = SECRET
    doc["exemption"] = {
        "require_shared_secret": SECRET_HEADER,
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
        automation, hook_url = _exemption_webhook(server, doc)

        print("=" * 100 + "\n1. The pre-stop warning, 30 minutes before the stop (runbooks/warn_before_stop.py)\n" + "=" * 100)
        code, warn = _run(warn_before_stop.main, settings + extra_args, credential=server.credential(), now=now)
        warning_cards = list(teams.cards)
        print(f"-> exit code {code}; {len(warning_cards)} warning card(s) posted, one per owner and workspace:")
        seen = show_new(teams, 0, "evening", "the pre-stop warning")
        alice_card = next((c for c in warning_cards if "ci-alice-gpu" in json.dumps(c)), None)
        if code != 0 or alice_card is None:
            problems.append("the warning did not reach Alice about ci-alice-gpu")
            return _verdict(problems)

        print("=" * 100 + '\n2. Alice keeps ci-alice-gpu from her card: "Other time…", tomorrow 08:00 (runbooks/handle_exemption_request.py)\n' + "=" * 100)
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
        code, answer = _post(automation, hook_url, response)
        outcomes = [r["outcome"] for r in answer["results"]]
        print(f"-> exit code {code}; outcome {outcomes}; estimated cost {(answer.get('cost') or {}).get('text')}")
        if not _answered_to(teams, seen, "alice@contoso.com"):
            problems.append("the waiting-for-approval answer did not go back to Alice")
        seen = show_new(teams, seen, "evening", "Alice keeps her GPU instance")
        if outcomes != ["pending_approval"]:
            problems.append(f"a GPU exemption above the cost limit was not sent for approval: {outcomes}")
            return _verdict(problems)

        print("=" * 100 + "\n3. Her team lead presses Approve on the waiting-for-approval card\n" + "=" * 100)
        approved = _approve(teams.cards[-1], LEAD, now)
        code, answer = _post(automation, hook_url, approved)
        outcomes = [r["outcome"] for r in answer["results"]]
        print(f"-> exit code {code}; outcome {outcomes}; approved by {answer.get('approved_by')}; recorded on {answer.get('recorded_on')}")
        if code != 0 or outcomes != ["exempted"]:
            problems.append(f"Alice's approved exemption was not recorded: {outcomes}")
        if not _answered_to(teams, seen, "alice@contoso.com"):
            problems.append("the approval's outcome did not go back to Alice")
        approved_card = teams.cards[-1]
        seen = show_new(teams, seen, "evening", "the lead approves")

        steps = [
            (
                '4. Alice presses "Keep another" on that answer: the request form again, with her CIs',
                _button(approved_card, "Keep another"),
                "form_sent",
                ALICE,
            ),
            ("5. She mistypes the compute instance name", {**data, "compute_instance": "ci-alice-gpx"}, "rejected", ALICE),
            (
                "6. Carol cancels the keep on her training instance",
                {"action": "cancel_exemption", "workspace": data["workspace"], "compute_instance": "ci-carol-train"},
                "cancelled",
                CAROL,
            ),
        ]
        for title, press, want, who in steps:
            print("=" * 100 + "\n" + title + "\n" + "=" * 100)
            body = {"data": press, "responder": who, "messageId": f"sandbox-{want}", "submitActionId": title}
            code, answer = _post(automation, hook_url, body)
            outcomes = [r["outcome"] for r in answer["results"]]
            print(f"-> exit code {code}; outcome {outcomes}")
            if outcomes != [want] or not _answered_to(teams, seen, who["userPrincipalName"]):
                problems.append(f"{title}: expected {want} answered to {who['displayName']}, got {outcomes}")
            if want == "rejected":
                last = teams.cards[-1]
            seen = show_new(teams, seen, "evening", title)
        print("=" * 100 + '\n7. Alice presses "Try again": the request comes back pre-filled\n' + "=" * 100)
        body = {"data": _button(last, "Try again"), "responder": ALICE, "messageId": "sandbox-again"}
        code, answer = _post(automation, hook_url, body)
        if [r["outcome"] for r in answer["results"]] != ["form_sent"] or not _answered_to(teams, seen, "alice@contoso.com"):
            problems.append("Try again did not post the form back to Alice")
        seen = show_new(teams, seen, "evening", "Try again")
        print("=" * 100 + "\n8. A flow that skips its Compose forwards the raw Approve press: only the admins hear the detail\n" + "=" * 100)
        raw = {"data": {"action": "exemption_approval", "outcome": "Approve"}, "responder": LEAD, "messageId": "sandbox-raw"}
        code, answer = _post(automation, hook_url, raw)
        if not answer.get("admins_told"):
            problems.append("a wiring error did not reach the admins")
        seen = show_new(teams, seen, "evening", "a flow that skips its Compose")

        print("=" * 100 + "\n9. The nightly sweep, 30 minutes later (runbooks/stop_compute_instances.py)\n" + "=" * 100)
        code, sweep = _run(stop_compute_instances.main, settings, credential=server.credential(), now=now + timedelta(minutes=30))
        outcome = {r["compute_instance"]: r["outcome"] for r in sweep["results"]}
        if outcome.get("ci-alice-gpu") != "exempt":
            problems.append(f"the sweep did not honour Alice's exemption: {outcome.get('ci-alice-gpu')}")
        alice = next((ci for ws, ci in ml.all_instances() if ci.name == "ci-alice-gpu"), None)
        if alice is None or alice.state != "Running":
            problems.append(f"ci-alice-gpu is not running after the sweep: {alice.state if alice else 'missing'}")
        if code != 0:
            problems.append(f"the sweep exited {code}")
        print(f"-> exit code {code}; money: {sweep.get('cost_avoided_text') or 'no price known'}")
        show_new(teams, seen, "evening", "the nightly sweep")
    return _verdict(problems)


def _verdict(problems: List[str]) -> int:
    print("=" * 100)
    if problems:
        print("Sandbox evening FAILED:\n  " + "\n  ".join(problems))
        return 1
    print(
        "Sandbox evening passed: warned with prices; exemption asked from the warning card, priced, approved above the cost limit, every answer "
        "back to the person who asked; the form again pre-filled; wiring errors to the admins only; the sweep honoured the exemption."
    )
    return 0
