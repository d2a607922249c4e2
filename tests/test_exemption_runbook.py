"""End to end: the exemption runbook, through azure-ai-ml, azure-core and the Tags API, against the
fake Azure and a fake Teams workflow; then the real stop sweep honours (or ignores) the result."""

from __future__ import annotations

import base64
import json

import pytest

from fake_azure.platform import TAGS_SILENTLY_IGNORED
from fake_azure.server import Fault
from fake_azure.teams import FakeTeamsWorkflow
from runbooks import handle_exemption_request, stop_compute_instances
from shared.automation.webhook import InboundRequest
from shared.azure.ml_gateway import AzureMLGateway
from shared.azure.tag_writer import TagWriter
from shared.exemption.policy import NEEDS_APPROVAL, PolicyDecision
from shared.exemption.run import handle_request
from shared.sections import ExemptionSection
from shared.settings import encode_settings, settings_from_dict
from shared.tags import read_exemption
from tests.builders import (
    LEAD,
    OTHER_TAGS,
    OWNER,
    SECRET,
    SECRET_HEADER,
    STRANGER,
    WS_KEY,
    N,
    admin_notices,
    answers,
    body,
    card_texts,
    make_ml,
    only_card,
    responder,
    run,
    settings_doc,
    tags,
    webhook,
)
from tests.cardcheck import assert_valid_card
from tests.conftest import SUB1
from tests.summary import summary_from


@pytest.fixture
def teams(arm):
    return FakeTeamsWorkflow(arm)
























# -- recording ------------------------------------------------------------------------------


def test_valid_request_tags_the_ci_and_the_stop_sweep_then_skips_it(arm, now, capsys, teams):
    ml = make_ml(arm)
    code, summary = run(arm, now, capsys, webhook(body()), doc=settings_doc(teams))
    assert code == 0, summary
    assert summary["results"][0]["outcome"] == "exempted" and summary["exit_code"] == 0
    written = tags(ml)
    # 08:00 in Berlin on 24 November (CET, UTC+1) is 07:00 UTC; other tags untouched.
    assert written == {
        **OTHER_TAGS,
        N.exempt_until: "2026-11-24T07:00:00Z",
        N.exempt_by: "ada@contoso.com",
        N.exempt_reason: "training run ends tomorrow morning",
        N.exempt_request: "msg-1",
    }
    assert arm.count("PATCH", "/providers/Microsoft.Resources/tags/default", status=200) == 1
    card = only_card(teams)
    texts = card_texts(card)
    assert any("{{DATE(2026-11-24T07:00:00Z, SHORT)}}" in t for t in texts) and "2026-11-24 08:00 Europe/Berlin" in texts
    assert any("ada@contoso.com" in t for t in texts) and "mlw-one (rg-a)" in texts
    cancel = card["actions"][0]["data"]
    assert cancel == {"action": "cancel_exemption", "workspace": WS_KEY, "compute_instance": "ci-ada"}

    code = stop_compute_instances.main(["--settings-b64", encode_settings(settings_doc(teams)), "--no-teams-summary"], credential=arm.credential(), now=now)
    sweep = summary_from(capsys.readouterr().out)
    outcomes = {r["compute_instance"]: r["outcome"] for r in sweep["results"]}
    assert code == 0 and outcomes == {"ci-ada": "exempt", "ci-shared": "stopped"}
    assert ml.compute(SUB1, "rg-a", "mlw-one", "ci-ada").state == "Running"


def test_the_same_request_twice_is_recorded_once(arm, now, capsys, teams):
    ml = make_ml(arm)
    doc = settings_doc(teams)
    assert run(arm, now, capsys, webhook(body()), doc=doc)[0] == 0
    code, summary = run(arm, now, capsys, webhook(body()), doc=doc)
    assert code == 0 and summary["results"][0]["outcome"] == "already_recorded"
    assert arm.count("PATCH") == 1 and arm.count("PUT") == 0
    assert tags(ml)[N.exempt_request] == "msg-1"
    assert len(teams.cards) == 2  # the second answer confirms, it does not change anything


def test_a_new_until_from_the_same_card_replaces_the_exemption(arm, now, capsys, teams):
    ml = make_ml(arm)
    doc = settings_doc(teams)
    run(arm, now, capsys, webhook(body()), doc=doc)
    code, summary = run(arm, now, capsys, webhook(body(until_time="10:30")), doc=doc)
    assert code == 0 and summary["results"][0]["outcome"] == "exempted"
    assert tags(ml)[N.exempt_until] == "2026-11-24T09:30:00Z" and arm.count("PATCH") == 2


@pytest.mark.parametrize("how", ["positional-first", "positional-last", "webhook-data", "request", "request-b64", "inline-request"])
def test_the_request_is_found_in_every_supported_slot(arm, now, capsys, teams, how):
    ml = make_ml(arm)
    payload = body()
    doc = settings_doc(teams)
    settings_args = ["--settings-b64", encode_settings(doc)]
    argv = {
        "positional-first": [webhook(payload), *settings_args],
        "positional-last": [*settings_args, webhook(payload)],
        "webhook-data": [*settings_args, "--webhook-data", webhook(payload)],
        "request": [*settings_args, "--request", json.dumps(payload)],
        "request-b64": [*settings_args, "--request-b64", base64.b64encode(json.dumps(payload).encode()).decode()],
        # one portal box holding flag and JSON: the JSON must not be split at its spaces
        "inline-request": [" ".join(settings_args), "--request " + json.dumps(payload)],
    }[how]
    code = handle_exemption_request.main(argv, credential=arm.credential(), now=now)
    summary = summary_from(capsys.readouterr().out)
    assert code == 0 and summary["results"][0]["outcome"] == "exempted", summary
    assert tags(ml)[N.exempt_until] == "2026-11-24T07:00:00Z"


def test_an_approver_may_exempt_a_ci_without_assigned_user(arm, now, capsys, teams):
    ml = make_ml(arm)
    doc = settings_doc(teams, approvers=["lead@contoso.com"])
    code, summary = run(arm, now, capsys, webhook(body(who=responder(LEAD, "Lead@Contoso.com"), compute_instance="ci-shared")), doc=doc)
    assert code == 0 and summary["results"][0]["outcome"] == "exempted"
    assert tags(ml, "ci-shared")[N.exempt_by] == "Lead@Contoso.com" and tags(ml, "ci-shared")["team"] == "shared"


def test_the_right_shared_secret_is_accepted(arm, now, capsys, teams):
    ml = make_ml(arm)
    doc = settings_doc(teams, require_shared_secret=SECRET_HEADER)
    code, _ = run(arm, now, capsys, webhook(body(), {SECRET_HEADER.lower(): SECRET}), doc=doc)
    assert code == 0 and N.exempt_until in tags(ml)


def test_a_direct_job_request_needs_no_webhook_secret(arm, now, capsys, teams):
    # Started through the Create job API (Azure RBAC), not the webhook: there is no header to check.
    ml = make_ml(arm)
    doc = settings_doc(teams, require_shared_secret=SECRET_HEADER)
    code, _ = run(arm, now, capsys, "--request", json.dumps(body()), doc=doc)
    assert code == 0 and N.exempt_until in tags(ml)


# -- cancelling -----------------------------------------------------------------------------


def test_cancel_removes_only_our_tags(arm, now, capsys, teams):
    ml = make_ml(arm)
    doc = settings_doc(teams)
    run(arm, now, capsys, webhook(body()), doc=doc)
    approved = teams.cards[0]
    cancel = {"data": approved["actions"][0]["data"], "responder": responder(), "messageId": "msg-1", "responseTime": "x", "submitActionId": "Cancel"}
    code, summary = run(arm, now, capsys, webhook(cancel), doc=doc)
    assert code == 0 and summary["results"][0]["outcome"] == "cancelled"
    assert tags(ml) == OTHER_TAGS
    card = teams.cards[-1]
    assert_valid_card(card)
    assert any("{{DATE(2026-11-24T07:00:00Z, SHORT)}}" in t for t in card_texts(card)) and any("ada@contoso.com" in t for t in card_texts(card))
    # and a second cancel finds nothing to remove, writes nothing, and is still fine
    patches = arm.count("PATCH")
    code, summary = run(arm, now, capsys, webhook(cancel), doc=doc)
    assert code == 0 and summary["results"][0]["outcome"] == "cancelled" and arm.count("PATCH") == patches


def test_whoever_recorded_the_exemption_may_cancel_it(arm, now, capsys, teams):
    ml = make_ml(arm)
    run(arm, now, capsys, webhook(body(who=responder(LEAD, "lead@contoso.com"))), doc=settings_doc(teams, approvers=["lead@contoso.com"]))
    # the lead is no longer an approver, but the exemption is theirs
    cancel = body(who=responder(LEAD, "lead@contoso.com"), action="cancel_exemption", until_date=None, until_time=None, time_zone=None, reason=None)
    code, _ = run(arm, now, capsys, webhook(cancel), doc=settings_doc(teams))
    assert code == 0 and tags(ml) == OTHER_TAGS


# -- every rejection happens before any write -----------------------------------------------

REJECTIONS = {
    "malformed JSON": (lambda: ['{"data": {"action": '], 2, "is not valid JSON"),
    "malformed RequestBody": (lambda: [webhook("{not json")], 2, "RequestBody is not valid JSON"),
    "no request at all": (lambda: [], 2, "no request found"),
    "missing fields": (lambda: [webhook(body(reason=None, until_time=None))], 1, "'until_time' is missing"),
    "missing responder": (lambda: [webhook({k: v for k, v in body().items() if k != "responder"})], 1, "'responder' is missing"),
    "bad workspace key": (lambda: [webhook(body(workspace="mlw-one"))], 1, "<subscriptionId>/<resourceGroup>/<workspaceName>"),
    "unknown workspace": (lambda: [webhook(body(workspace=f"{SUB1}/rg-a/mlw-nope"))], 1, f"Workspace {SUB1}/rg-a/mlw-nope was not found"),
    "workspace out of scope": (lambda: [webhook(body(workspace="33333333-3333-4333-8333-333333333333/rg-a/mlw-one"))], 1, "not managed by CI governance"),
    "unknown CI": (lambda: [webhook(body(compute_instance="ci-nope"))], 1, "ci-nope was not found in workspace mlw-one"),
    "not a compute instance": (lambda: [webhook(body(compute_instance="gpu-cluster"))], 1, "is a AmlCompute, not a compute instance"),
    "past time": (lambda: [webhook(body(until_date="2026-11-23", until_time="19:59"))], 1, "is not in the future"),
    "beyond max": (lambda: [webhook(body(until_date="2026-11-26", until_time="20:01"))], 1, "more than 72 hours ahead"),
    "unknown time zone": (lambda: [webhook(body(time_zone="Mars/Olympus"))], 1, "not a known time zone"),
    "unauthorised requester": (lambda: [webhook(body(who=responder(STRANGER, "eve@contoso.com")))], 1, "eve@contoso.com may not request an exemption"),
    "identity from card input ignored": (lambda: [webhook(body(who=responder(STRANGER, "eve@contoso.com"), objectId=OWNER))], 1, "may not request"),
}


# Two voices: these are the wiring's fault, not the requester's: the admins get the full text.
WIRING = {"malformed JSON", "malformed RequestBody", "no request at all", "missing responder"}
# The card says what the job output says, in the form's words.
IN_USER_WORDS = {"missing fields": "The time is missing"}


@pytest.mark.parametrize("case", sorted(REJECTIONS))
def test_rejections_change_nothing_and_answer_with_the_reason(arm, now, capsys, teams, case):
    ml = make_ml(arm)
    argv, exit_code, reason = REJECTIONS[case]
    code, summary = run(arm, now, capsys, *argv(), doc=settings_doc(teams))
    assert code == exit_code and summary["exit_code"] == exit_code
    assert summary["results"][0]["outcome"] == "rejected" and reason in summary["results"][0]["detail"]
    assert tags(ml) == OTHER_TAGS and tags(ml, "ci-shared") == {"team": "shared"}
    assert arm.count("PATCH") == 0 and arm.count("PUT") == 0
    if case in WIRING:
        # Nobody to answer is known: no user card; the admins' channel gets the full text.
        assert answers(teams) == [] and summary["admins_told"] is True
        (notice,) = admin_notices(teams)
        assert any(reason in text for text in card_texts(notice)), card_texts(notice)
        return
    card = only_card(teams, to="eve@contoso.com" if "eve@" in json.dumps(argv()) else "ada@contoso.com")
    shown = IN_USER_WORDS.get(case, reason)
    assert any(shown in text for text in card_texts(card)), card_texts(card)
    assert admin_notices(teams) == []


@pytest.mark.parametrize("headers, reason", [({}, "did not carry the X-CI-Governance-Secret header"), ({SECRET_HEADER: "guess"}, "does not match")])
def test_a_missing_or_wrong_shared_secret_is_rejected(arm, now, capsys, teams, headers, reason):
    ml = make_ml(arm)
    code, summary = run(arm, now, capsys, webhook(body(), headers), doc=settings_doc(teams, require_shared_secret=SECRET_HEADER))
    assert code == 1 and summary["results"][0]["outcome"] == "rejected"
    assert tags(ml) == OTHER_TAGS and arm.count("PATCH") == 0
    # A request without the secret is answered to nobody it names, only to the admins (who learn why, never the secret).
    assert answers(teams) == []
    texts = card_texts(admin_notices(teams)[0])
    assert any(reason in t for t in texts) and not any(SECRET in t for t in texts)


def test_a_secret_header_without_a_configured_secret_is_a_settings_error(arm, now, capsys, teams):
    make_ml(arm)
    doc = settings_doc(teams)
    doc["exemption"]["require_shared_secret"] = SECRET_HEADER  # teams.shared_secret left unset
    code, summary = run(arm, now, capsys, webhook(body()), doc=doc)
    assert code == 2 and "teams.shared_secret" in summary["error"] and teams.cards == []


# -- writes that do not stick, fallbacks, Teams trouble -------------------------------------


def test_a_ci_that_ignores_tag_writes_gets_its_exemption_on_the_workspace(arm, now, capsys, teams):
    ml = make_ml(arm, platform=TAGS_SILENTLY_IGNORED)
    code, summary = run(arm, now, capsys, webhook(body()), doc=settings_doc(teams))
    assert code == 0 and summary["recorded_on"] == "workspace" and summary["workspace_tag"] == "ci-governance.exempt.ci-ada"
    assert tags(ml) == OTHER_TAGS and "did not stick" in summary["compute_instance_refused"]
    value = ml.workspace(SUB1, "rg-a", "mlw-one").tags["ci-governance.exempt.ci-ada"]
    assert value == "until=2026-11-24T07:00:00Z;by=ada@contoso.com;req=msg-1" and len(value) <= 256
    assert any("workspace mlw-one" in t for t in card_texts(only_card(teams)))


def test_an_exemption_that_lands_nowhere_fails_clearly(arm, now, capsys, teams):
    ml = make_ml(arm, platform=TAGS_SILENTLY_IGNORED)
    arm.inject(Fault(403, method="PATCH", path_contains="/workspaces/mlw-one/providers/Microsoft.Resources/tags"))
    code, summary = run(arm, now, capsys, webhook(body()), doc=settings_doc(teams))
    assert code == 1 and summary["failed"] is True
    result = summary["results"][0]
    assert result["outcome"] == "failed" and "on the compute instance" in result["detail"] and "on its workspace" in result["detail"]
    assert tags(ml) == OTHER_TAGS and "ci-governance.exempt.ci-ada" not in ml.workspace(SUB1, "rg-a", "mlw-one").tags
    # Two voices: the requester hears it did not work; the admins get the cause.
    assert any("your admin has been told" in t for t in card_texts(only_card(teams)))
    assert any("could not be recorded" in t for t in card_texts(admin_notices(teams)[0]))


def test_auto_falls_back_to_a_full_put_when_the_tags_api_is_refused(arm, now, capsys, teams):
    ml = make_ml(arm, tags_api_supported=False)
    code, summary = run(arm, now, capsys, webhook(body()), doc=settings_doc(teams, tag_write_method="auto"))
    assert code == 0 and summary["tag_write_method"] == "full_put" and summary["tag_write_fell_back"] is True
    assert tags(ml)[N.exempt_until] == "2026-11-24T07:00:00Z" and tags(ml)["team"] == "vision"


def test_a_failed_teams_post_does_not_undo_the_exemption(arm, now, capsys, teams):
    ml = make_ml(arm)
    doc = settings_doc(teams)
    doc["teams"]["workflow_url"] = teams.url.replace("sig=fake-signature", "sig=wrong")
    code, summary = run(arm, now, capsys, webhook(body()), doc=doc)
    assert code == 0 and summary["answer_posted"] is False
    assert N.exempt_until in tags(ml) and teams.cards == []


def test_try_again_sends_a_fresh_request_form(arm, now, capsys, teams):
    make_ml(arm)
    form = {"data": {"action": "request_exemption_form"}, "responder": responder(), "messageId": "msg-9"}
    code, summary = run(arm, now, capsys, webhook(form), doc=settings_doc(teams))
    assert code == 0 and summary["results"][0]["outcome"] == "form_sent"
    card = only_card(teams)
    assert card["actions"][0]["data"] == {"action": "request_exemption"} and arm.count("PATCH") == 0


def test_a_request_needing_approval_writes_nothing_and_says_so(arm, now, teams):
    # Whatever the decision function says is what happens: the service adds no rule of its own.
    ml = make_ml(arm)
    settings = settings_from_dict(settings_doc(teams, approvers=["lead@contoso.com"]))
    section = settings.section("exemption", ExemptionSection)
    gateway = AzureMLGateway(arm.credential())
    writer = TagWriter(arm.credential(), gateway, readback_delay_seconds=0)

    def needs_approval(request, ci, section, names, cost):
        return PolicyDecision(NEEDS_APPROVAL, ("above the cost threshold",))

    inbound = InboundRequest(body(), "webhook", "argv[1]")
    report = handle_request(inbound, settings, section, gateway, writer, now=now, decide=needs_approval)
    assert report.results[0].outcome == "pending_approval" and report.exit_code == 0
    assert tags(ml) == OTHER_TAGS and arm.count("PATCH") == 0
    card = only_card(teams)
    assert "lead@contoso.com" in " ".join(card_texts(card))
    assert read_exemption(tags(ml), now, N).state == "none"
