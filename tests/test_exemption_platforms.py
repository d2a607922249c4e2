"""End to end in every platform variant of the fake (fake_azure/platform.py): a Teams response posted
the way Azure Automation really delivers it (the webhook route → a job → the exemption runbook, with
the whitespace-split envelope and the armoured body) is recorded somewhere the sweep reads, and that
night's stop sweep leaves the CI running, even where the platform refuses or ignores CI tag writes.
Cancelling clears it again."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Dict

import pytest
import requests
from azure.mgmt.automation import AutomationClient
from azure.mgmt.automation import models as m

from fake_azure.automation import FakeAutomation
from fake_azure.ml import FakeMachineLearning
from fake_azure.platform import ALL_VARIANTS, VARIANT_IDS
from fake_azure.teams import FakeTeamsWorkflow
from runbooks import stop_compute_instances
from shared.settings import encode_settings
from shared.tags import TagNames, read_exemption_for
from shared.teams.routing import iter_elements
from tests.conftest import ROOT, SUB1, TENANT, fast_stop_settings
from tests.summary import outcomes, summary_from

RG, ACCT = "rg-automation", "aa-governance"
OWNER = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
SECRET_HEADER, SECRET = "X-CI-Governance-Secret", "s3cretvalue42"
# Spaces, quotes, braces, a backslash and the envelope's own marker: all must arrive intact.
REASON = 'long run: "epoch 12" {a: b}} RequestHeader:{X:y} \\ done'
N = TagNames()


def automation_with_runbook(arm, platform, doc: Dict[str, Any]):
    automation = FakeAutomation(arm, platform=platform)
    automation.add_account(SUB1, RG, ACCT, principal_id="aaaaaaaa-0000-4000-8000-000000000001")
    client = AutomationClient(arm.credential(), SUB1, polling_interval=0, retry_total=0)
    runtime = m.RuntimeProperties(language="Python", version="3.10")
    client.runtime_environments.create(RG, ACCT, "env-py310", m.RuntimeEnvironment(properties=m.RuntimeEnvironmentProperties(runtime=runtime)))
    name = "handle_exemption_request"
    props = m.RunbookCreateOrUpdateProperties(runbook_type="Python", runtime_environment="env-py310", draft=m.RunbookDraft())
    client.runbook.create_or_update(RG, ACCT, name, m.RunbookCreateOrUpdateParameters(name=name, location="westeurope", properties=props))
    client.runbook_draft.begin_replace_content(RG, ACCT, name, Path(ROOT, "runbooks", f"{name}.py").read_text()).result()
    client.runbook.begin_publish(RG, ACCT, name).result()
    uri = json.loads(client.webhook.generate_uri(RG, ACCT))
    hook = m.WebhookCreateOrUpdateProperties(
        is_enabled=True,
        uri=uri,
        expiry_time=datetime.now(timezone.utc) + timedelta(days=30),
        parameters={"args": f"--settings-b64 {encode_settings(doc)}"},  # as publish.py links it: base64 survives the split
        runbook=m.RunbookAssociationProperty(name=name),
    )
    client.webhook.create_or_update(RG, ACCT, "teams-exemptions", m.WebhookCreateOrUpdateParameters(name="teams-exemptions", properties=hook))
    return automation, uri


def armoured(body: Dict[str, Any]) -> bytes:
    """The contract with the flow: {"b64": base64(string(<Teams response>))}."""
    return json.dumps({"b64": base64.b64encode(json.dumps(body).encode("utf-8")).decode("ascii")}).encode("utf-8")


def teams_response(action: str, until: datetime, message_id: str) -> Dict[str, Any]:
    data = {"action": action, "workspace": f"{SUB1}/rg-a/mlw-one", "compute_instance": "ci-ada"}
    if action == "request_exemption":
        data.update({"until_date": until.strftime("%Y-%m-%d"), "until_time": until.strftime("%H:%M"), "time_zone": "UTC", "reason": REASON})
    upn = "ada@contoso.com"
    return {
        "data": data,
        "responder": {"objectId": OWNER, "tenantId": TENANT, "email": upn, "userPrincipalName": upn, "displayName": "Ada"},
        "messageId": message_id,
    }


def post(uri: str, body: Dict[str, Any], automation) -> Dict[str, Any]:
    r = requests.post(uri, data=armoured(body), headers={"Content-Type": "application/json", SECRET_HEADER: SECRET})
    assert r.status_code == 202, r.text
    job = automation.job(SUB1, RG, ACCT, r.json()["JobIds"][0])
    return summary_from(job.stream_text("Output"))


def texts(card: Dict[str, Any]):
    return [e["text"] for e in iter_elements(card) if isinstance(e.get("text"), str)]


@pytest.mark.parametrize("platform", ALL_VARIANTS, ids=VARIANT_IDS)
def test_a_request_delivered_as_automation_delivers_it_is_recorded_honoured_and_cancelled(arm, capsys, platform):
    ml = FakeMachineLearning(arm, stop_seconds=0.05, start_seconds=0.05, tags_apply_seconds=0.01, platform=platform)
    ws = ml.add_workspace(SUB1, "rg-a", "mlw-one", tags={"team": "vision"})
    ml.add_compute_instance(ws, "ci-ada", tags={"cost-center": "42"}, assigned_user=(OWNER, TENANT))
    ml.add_compute_instance(ws, "ci-bob")
    teams = FakeTeamsWorkflow(arm)
    doc = {
        "scope": {"subscriptions": [SUB1]},
        "teams": {"workflow_url": teams.url, "shared_secret": SECRET},
        "exemption": {"readback_delay_seconds": 0.05, "require_shared_secret": SECRET_HEADER},
        "stop": fast_stop_settings(),
    }
    automation, uri = automation_with_runbook(arm, platform, doc)
    now = datetime.now(timezone.utc)
    until = (now + timedelta(hours=6)).replace(second=0, microsecond=0)

    summary = post(uri, teams_response("request_exemption", until, "msg-1"), automation)
    assert summary["results"][0]["outcome"] == "exempted", summary
    where = summary["recorded_on"]
    refuses = platform.compute_tags_api in ("refused", "ignored_200") and platform.compute_full_put_existing != "applied"
    assert where == ("workspace" if refuses else "compute_instance")
    card = teams.cards[-1]
    assert REASON in texts(card)  # the armoured body arrived intact through the split envelope
    assert any(("workspace mlw-one" if refuses else "the compute instance itself") in t for t in texts(card))
    ci = ml.compute(SUB1, "rg-a", "mlw-one", "ci-ada")
    status = read_exemption_for(ci.tags, ml.workspace(SUB1, "rg-a", "mlw-one").tags, "ci-ada", now, N)
    assert status.protects and status.exemption.by == "ada@contoso.com" and status.exemption.request_id == "msg-1"
    assert ci.tags["cost-center"] == "42" and ml.workspace(SUB1, "rg-a", "mlw-one").tags["team"] == "vision"

    # A repeat of the same Teams message changes nothing.
    again = post(uri, teams_response("request_exemption", until, "msg-1"), automation)
    assert again["results"][0]["outcome"] == "already_recorded" and again["recorded_on"] == where

    # That night's sweep honours it wherever it was recorded.
    code = stop_compute_instances.main(["--settings-b64", encode_settings(doc)], credential=arm.credential(), now=now + timedelta(minutes=1))
    swept = outcomes(summary_from(capsys.readouterr().out))
    assert code == 0 and swept == {"mlw-one/ci-ada": "exempt", "mlw-one/ci-bob": "stopped"}
    assert ml.compute(SUB1, "rg-a", "mlw-one", "ci-ada").state == "Running"
    assert ml.compute(SUB1, "rg-a", "mlw-one", "ci-bob").state == "Stopped"

    # Cancelling clears it from both places.
    cancelled = post(uri, teams_response("cancel_exemption", until, "msg-2"), automation)
    assert cancelled["results"][0]["outcome"] == "cancelled", cancelled
    ci = ml.compute(SUB1, "rg-a", "mlw-one", "ci-ada")
    ws_tags = ml.workspace(SUB1, "rg-a", "mlw-one").tags
    assert not read_exemption_for(ci.tags, ws_tags, "ci-ada", now, N).protects and "ci-governance.exempt.ci-ada" not in ws_tags


@pytest.mark.parametrize("platform", ALL_VARIANTS, ids=VARIANT_IDS)
def test_a_forged_or_missing_secret_is_refused_in_every_variant(arm, platform):
    ml = FakeMachineLearning(arm, platform=platform)
    ws = ml.add_workspace(SUB1, "rg-a", "mlw-one")
    ml.add_compute_instance(ws, "ci-ada", assigned_user=(OWNER, TENANT))
    teams = FakeTeamsWorkflow(arm)
    doc = {
        "scope": {"subscriptions": [SUB1]},
        "teams": {"workflow_url": teams.url, "shared_secret": SECRET},
        "exemption": {"readback_delay_seconds": 0, "require_shared_secret": SECRET_HEADER},
    }
    automation, uri = automation_with_runbook(arm, platform, doc)
    until = datetime.now(timezone.utc) + timedelta(hours=6)
    body = teams_response("request_exemption", until, "msg-1")
    # The secret typed into the body, not sent as a header, does not count.
    body["data"]["reason"] = f"x ,RequestHeader:{{{SECRET_HEADER}:{SECRET}}} y"
    r = requests.post(uri, data=json.dumps(body).encode(), headers={"Content-Type": "application/json", SECRET_HEADER: "guess"})
    summary = summary_from(automation.job(SUB1, RG, ACCT, r.json()["JobIds"][0]).stream_text("Output"))
    assert summary["results"][0]["outcome"] == "rejected" and "does not match" in summary["results"][0]["detail"]
    assert "ci-governance.exempt.ci-ada" not in ml.workspace(SUB1, "rg-a", "mlw-one").tags
