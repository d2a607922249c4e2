"""The Teams side end to end, through the Logic App template itself (deployment/logicapp/azuredeploy.json).

    python -m sandbox teams [--route job|webhook]

1. publish's Logic App step (deployment/logicapp.py) deploys the template into the fake resource group, reads
   the trigger URL back and wires it into the runbooks' settings; the admin authorizes the Teams connection;
2. the warning runbook runs as an Automation job and posts its cards to that URL; the workflow (run by the
   fake's interpreter, fake_azure/logic_apps.py) posts each with "Post adaptive card and wait for a response";
3. Alice presses "Keep ci-alice-gpu running" with her inputs; the workflow forwards the answer to the
   exemption runbook (route job: Automation Create job with its managed identity and --request-b64; route
   webhook: the armoured {"b64": ...} body to the runbook's webhook, which Automation hands over in its real
   whitespace-split envelope); the exemption costs more than the limit, so the runbook posts the
   waiting-for-approval card; her lead presses Approve; the workflow's approval step turns that press into the
   request plus approval and forwards it; the exemption is recorded;
4. the nightly sweep (a job too) leaves ci-alice-gpu running and stops the others.

A create request runs the same way: the request form posted through the workflow, a GPU size that needs an
approver, the approver's press, the CI created.

Every hop is printed; the story checks its own result (:func:`run_story` returns the problems found).
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import responses
from azure.mgmt.automation import AutomationClient
from azure.mgmt.automation import models as m

from deployment import logicapp
from deployment.desired import split_secrets
from deployment.secrets import KeyVaultSecrets
from fake_azure import FakeArmServer
from fake_azure.automation import FakeAutomation, FakeJob
from fake_azure.keyvault import FakeKeyVault
from fake_azure.logic_apps import FakeLogicApps, TeamsPost, press
from fake_azure.ml import FakeMachineLearning
from fake_azure.platform import PESSIMISTIC, Platform
from fake_azure.retail_prices import FakeRetailPrices
from sandbox.evening import ALICE, LEAD
from sandbox.fleet import SUB_RESEARCH, TENANT, sandbox_settings, seed_fleet
from shared.create.request import request_card_context
from shared.models import WorkspaceRef
from shared.sections import CreateSection
from shared.settings import encode_settings
from shared.teams.cards import render_card

ROOT = Path(__file__).resolve().parents[1]
SUB, RG, ACCT = SUB_RESEARCH, "rg-automation", "aa-ci-governance"
PRINCIPAL = "aaaaaaaa-0000-4000-8000-0000000000ab"  # the Automation account's managed identity
GROUP, CHANNEL = "0f0f0f0f-1111-4222-8333-444444444444", "19:ci-governance@thread.tacv2"
RUNBOOKS = ("warn_before_stop", "handle_exemption_request", "stop_compute_instances", "create_compute_instance")
# The platform reading the story runs on: jobs executed, the pessimistic webhook envelope (escaped body).
STORY_PLATFORM: Platform = PESSIMISTIC.but(import_rate_limited=False)
ADA = {
    "objectId": "00000000-0000-4000-8000-000000000007",
    "tenantId": TENANT,
    "email": "ada@contoso.com",
    "userPrincipalName": "ada@contoso.com",
    "displayName": "Ada",
}


@dataclass
class Story:
    """The fakes and what happened, for the sandbox's checks and the tests' asserts."""

    route: str
    server: FakeArmServer
    ml: FakeMachineLearning
    automation: FakeAutomation
    apps: FakeLogicApps
    client: AutomationClient
    settings: dict
    out: Callable[[str], None]
    vault: Optional[FakeKeyVault] = None
    problems: List[str] = field(default_factory=list)
    jobs_seen: int = 0

    @property
    def job_settings_arg(self) -> str:
        """``--settings-b64`` as publish.py gives every job: the settings without their secrets (Key Vault)."""
        return f"--settings-b64 {encode_settings(split_secrets(self.settings)[0])}"

    def job(self, runbook: str, args: str) -> FakeJob:
        name = f"job-{runbook}-{len(self.automation.account(SUB, RG, ACCT).jobs)}"
        props = m.JobCreateProperties(runbook=m.RunbookAssociationProperty(name=runbook), parameters={"args": args})
        self.client.job.create(RG, ACCT, name, m.JobCreateParameters(properties=props))
        return self.automation.job(SUB, RG, ACCT, name)

    def new_jobs(self) -> List[FakeJob]:
        jobs = list(self.automation.account(SUB, RG, ACCT).jobs.values())
        fresh, self.jobs_seen = jobs[self.jobs_seen :], len(jobs)
        return fresh

    def show_runs(self, since: int) -> None:
        for run in self.apps.runs[since:]:
            self.out(f"   Logic App run {run.run_id}: {run.run_status}")
            for entry in run.log:
                self.out("      " + re.sub(r"/subscriptions/[^ ]+/automationAccounts/[^/]+", "…/automationAccounts/" + ACCT, entry))


def _summary(job: FakeJob) -> Dict[str, Any]:
    line = next((ln for ln in job.output.splitlines() if ln.startswith("CI_GOVERNANCE_SUMMARY ")), None)
    return json.loads(line.split(" ", 1)[1]) if line else {}


def setup(route: str, out: Callable[[str], None]) -> Story:
    """Fake Azure with a seeded fleet, the runbooks published, and the Logic App deployed by publish's own module."""
    now = datetime.now(timezone.utc)
    server = FakeArmServer()
    ml = FakeMachineLearning(server, stop_seconds=0.05, start_seconds=0.05, create_seconds=0.05)
    FakeRetailPrices(server)
    seed_fleet(ml, now)
    automation = FakeAutomation(server, platform=STORY_PLATFORM)
    automation.add_account(SUB, RG, ACCT, principal_id=PRINCIPAL)
    # The runbooks' secret settings (the trigger URL) live in Key Vault, as publish.py keeps them (issue 11):
    # Key Vault Secrets User for the account's identity, Secrets Officer for the publisher ("admin").
    vault = FakeKeyVault(server, "kv-governance", readers={PRINCIPAL, "admin"}, writers={"admin"})
    apps = FakeLogicApps(server)
    client = AutomationClient(server.credential(), SUB, polling_interval=0)
    return Story(route, server, ml, automation, apps, client, {}, out, vault)


def deploy(story: Story, settings_extra: Optional[dict] = None) -> None:
    client, out = story.client, story.out
    runtime = m.RuntimeProperties(language="Python", version="3.10")
    client.runtime_environments.create(RG, ACCT, "env-py310", m.RuntimeEnvironment(properties=m.RuntimeEnvironmentProperties(runtime=runtime)))
    for name in RUNBOOKS:
        props = m.RunbookCreateOrUpdateProperties(runbook_type="Python", runtime_environment="env-py310", draft=m.RunbookDraft())
        client.runbook.create_or_update(RG, ACCT, name, m.RunbookCreateOrUpdateParameters(name=name, location="westeurope", properties=props))
        client.runbook_draft.begin_replace_content(RG, ACCT, name, (ROOT / "runbooks" / f"{name}.py").read_text(encoding="utf-8")).result()
        client.runbook.begin_publish(RG, ACCT, name).result()
    settings = sandbox_settings("https://placeholder.invalid/")  # teams.workflow_url is wired by the Logic App step
    settings["exemption"] = {
        "readback_delay_seconds": 0,
        "time_zones": ["UTC", "Europe/Amsterdam"],
        "default_time_zone": "Europe/Amsterdam",
        "auto_approve_below": {"amount": 20, "currency": "USD"},
        "approvers": ["lead@contoso.com"],
    }
    settings["create"] = {
        "allowed_sizes": ["Standard_DS3_v2", "Standard_NC6s_v3"],
        "sizes_needing_approval": ["STANDARD_NC*"],
        "approvers": ["lead@contoso.com"],
        "timeout_seconds": 30,
        "polling_interval_seconds": 0.05,  # the fake creates in 0.05 s: no need for Azure's 30 s polling
    }
    settings.update(settings_extra or {})
    assert story.vault is not None
    settings["secrets"] = {"key_vault": story.vault.url}
    opts = logicapp.Options(SUB, RG, ACCT, "westeurope", GROUP, CHANNEL, "", "", story.route, logicapp.DEFAULT_NAME)
    arm = logicapp.Arm(client)
    app = logicapp.TeamsApp(
        opts,
        arm,
        client,
        settings,
        lambda doc: encode_settings(split_secrets(doc)[0]),
        logicapp.observe(arm, client, opts),
        lambda: datetime.now(timezone.utc),
        lambda s: None,
    )
    app.bootstrap(lambda line: out("   " + line))
    app.apply(lambda line: out("   " + line))
    story.settings = app.settings
    store = KeyVaultSecrets(story.vault.url, story.server.credential())
    for secret in split_secrets(story.settings)[1]:
        store.set(secret.name, secret.value)
    out(f"   secrets kept in Key Vault {story.vault.name}: {', '.join(s.setting for s in split_secrets(story.settings)[1])}")
    out(f"   trigger URL in the settings: {story.settings['teams']['workflow_url'].split('?')[0]}?...&sig=***")
    story.apps.authorize()
    out("   the admin authorized the Teams connection (the one manual step)")


def run_exemption(story: Story) -> None:
    out = story.out
    now = datetime.now(timezone.utc)
    tomorrow = (now + timedelta(days=1)).strftime("%Y-%m-%d")

    def responder(post: TeamsPost) -> Optional[Dict[str, Any]]:
        text = json.dumps(post.card)
        if "ci-alice-gpu" in text and "Keep running until then" in text:
            # The warning's "Other time…": Alice picks her CI in the card's list and types when and why.
            inputs = {
                "compute_instance": "ci-alice-gpu",
                "until_date": tomorrow,
                "until_time": "08:00",
                "time_zone": "Europe/Amsterdam",
                "reason": "Fine-tuning run; checkpoint at 06:00",
            }
            return press(post.card, "Keep running until then", ALICE, inputs, message_id="msg-alice-1")
        if any(a.get("title") == "Approve" for a in post.card.get("actions") or []):
            return press(post.card, "Approve", LEAD, {"comments": "OK for tonight"})
        return None  # the other owners do not answer; confirmation cards wait for a Cancel nobody presses

    story.apps.teams.responder = responder
    settings_arg = story.job_settings_arg
    story.new_jobs()
    runs = len(story.apps.runs)
    out("2. 18:30 - the warning runbook runs as an Automation job and posts one card per owner to the Logic App")
    warn = story.job("warn_before_stop", settings_arg)
    out(f"   job warn_before_stop: {warn.status}")
    story.show_runs(runs)
    jobs = story.new_jobs()[1:]
    handled = [(j, _summary(j)) for j in jobs if j.runbook == "handle_exemption_request"]
    for j, s in handled:
        how = f"webhook {j.webhook}" if j.webhook else "Create job API (--request-b64)"
        out(
            f"   job handle_exemption_request via {how}: {j.status}; "
            f"outcomes {[r['outcome'] for r in s.get('results', [])]}; approved by {s.get('approved_by')}"
        )
    outcomes = [r["outcome"] for _, s in handled for r in s.get("results", [])]
    if outcomes[:2] != ["pending_approval", "exempted"]:
        story.problems.append(f"expected the exemption to wait for approval, then be recorded; the runbook reported {outcomes or 'nothing'}")
        for j, _ in handled:
            tail = "\n".join(j.stream_text("Error").splitlines()[-5:]) or j.output[-400:]
            out(f"   [{j.status}] {tail}")
    tags = story.ml.compute(SUB_RESEARCH, "rg-ml-research", "mlw-vision", "ci-alice-gpu").tags
    recorded = {k: v for k, v in tags.items() if "exempt" in k}
    out(f"   tags on ci-alice-gpu: {recorded}")
    out("3. 19:00 - the nightly sweep runs as a job")
    sweep = story.job("stop_compute_instances", settings_arg)
    result = {r["compute_instance"]: r["outcome"] for r in _summary(sweep).get("results", [])}
    out(f"   job stop_compute_instances: {sweep.status}; ci-alice-gpu -> {result.get('ci-alice-gpu')}; {_summary(sweep).get('cost_avoided_text') or ''}")
    if result.get("ci-alice-gpu") != "exempt":
        story.problems.append(f"the sweep did not leave ci-alice-gpu running: {result.get('ci-alice-gpu')}")
    if story.ml.compute(SUB_RESEARCH, "rg-ml-research", "mlw-vision", "ci-alice-gpu").state != "Running":
        story.problems.append("ci-alice-gpu is not running after the sweep")


def run_create(story: Story) -> None:
    """Ada asks for a GPU instance on the request form posted through the workflow; her lead approves."""
    out = story.out
    section = CreateSection(allowed_sizes=("Standard_DS3_v2", "Standard_NC6s_v3"), sizes_needing_approval=("STANDARD_NC*",))
    form = render_card("compute_request", **request_card_context(section, [WorkspaceRef(SUB_RESEARCH, "rg-ml-research", "mlw-vision")], "Standard_DS3_v2"))

    def responder(post: TeamsPost) -> Optional[Dict[str, Any]]:
        if post.card == form:
            inputs = {
                "workspace": f"{SUB_RESEARCH}/rg-ml-research/mlw-vision",
                "name": "ci-ada-gpu",
                "size": "Standard_NC6s_v3",
                "idle_minutes": "60",
                "cost_center": "CC-4711",
            }
            return press(post.card, "Request compute instance", ADA, inputs, message_id="msg-ada-1")
        if any(a.get("title") == "Approve" for a in post.card.get("actions") or []):
            return press(post.card, "Approve", LEAD, {"comments": "GPU approved"})
        return None

    story.apps.teams.responder = responder
    story.new_jobs()
    runs = len(story.apps.runs)
    out("4. The create request form is posted through the Logic App (the entry point, wait=true); Ada asks for a GPU instance")
    import requests

    envelope = {"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": form}]}
    answer = requests.post(story.settings["teams"]["workflow_url"] + "&wait=true", json=envelope, timeout=30)
    out(f"   POST to the trigger URL: {answer.status_code}")
    story.show_runs(runs)
    for j in story.new_jobs():
        s = _summary(j)
        out(f"   job {j.runbook}: {j.status}; outcomes {[r['outcome'] for r in s.get('results', [])]}")
    try:
        state = story.ml.compute(SUB_RESEARCH, "rg-ml-research", "mlw-vision", "ci-ada-gpu").state
    except KeyError:
        state = None
    out(f"   ci-ada-gpu: {state or 'not created'}")
    approval_cards = [p for p in story.apps.teams.posts if any(a.get("title") == "Approve" for a in p.card.get("actions") or [])]
    if state is None and not approval_cards:
        story.problems.append("ci-ada-gpu needs an approver, but the create runbook posted no approval card through the workflow (issue 13)")
    elif state is None:
        story.problems.append("ci-ada-gpu was not created after the approval")


def run_story(route: str = "job", out: Callable[[str], None] = print, parts: tuple = ("exemption",)) -> Story:
    """Run the story inside its own fake Azure; returns it with ``problems`` filled in."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        story = setup(route, out)
        story.server.install(mock)
        out(f"1. publish's Logic App step deploys deployment/logicapp/azuredeploy.json (route {route})")
        deploy(story)
        if "exemption" in parts:
            run_exemption(story)
        if "create" in parts:
            run_create(story)
    return story


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox teams", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--route", choices=logicapp.ROUTES, default="job", help="how the Logic App reaches the runbooks (default job: works with today's runbooks)"
    )
    parser.add_argument("--create", action="store_true", help="also run the create request with an approval")
    args = parser.parse_args(argv)
    print("=" * 100)
    story = run_story(args.route, print, ("exemption", "create") if args.create else ("exemption",))
    print("=" * 100)
    if story.problems:
        print("Sandbox teams FAILED:\n  " + "\n  ".join(story.problems))
        return 1
    print(
        "Sandbox teams passed: the card went through the Logic App, the answer reached the exemption runbook, the approval step worked, the sweep honoured it."
    )
    return 0
