"""Identity and idempotency rules of the exemption runbook that an adversarial review found broken
(issue 12, items 3, 6, 7, 8): the real runbook end to end against the fake Azure and Teams."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from fake_azure.teams import FakeTeamsWorkflow
from runbooks import stop_compute_instances
from shared.settings import encode_settings
from tests.builders import LEAD, OTHER_TAGS, STRANGER, N, body, make_ml, responder, run, settings_doc, tags, webhook
from tests.conftest import SUB1, TENANT
from tests.summary import summary_from

UNTIL = "2026-11-24T07:00:00Z"  # what body() asks for: 08:00 in Berlin


@pytest.fixture
def teams(arm):
    return FakeTeamsWorkflow(arm)


def test_already_recorded_only_when_the_recorded_exemption_protects(arm, now, capsys, teams):
    ml = make_ml(arm)
    # Same request id and end, but exempt-by is empty: malformed, it does not protect the CI.
    ml.compute(SUB1, "rg-a", "mlw-one", "ci-ada").tags.update({N.exempt_until: UNTIL, N.exempt_by: "", N.exempt_request: "msg-1"})
    code, summary = run(arm, now, capsys, webhook(body()), doc=settings_doc(teams))
    assert code == 0 and summary["results"][0]["outcome"] == "exempted"
    assert tags(ml)[N.exempt_by] == "ada@contoso.com"
    # And the night's sweep honours it.
    doc = settings_doc(teams)
    code = stop_compute_instances.main(["--settings-b64", encode_settings(doc), "--no-teams-summary"], credential=arm.credential(), now=now)
    swept = summary_from(capsys.readouterr().out)
    assert {r["compute_instance"]: r["outcome"] for r in swept["results"]}["ci-ada"] == "exempt"


def test_a_valid_recorded_exemption_is_still_already_recorded(arm, now, capsys, teams):
    ml = make_ml(arm)
    ml.compute(SUB1, "rg-a", "mlw-one", "ci-ada").tags.update({N.exempt_until: UNTIL, N.exempt_by: "ada@contoso.com", N.exempt_request: "msg-1"})
    code, summary = run(arm, now, capsys, webhook(body()), doc=settings_doc(teams))
    assert code == 0 and summary["results"][0]["outcome"] == "already_recorded"
    assert arm.count("PATCH") == 0 and arm.count("PUT") == 0


def test_the_assigned_user_needs_the_tenant_too(arm, now, capsys, teams):
    ml = make_ml(arm)
    for tenant in (None, "", "   "):
        who = responder()
        if tenant is None:
            del who["tenantId"]
        else:
            who["tenantId"] = tenant
        code, summary = run(arm, now, capsys, webhook(body(who)), doc=settings_doc(teams))
        assert code == 1 and summary["results"][0]["outcome"] == "rejected", tenant
    assert tags(ml) == OTHER_TAGS and arm.count("PATCH") == 0


def test_the_assigned_user_with_object_id_and_tenant_is_accepted(arm, now, capsys, teams):
    make_ml(arm)
    code, summary = run(arm, now, capsys, webhook(body()), doc=settings_doc(teams))
    assert code == 0 and summary["results"][0]["outcome"] == "exempted"


def approved(who, approver):
    request = body(who)
    request["approval"] = {"outcome": "Approve", "approver": approver, "comments": "ok"}
    return request


def test_self_approval_is_refused_when_the_upn_matches_whatever_the_object_id(arm, now, capsys, teams):
    ml = make_ml(arm)
    doc = settings_doc(teams, approvers=[LEAD])
    # The requester's UPN, another object id (which is a listed approver).
    code, summary = run(arm, now, capsys, webhook(approved(responder(), {"objectId": LEAD, "userPrincipalName": "ada@contoso.com"})), doc=doc)
    assert code == 1 and summary["results"][0]["outcome"] == "rejected" and "your own request" in summary["results"][0]["detail"]
    assert tags(ml) == OTHER_TAGS


def test_self_approval_is_refused_when_the_mail_matches(arm, now, capsys, teams):
    ml = make_ml(arm)
    doc = settings_doc(teams, approvers=[LEAD])
    who = {**responder(), "email": "ada.l@contoso.com"}
    by_upn = {"objectId": LEAD, "userPrincipalName": "ada.l@contoso.com"}
    by_mail = {"objectId": LEAD, "userPrincipalName": "lead@x.com", "email": "ada@contoso.com"}
    for approver in (by_upn, by_mail):
        code, summary = run(arm, now, capsys, webhook(approved(who, approver)), doc=doc)
        assert code == 1 and "your own request" in summary["results"][0]["detail"], approver
    assert tags(ml) == OTHER_TAGS


def test_another_approver_still_approves(arm, now, capsys, teams):
    make_ml(arm)
    doc = settings_doc(teams, approvers=[LEAD])
    code, summary = run(arm, now, capsys, webhook(approved(responder(), {"objectId": LEAD, "userPrincipalName": "lead@contoso.com"})), doc=doc)
    assert code == 0 and summary["results"][0]["outcome"] == "exempted"


def cancel(who):
    return body(who, action="cancel_exemption", compute_instance="ci-shared", until_date=None, until_time=None, time_zone=None, reason=None)


def test_a_mail_equal_to_the_recorders_upn_does_not_cancel(arm, now, capsys, teams):
    ml = make_ml(arm)
    recorded = {N.exempt_until: UNTIL, N.exempt_by: "ada@contoso.com", N.exempt_reason: "training"}
    ml.compute(SUB1, "rg-a", "mlw-one", "ci-shared").tags.update(recorded)
    mallory = {"objectId": STRANGER, "tenantId": TENANT, "email": "ada@contoso.com", "userPrincipalName": "mallory@contoso.com"}
    code, summary = run(arm, now, capsys, webhook(cancel(mallory)), doc=settings_doc(teams))
    assert code == 1 and summary["results"][0]["outcome"] == "rejected"
    assert tags(ml, "ci-shared")[N.exempt_by] == "ada@contoso.com"
    # The recorder herself (by UPN) still may.
    code, summary = run(arm, now, capsys, webhook(cancel(responder(oid=STRANGER))), doc=settings_doc(teams))
    assert code == 0 and summary["results"][0]["outcome"] == "cancelled" and N.exempt_by not in tags(ml, "ci-shared")


def test_a_recorder_named_by_object_id_may_cancel(arm, now, capsys, teams):
    ml = make_ml(arm)
    ml.compute(SUB1, "rg-a", "mlw-one", "ci-shared").tags.update({N.exempt_until: UNTIL, N.exempt_by: STRANGER})
    who = {"objectId": STRANGER, "tenantId": TENANT}
    code, summary = run(arm, now, capsys, webhook(cancel(who)), doc=settings_doc(teams))
    assert code == 0 and summary["results"][0]["outcome"] == "cancelled"


def test_the_request_runs_at_a_fixed_now():
    # Guard for the tests above: body() asks for 08:00 Berlin on 24 Nov, i.e. UNTIL.
    assert datetime(2026, 11, 24, 7, 0, tzinfo=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") == UNTIL
    assert json.loads(json.dumps(body()))["messageId"] == "msg-1"
