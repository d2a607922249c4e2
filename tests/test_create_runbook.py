"""End to end: the create runbook, through azure-ai-ml and azure-core, against the fake Azure ML."""

from __future__ import annotations

import json
import time

import pytest

from fake_azure import Fault
from fake_azure.ml import FakeMachineLearning
from runbooks import create_compute_instance
from shared.create.request import RequestError, request_card_context, request_from_teams
from shared.models import WorkspaceRef
from shared.sections import CreateSection
from shared.settings import encode_settings
from shared.tags import TagNames
from shared.teams.cards import render_card
from shared.teams.routing import iter_elements
from tests.builders import ADA, BOB, BOSS, armoured, cli, envelope_argv, only_result, teams_body
from tests.builders import create_run as run
from tests.builders import create_settings as settings
from tests.cardcheck import assert_valid_card
from tests.conftest import SUB1, SUB2, TENANT
from tests.summary import summary_from

N = TagNames()
WS_KEY = f"{SUB1}/rg-ml/mlw-one"












@pytest.fixture
def ws(ml):
    return ml.add_workspace(SUB1, "rg-ml", "mlw-one")


@pytest.fixture
def wire(arm, monkeypatch):
    """The JSON bodies of every PUT the fake received."""
    bodies = []
    handle = arm.handle

    def recording(method, url, headers, body):
        if method.upper() == "PUT":
            bodies.append(json.loads(body))
        return handle(method, url, headers, body)

    monkeypatch.setattr(arm, "handle", recording)
    return bodies


# -- creating -----------------------------------------------------------------------------


def test_creates_with_size_user_idle_and_tags_on_the_wire(arm, ml, ws, wire, capsys):
    code, summary, out = run(arm, capsys, cli("ci-ada", "standard_ds3_v2", "--idle-minutes", "45", "--owner", "lead@contoso.com"))
    assert code == 0
    row = only_result(summary)
    assert row["outcome"] == "created" and row["state"] == "Running" and row["vm_size"] == "Standard_DS3_v2"
    # What azure-ai-ml PUT (Compute/createOrUpdate/ComputeInstance.json, 2023-08-01-preview)
    assert len(wire) == 1
    body = wire[0]
    inner = body["properties"]["properties"]
    assert body["properties"]["computeType"] == "ComputeInstance"
    assert inner["vmSize"] == "Standard_DS3_v2"
    assert inner["personalComputeInstanceSettings"] == {"assignedUser": {"objectId": ADA, "tenantId": TENANT}}
    assert inner["idleTimeBeforeShutdown"] == "PT45M"
    assert body["tags"] == {N.owner: "lead@contoso.com", "cost-center": "CC-4711"}
    assert body["location"] == "westeurope"  # azure-ai-ml uses the workspace's location
    # ... and what the service stored
    ci = ml.compute(SUB1, "rg-ml", "mlw-one", "ci-ada")
    assert (ci.state, ci.vm_size, ci.assigned_user, ci.idle_minutes) == ("Running", "Standard_DS3_v2", (ADA, TENANT), 45)
    assert ci.tags == {N.owner: "lead@contoso.com", "cost-center": "CC-4711"}
    assert "CREATED          mlw-one/ci-ada  [Running]" in out


def test_default_idle_time_and_owner(arm, ml, ws, wire, capsys):
    code, summary, _ = run(arm, capsys, cli())
    assert code == 0 and only_result(summary)["extra"]["idle_minutes"] == 60
    assert wire[0]["properties"]["properties"]["idleTimeBeforeShutdown"] == "PT60M"
    assert wire[0]["tags"][N.owner] == "ada@contoso.com"


def test_second_request_changes_nothing(arm, ml, ws, capsys):
    assert run(arm, capsys, cli())[0] == 0
    before = ml.compute(SUB1, "rg-ml", "mlw-one", "ci-ada")
    snapshot = (before.state, before.vm_size, dict(before.tags), before.idle_minutes, before.created_on)
    code, summary, _ = run(arm, capsys, cli("CI-ADA", "Standard_E4ds_v4", "--idle-minutes", "120"))
    row = only_result(summary)
    assert code == 0 and row["outcome"] == "already_exists" and "nothing changed" in row["detail"]
    assert arm.count("PUT") == 1 and arm.count("POST") == 0 and arm.count("PATCH") == 0 and arm.count("DELETE") == 0
    after = ml.compute(SUB1, "rg-ml", "mlw-one", "ci-ada")
    assert (after.state, after.vm_size, dict(after.tags), after.idle_minutes, after.created_on) == snapshot


def test_name_taken_by_someone_else(arm, ml, ws, capsys):
    ml.add_compute_instance(ws, "ci-ada", assigned_user=(BOB, TENANT))
    code, summary, _ = run(arm, capsys, cli())
    row = only_result(summary)
    assert code == 0 and row["outcome"] == "rejected" and "assigned to someone else" in row["detail"]
    assert arm.count("PUT") == 0


def test_name_taken_by_a_cluster(arm, ml, ws, capsys):
    ml.add_compute_instance(ws, "ci-ada", compute_type="AmlCompute")
    _, summary, _ = run(arm, capsys, cli())
    row = only_result(summary)
    assert row["outcome"] == "rejected" and "not a compute instance" in row["detail"] and arm.count("PUT") == 0


def test_dry_run_creates_nothing(arm, ml, ws, capsys):
    code, summary, _ = run(arm, capsys, [*cli(), "--dry-run"])
    row = only_result(summary)
    assert code == 0 and summary["dry_run"] is True and row["outcome"] == "would_create"
    assert row["extra"]["tags"] == {N.owner: "ada@contoso.com", "cost-center": "CC-4711"}
    assert arm.count("PUT") == 0 and "ci-ada" not in ws.computes


# -- refused before any call --------------------------------------------------------------


@pytest.mark.parametrize(
    "args, fragment",
    [
        (cli("cpu-cluster-1"), "'-' must be followed by at least one letter"),
        (cli("9lives"), "must start with a letter"),
        (cli("ci-ada", "Standard_ND96asr_v4"), "size Standard_ND96asr_v4 is not allowed"),
        (cli("ci-ada", "Standard_DS3_v2", "--idle-minutes", "5"), "idle shutdown of 5 minutes"),
        ([a.replace(SUB1, SUB2) for a in cli()], f"subscription {SUB2} is not managed here"),
    ],
)
def test_refused_before_any_call_to_azure(arm, ml, ws, capsys, args, fragment):
    code, summary, _ = run(arm, capsys, args)
    row = only_result(summary)
    assert code == 0 and row["outcome"] == "rejected" and fragment in row["detail"]
    assert "before contacting Azure" in row["detail"]
    assert arm.calls == [], "a request the policy refuses must not reach Azure at all"


def test_user_over_the_limit_refused_without_any_write(arm, ml, ws, capsys):
    ml.add_compute_instance(ws, "ci-ada-old", assigned_user=(ADA, TENANT), state="Stopped")
    ml.add_compute_instance(ws, "ci-bob", assigned_user=(BOB, TENANT))
    other = ml.add_workspace(SUB1, "rg-ml", "mlw-two")
    ml.add_compute_instance(other, "ci-ada-elsewhere", assigned_user=(ADA, TENANT))  # other workspaces do not count
    code, summary, _ = run(arm, capsys, cli())
    row = only_result(summary)
    assert code == 0 and row["outcome"] == "rejected" and "already has 1 compute instance(s) in workspace mlw-one; the limit is 1" in row["detail"]
    # Counting needs reads (one GET of the name, one list); nothing is written.
    assert arm.count("PUT") == 0 and arm.count("POST") == 0 and arm.count("PATCH") == 0
    assert {c.method for c in arm.calls} == {"GET"}
    # Bob is under his own limit in the same workspace.
    code, summary, _ = run(arm, capsys, cli("ci-bob-two", user=BOB, requester="bob@contoso.com"), settings(max_per_user=2))
    assert only_result(summary)["outcome"] == "created"


# -- Azure says no ------------------------------------------------------------------------


def test_failed_creation_reports_the_service_message(arm, ml, ws, capsys):
    ml.create_errors["ci-ada"] = ("QuotaExceeded", "Not enough quota for family standardDSv2Family in westeurope: 0 of 24 cores left.")
    code, summary, out = run(arm, capsys, cli())
    row = only_result(summary)
    assert code == 1 and summary["failed"] is True and row["outcome"] == "failed"
    assert "QuotaExceeded: Not enough quota for family standardDSv2Family in westeurope: 0 of 24 cores left." in row["detail"]
    assert row["state"] == "CreateFailed"
    assert "FAILED           mlw-one/ci-ada" in out


def test_refused_put_reports_the_service_message(arm, ml, ws, capsys):
    arm.inject(Fault(400, "PUT", "/computes/ci-ada", code="ComputeNameNotAvailable", message="Compute name ci-ada is already in use in westeurope."))
    code, summary, _ = run(arm, capsys, cli())
    row = only_result(summary)
    assert code == 1 and row["outcome"] == "failed"
    assert "ComputeNameNotAvailable: Compute name ci-ada is already in use in westeurope." in row["detail"]


def test_unreadable_workspace_fails_cleanly(arm, ml, capsys):
    code, summary, _ = run(arm, capsys, cli())  # the workspace does not exist
    row = only_result(summary)
    assert code == 1 and row["outcome"] == "failed" and arm.count("PUT") == 0
    assert "cannot list compute instances in" in row["detail"] and "workspaces/mlw-one' was not found" in row["detail"]


def test_creation_that_does_not_finish_in_time(arm, capsys):
    clock = [0.0]
    ml = FakeMachineLearning(arm, create_seconds=60, clock=lambda: clock[0])
    ml.add_workspace(SUB1, "rg-ml", "mlw-one")
    started = time.monotonic()
    code, summary, _ = run(arm, capsys, cli(), settings(timeout_seconds=0.3))
    row = only_result(summary)
    assert time.monotonic() - started < 8
    assert code == 1 and row["outcome"] == "failed" and row["state"] == "Creating"
    assert "not finished within 0.3 s (last seen Creating)" in row["detail"]
    # Let the operation finish so azure-core's polling thread stops while the fake is still installed.
    clock[0] = 61.0
    time.sleep(0.3)
    assert ml.compute(SUB1, "rg-ml", "mlw-one", "ci-ada").state == "Running"


# -- approval ------------------------------------------------------------------------------


def test_gpu_size_waits_for_approval(arm, ml, ws, capsys):
    code, summary, _ = run(arm, capsys, cli("ci-ada", "Standard_NC6s_v3"))
    row = only_result(summary)
    assert code == 0 and row["outcome"] == "needs_approval" and "boss@contoso.com" in row["detail"] and arm.count("PUT") == 0


def test_gpu_size_with_approval_is_created_and_records_the_approver(arm, ml, ws, wire, capsys):
    code, summary, _ = run(arm, capsys, [*cli("ci-ada", "Standard_NC6s_v3"), "--approver", "boss@contoso.com"])
    assert code == 0 and only_result(summary)["outcome"] == "created"
    assert wire[0]["tags"]["ci-governance.approved-by"] == "boss@contoso.com"


# -- the Teams request --------------------------------------------------------------------


def test_teams_request_uses_the_responder_identity(arm, ml, ws, wire, capsys):
    # Card inputs that try to name someone else are ignored: identity comes from the responder.
    body = teams_body(owner="mallory@contoso.com", user_object_id=BOB, requester="mallory@contoso.com")
    code, summary, _ = run(arm, capsys, ["--request", json.dumps(body)])
    row = only_result(summary)
    assert code == 0 and row["outcome"] == "created"
    assert summary["request_id"] == "1732352400000"
    assert wire[0]["properties"]["properties"]["personalComputeInstanceSettings"]["assignedUser"] == {"objectId": ADA, "tenantId": TENANT}
    assert wire[0]["properties"]["properties"]["idleTimeBeforeShutdown"] == "PT45M"
    assert wire[0]["tags"][N.owner] == "ada@contoso.com"


@pytest.mark.parametrize("escaped", [True, False], ids=["escaped", "raw"])
@pytest.mark.parametrize("order", ["before", "after"])
def test_teams_request_in_the_platforms_real_envelope_armoured(arm, ml, ws, capsys, escaped, order):

    doc = settings(require_shared_secret="X-Secret")
    doc["teams"] = {**doc.get("teams", {}), "shared_secret": "s3cr3t"}
    argv = envelope_argv(armoured(teams_body()), escaped=escaped, order=order, params=(f"--settings-b64 {encode_settings(doc)}",))
    code = create_compute_instance.main(argv, credential=arm.credential())
    summary = summary_from(capsys.readouterr().out)
    assert code == 0 and only_result(summary)["outcome"] == "created", summary


def test_teams_request_through_the_webhook_checks_the_shared_secret(arm, ml, ws, capsys):
    doc = settings(require_shared_secret="X-CI-Governance-Secret")
    webhook = {"WebhookName": "ci-governance-create_compute_instance", "RequestBody": json.dumps(teams_body()), "RequestHeader": {}}
    code, summary, _ = run(arm, capsys, [json.dumps(webhook)], doc)
    assert code == 2 and "X-CI-Governance-Secret" in summary["error"] and arm.calls == []
    webhook["RequestHeader"] = {"X-CI-Governance-Secret": "s3cret"}
    code, summary, _ = run(arm, capsys, [json.dumps(webhook)], doc)
    assert code == 0 and only_result(summary)["outcome"] == "created"


def test_teams_request_with_approval_step(arm, ml, ws, wire, capsys):
    body = teams_body(size="Standard_NC6s_v3")
    body["approval"] = {"approver": {"objectId": BOSS, "userPrincipalName": "boss@contoso.com"}, "outcome": "Approve"}
    code, summary, _ = run(arm, capsys, ["--request", json.dumps(body)])
    assert code == 0 and only_result(summary)["outcome"] == "created" and only_result(summary)["extra"]["approved_by"] == "boss@contoso.com"
    assert wire[0]["tags"]["ci-governance.approved-by"] == "boss@contoso.com"


def test_teams_request_declined_by_the_approver(arm, ml, ws, capsys):
    body = teams_body(size="Standard_NC6s_v3")
    body["approval"] = {"approver": {"objectId": BOSS, "userPrincipalName": "boss@contoso.com"}, "outcome": "Reject"}
    code, summary, _ = run(arm, capsys, ["--request", json.dumps(body)])
    assert only_result(summary)["outcome"] == "rejected" and "declined by boss@contoso.com" in only_result(summary)["detail"] and arm.calls == []


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--name", "ci-ada"], "missing --size, --user-object-id, --user-tenant-id, --requester"),
        (cli()[2:], "name the workspace"),
        ([*cli(), "--request", "{}"], "do not combine it with"),
        (["--request", "{not json"], "is not valid JSON"),
        (["--request", json.dumps({"data": {"action": "request_compute_instance"}})], "'responder' is missing"),
        (["--request", json.dumps(teams_body(action="request_exemption"))], "unknown action 'request_exemption'"),
        (["--request", json.dumps(teams_body(idle_minutes="an hour"))], "idle_minutes 'an hour' is not a whole number"),
        (["--request", json.dumps(teams_body(workspace="mlw-one"))], "must be written as <subscriptionId>/<resourceGroup>/<workspaceName>"),
        ([*cli(), "--idle-minutes", "soon"], "invalid int value"),
    ],
)
def test_bad_parameters_exit_2_without_calls(arm, ml, ws, capsys, args, fragment):
    code, summary, _ = run(arm, capsys, args)
    assert code == 2 and fragment in summary["error"] and arm.calls == []


def test_workspace_from_separate_flags(arm, ml, ws, capsys):
    args = ["--subscription", SUB1, "--resource-group", "rg-ml", "--workspace-name", "mlw-one", *cli()[2:]]
    code, summary, _ = run(arm, capsys, args)
    assert code == 0 and only_result(summary)["outcome"] == "created"


# -- request parsing and the card, without Azure -------------------------------------------


def test_request_from_teams_reads_everything():
    body = teams_body(idle_minutes=90)
    body["responder"]["objectId"] = ADA.upper()
    req = request_from_teams(body)
    assert req.workspace == WorkspaceRef(SUB1, "rg-ml", "mlw-one") and req.name == "ci-ada" and req.size == "Standard_DS3_v2"
    assert (req.user_object_id, req.user_tenant_id, req.requester, req.owner) == (ADA, TENANT, "ada@contoso.com", "ada@contoso.com")
    assert req.idle_minutes == 90 and req.cost_center == "CC-4711" and req.request_id == "1732352400000" and req.approval is None


def test_request_from_teams_empty_idle_means_default_and_email_stands_in_for_upn():
    body = teams_body(idle_minutes="")
    del body["responder"]["userPrincipalName"]
    req = request_from_teams(body)
    assert req.idle_minutes is None and req.requester == "ada@contoso.com"


def test_request_from_teams_lists_every_problem():
    with pytest.raises(RequestError) as err:
        request_from_teams({"data": {"workspace": "x", "size": 3}, "responder": {"objectId": "nope"}, "approval": {"approver": {}}})
    reasons = " | ".join(err.value.reasons)
    for fragment in (
        "must be written as",
        "'name' is missing",
        "'size' must be text",
        "tenantId' is missing",
        "is not an Entra object id (a GUID)",  # one responder reader (shared.teams.inbound) words it as for exemptions
        "does not say who approved",
        "'outcome' is missing",
    ):
        assert fragment in reasons


def test_request_card_is_valid_and_offers_the_policy():
    section = CreateSection(allowed_sizes=("Standard_DS3_v2", "Standard_NC6s_v3", "Standard_F*s_v2"), sizes_needing_approval=("STANDARD_NC*",))
    workspaces = [WorkspaceRef(SUB1, "rg-ml", "mlw-one"), WorkspaceRef(SUB2, "rg-b", "mlw-two")]
    card = render_card("compute_request", **request_card_context(section, workspaces, default_size="Standard_DS3_v2"))
    assert_valid_card(card)
    inputs = {i["id"]: i for i in _inputs(card)}
    assert set(inputs) == {"workspace", "name", "size", "idle_minutes", "cost_center"}
    assert [c["value"] for c in inputs["workspace"]["choices"]] == [f"{SUB1}/rg-ml/mlw-one", f"{SUB2}/rg-b/mlw-two"]
    assert [c["value"] for c in inputs["size"]["choices"]] == ["Standard_DS3_v2", "Standard_NC6s_v3"]
    assert inputs["size"]["choices"][1]["title"] == "Standard_NC6s_v3 (needs approval)" and inputs["size"]["value"] == "Standard_DS3_v2"
    assert (inputs["idle_minutes"]["min"], inputs["idle_minutes"]["max"], inputs["idle_minutes"]["value"]) == (15, 4320, 60)
    assert inputs["name"]["maxLength"] == 24 and inputs["cost_center"]["isRequired"] is True
    assert card["actions"][0]["data"] == {"action": "request_compute_instance"}
    # Without workspaces the card asks for the key as text.
    card = render_card("compute_request", **request_card_context(CreateSection()))
    assert_valid_card(card)
    assert {i["id"]: i for i in _inputs(card)}["workspace"]["type"] == "Input.Text"


def test_request_card_escapes_hostile_values():
    hostile = WorkspaceRef(SUB1, 'rg"},{"type":"Action.OpenUrl', "ws")
    card = render_card("compute_request", **request_card_context(CreateSection(), [hostile]))
    assert_valid_card(card)
    assert {i["id"]: i for i in _inputs(card)}["workspace"]["choices"][0]["value"] == hostile.key


def _inputs(card):
    return [e for e in iter_elements(card) if str(e.get("type", "")).startswith("Input.")]
