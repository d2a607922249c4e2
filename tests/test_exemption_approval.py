"""Cost-aware approval of exemptions (issue 6): the estimate, the cost rule, and the approver's answer.

End to end through the runbook against the fake Azure (Azure ML, Tags API, Retail Prices) and a fake
Teams workflow. The approval round trip is driven exactly as docs/admin.md ("Cost-aware approval") tells the
answer flow to do it: press a button on the pending card, then reshape Teams' response with the
documented Compose action and send that to the webhook.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, Optional

import pytest

from fake_azure.retail_prices import FakeRetailPrices
from fake_azure.server import Fault
from fake_azure.teams import FakeTeamsWorkflow
from runbooks import handle_exemption_request
from shared.exemption.policy import NEEDS_APPROVAL, RECORD, REJECT, cost_gate, decide_exemption
from shared.exemption.request import validate_request
from shared.models import ComputeInstanceRecord, PriceQuote, WorkspaceRef
from shared.pricing.cost import CICost
from shared.sections import CostLimit, ExemptionSection
from shared.settings import encode_settings
from shared.teams.inbound import Approval
from tests.builders import LEAD, OTHER_TAGS, OWNER, STRANGER, N, body, card_texts, make_ml, responder, webhook
from tests.cardcheck import assert_valid_card
from tests.conftest import SUB1, SUB2, TENANT, fast_stop_settings
from tests.summary import summary_from

BOSS = "dddddddd-dddd-4ddd-8ddd-dddddddddddd"
APPROVERS = ["lead@contoso.com", BOSS]
LIMIT = {"amount": 20, "currency": "USD"}
# 2026-11-23 19:00 UTC to 2026-11-24 07:00 UTC (08:00 Berlin) is 12 hours; catalog list prices per hour:
# Standard_DS3_v2 0.344 (USD 4.13 in total), Standard_NC6s_v3 3.305 (USD 39.66 in total).
GPU_COST = 39.66


@pytest.fixture
def teams(arm):
    return FakeTeamsWorkflow(arm)


@pytest.fixture
def prices(arm):
    return FakeRetailPrices(arm)


@pytest.fixture
def ml(arm):
    ml = make_ml(arm)
    ws = ml.add_workspace(SUB1, "rg-a", "mlw-one")
    ml.add_compute_instance(ws, "ci-gpu", state="Running", vm_size="Standard_NC6s_v3", tags=dict(OTHER_TAGS), assigned_user=(OWNER, TENANT))
    ml.add_compute_instance(ws, "ci-odd", state="Running", vm_size="Standard_ZZ9_v9", tags=dict(OTHER_TAGS), assigned_user=(OWNER, TENANT))
    return ml


def settings_doc(teams, limit: Any = LIMIT, **exemption: Any) -> Dict[str, Any]:
    return {
        "scope": {"subscriptions": [SUB1, SUB2]},
        "teams": {"workflow_url": teams.url},
        "exemption": {"readback_delay_seconds": 0, "approvers": APPROVERS, "auto_approve_below": limit, **exemption},
        "stop": fast_stop_settings(),
    }


def run(arm, now, capsys, payload: Dict[str, Any], doc: Dict[str, Any]):
    code = handle_exemption_request.main(["--settings-b64", encode_settings(doc), webhook(payload)], credential=arm.credential(), now=now)
    return code, summary_from(capsys.readouterr().out)


def gpu_request(who: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    return body(who=who, compute_instance="ci-gpu")


def tags(ml, name: str) -> Dict[str, str]:
    return dict(ml.compute(SUB1, "rg-a", "mlw-one", name).tags)


def last_card(teams) -> Dict[str, Any]:
    card = teams.cards[-1]
    assert_valid_card(card)
    return card


def press(card: Dict[str, Any], title: str, who: Dict[str, str], comments: Optional[str] = None) -> Dict[str, Any]:
    """Teams' response to a button press on the pending card, reshaped by the answer flow's documented Compose."""
    action = next(a for a in card["actions"] if a["title"] == title)
    data = dict(action["data"])
    if comments is not None:
        data["comments"] = comments  # the card's comment box, merged into data by Teams
    response = {"data": data, "responder": who, "responseTime": "2026-11-23T19:30:00Z", "messageId": "msg-approval", "submitActionId": title}
    return {
        "data": response["data"]["request"],
        "responder": response["data"]["requester"],
        "messageId": response["data"]["request_message_id"],
        "approval": {
            "outcome": response["data"]["outcome"],
            "approver": response["responder"],
            "comments": response["data"].get("comments"),
            "responseTime": response["responseTime"],
        },
    }


def pending_card(arm, now, capsys, teams, ml, doc) -> Dict[str, Any]:
    code, summary = run(arm, now, capsys, gpu_request(), doc)
    assert code == 0 and summary["results"][0]["outcome"] == "pending_approval", summary
    return last_card(teams)


# -- the cost rule ------------------------------------------------------------------------


def test_below_the_limit_is_recorded_at_once_and_shows_its_cost(arm, now, capsys, teams, prices, ml):
    code, summary = run(arm, now, capsys, body(), settings_doc(teams))
    assert code == 0 and summary["results"][0]["outcome"] == "exempted" and summary["needs_approval"] is False
    assert summary["cost"]["amount"] == 4.13 and summary["cost"]["currency"] == "USD"
    assert (summary["cost"]["hourly"], summary["cost"]["hours"], summary["cost"]["unknown_reason"]) == (0.344, 12.0, None)
    assert summary["auto_approve_below"] == {"amount": 20.0, "currency": "USD"}
    assert tags(ml, "ci-ada")[N.exempt_until] == "2026-11-24T07:00:00Z" and N.exempt_approved_by not in tags(ml, "ci-ada")
    assert "\u2248 USD 4.13 until Tue 24 Nov 07:00 UTC at USD 0.34/h (Standard_DS3_v2, westeurope)" in card_texts(last_card(teams))


def test_above_the_limit_without_approval_waits_and_writes_nothing(arm, now, capsys, teams, prices, ml):
    request = gpu_request()
    code, summary = run(arm, now, capsys, request, settings_doc(teams))
    row = summary["results"][0]
    assert code == 0 and row["outcome"] == "pending_approval" and summary["needs_approval"] is True
    assert summary["cost"]["amount"] == GPU_COST and "not below the auto-approval limit USD 20.00" in row["detail"]
    assert tags(ml, "ci-gpu") == OTHER_TAGS and arm.count("PATCH") == 0 and arm.count("PUT") == 0
    card = last_card(teams)
    shown = card_texts(card)
    assert any(t.startswith(f"\u2248 USD {GPU_COST} until") for t in shown) and "\u2022 lead@contoso.com" in shown
    # The buttons carry the request exactly as the request card sent it, with its requester and message id.
    approve = next(a for a in card["actions"] if a["title"] == "Approve")["data"]
    assert approve["action"] == "exemption_approval" and approve["outcome"] == "Approve"
    assert approve["request"] == request["data"] and approve["requester"] == request["responder"] and approve["request_message_id"] == "msg-1"


def test_at_exactly_the_limit_is_not_below_it():
    cost = _cost(quote=PriceQuote("Standard_NC6s_v3", "westeurope", "USD", 2.0, "NC6s v3", ""), hours=10)
    assert cost_gate(cost, CostLimit(20, "USD")) is not None
    assert cost_gate(cost, CostLimit(20.01, "USD")) is None
    assert "cannot be compared" in (cost_gate(cost, CostLimit(100, "EUR")) or "")


def test_without_a_limit_it_behaves_as_before_and_still_shows_the_cost(arm, now, capsys, teams, prices, ml):
    code, summary = run(arm, now, capsys, gpu_request(), settings_doc(teams, limit=None))
    assert code == 0 and summary["results"][0]["outcome"] == "exempted" and summary["needs_approval"] is False
    assert summary["auto_approve_below"] is None and summary["cost"]["amount"] == GPU_COST
    assert tags(ml, "ci-gpu") == {
        **OTHER_TAGS,
        N.exempt_until: "2026-11-24T07:00:00Z",
        N.exempt_by: "ada@contoso.com",
        N.exempt_reason: "training run ends tomorrow morning",
        N.exempt_request: "msg-1",
    }


def test_an_approver_asking_for_a_costly_exemption_still_needs_another_approver(arm, now, capsys, teams, prices, ml):
    code, summary = run(arm, now, capsys, gpu_request(who=responder(LEAD, "lead@contoso.com")), settings_doc(teams))
    assert code == 0 and summary["results"][0]["outcome"] == "pending_approval" and N.exempt_until not in tags(ml, "ci-gpu")


def test_the_estimate_is_in_the_limits_currency(arm, now, capsys, teams, prices, ml):
    code, summary = run(arm, now, capsys, body(), settings_doc(teams, limit={"amount": 20, "currency": "EUR"}))
    assert code == 0 and summary["cost"]["currency"] == "EUR" and summary["cost"]["amount"] == round(0.344 * 0.92 * 12, 2)
    assert {r.query.get("currencyCode") for r in prices.requests_seen} == {"'EUR'"}


# -- unknown cost: never below the limit, never a crash -----------------------------------


def test_a_failed_price_lookup_means_unknown_cost_and_needs_approval(arm, now, capsys, teams, prices, ml):
    arm.inject(Fault(status=500, method="GET", path_contains="/api/retail/prices", times=None))
    code, summary = run(arm, now, capsys, body(), settings_doc(teams))  # the cheap CI: its price cannot be seen
    assert code == 0 and summary["results"][0]["outcome"] == "pending_approval" and summary["needs_approval"] is True
    assert summary["cost"]["amount"] is None and "no list price for STANDARD_DS3_V2 in westeurope" in summary["cost"]["unknown_reason"]
    assert tags(ml, "ci-ada") == OTHER_TAGS and arm.count("PATCH") == 0
    assert any(t.startswith("estimated cost unknown: ") for t in card_texts(last_card(teams)))


def test_a_size_without_a_price_means_unknown_cost_and_needs_approval(arm, now, capsys, teams, prices, ml):
    code, summary = run(arm, now, capsys, body(compute_instance="ci-odd"), settings_doc(teams))
    assert code == 0 and summary["results"][0]["outcome"] == "pending_approval"
    assert summary["cost"]["amount"] is None and "Standard_ZZ9_v9" in summary["cost"]["unknown_reason"]
    assert "The estimated cost is unknown" in summary["results"][0]["detail"] and tags(ml, "ci-odd") == OTHER_TAGS


def test_an_unknown_cost_without_a_limit_is_shown_and_recorded_as_before(arm, now, capsys, teams, prices, ml):
    code, summary = run(arm, now, capsys, body(compute_instance="ci-odd"), settings_doc(teams, limit=None))
    assert code == 0 and summary["results"][0]["outcome"] == "exempted" and summary["cost"]["amount"] is None
    assert any(t.startswith("estimated cost unknown: ") for t in card_texts(last_card(teams)))


def test_a_price_client_that_raises_is_an_unknown_cost():
    class Broken:
        currency = "USD"

        def hourly_price(self, size, region):
            raise RuntimeError("socket closed")

    from shared.exemption.run import estimate_exemption_cost

    request = validate_request(body(), NOW).request
    ci = ComputeInstanceRecord(WorkspaceRef(SUB1, "rg-a", "mlw-one"), "ci-ada", "Running", vm_size="Standard_DS3_v2", location="westeurope")
    cost = estimate_exemption_cost(request, ci, Broken(), NOW)
    assert cost.amount is None and "socket closed" in cost.unknown_reason and cost.hours == 12.0


# -- the approver's answer ----------------------------------------------------------------


def test_an_approvers_approve_records_it_with_who_approved(arm, now, capsys, teams, prices, ml):
    doc = settings_doc(teams)
    card = pending_card(arm, now, capsys, teams, ml, doc)
    code, summary = run(arm, now + timedelta(minutes=30), capsys, press(card, "Approve", responder(LEAD, "lead@contoso.com"), "ok"), doc)
    assert code == 0 and summary["results"][0]["outcome"] == "exempted" and summary["approved_by"] == "lead@contoso.com"
    assert summary["approval"] == {"approver": "lead@contoso.com", "outcome": "Approve", "comments": "ok"}
    written = tags(ml, "ci-gpu")
    assert written[N.exempt_until] == "2026-11-24T07:00:00Z" and written[N.exempt_by] == "ada@contoso.com"
    assert written[N.exempt_approved_by] == "lead@contoso.com" and written[N.exempt_request] == "msg-1"
    shown = card_texts(last_card(teams))
    assert "Approved by" in shown and "lead@contoso.com" in shown
    # Automation may deliver the approval twice: the second changes nothing.
    code, summary = run(arm, now + timedelta(minutes=31), capsys, press(card, "Approve", responder(LEAD, "lead@contoso.com")), doc)
    assert code == 0 and summary["results"][0]["outcome"] == "already_recorded" and arm.count("PATCH") == 1


def test_an_approver_listed_by_object_id_counts(arm, now, capsys, teams, prices, ml):
    doc = settings_doc(teams)
    card = pending_card(arm, now, capsys, teams, ml, doc)
    code, summary = run(arm, now, capsys, press(card, "Approve", responder(BOSS, "boss@contoso.com")), doc)
    assert code == 0 and tags(ml, "ci-gpu")[N.exempt_approved_by] == "boss@contoso.com"


def test_the_requester_cannot_approve_their_own_request(arm, now, capsys, teams, prices, ml):
    doc = settings_doc(teams)
    card = pending_card(arm, now, capsys, teams, ml, doc)
    code, summary = run(arm, now, capsys, press(card, "Approve", responder()), doc)
    row = summary["results"][0]
    assert code == 1 and row["outcome"] == "rejected" and "you cannot approve your own request" in row["detail"]
    assert tags(ml, "ci-gpu") == OTHER_TAGS and arm.count("PATCH") == 0
    assert any("you cannot approve your own request" in t for t in card_texts(last_card(teams)))


def test_an_approver_requesting_cannot_approve_their_own_request_either(arm, now, capsys, teams, prices, ml):
    doc = settings_doc(teams)
    run(arm, now, capsys, gpu_request(who=responder(LEAD, "lead@contoso.com")), doc)
    card = last_card(teams)
    # Same person, even if the UPN were spelled differently: object ids decide.
    code, summary = run(arm, now, capsys, press(card, "Approve", responder(LEAD, "Lead.Other@contoso.com")), doc)
    assert code == 1 and "you cannot approve your own request" in summary["results"][0]["detail"] and N.exempt_until not in tags(ml, "ci-gpu")


def test_someone_who_is_not_an_approver_cannot_approve(arm, now, capsys, teams, prices, ml):
    doc = settings_doc(teams)
    card = pending_card(arm, now, capsys, teams, ml, doc)
    code, summary = run(arm, now, capsys, press(card, "Approve", responder(STRANGER, "eve@contoso.com")), doc)
    assert code == 1 and "eve@contoso.com is not an approver" in summary["results"][0]["detail"]
    assert tags(ml, "ci-gpu") == OTHER_TAGS and arm.count("PATCH") == 0


def test_a_rejection_is_answered_with_the_approvers_comments(arm, now, capsys, teams, prices, ml):
    doc = settings_doc(teams)
    card = pending_card(arm, now, capsys, teams, ml, doc)
    code, summary = run(arm, now, capsys, press(card, "Reject", responder(LEAD, "lead@contoso.com"), "use a smaller size overnight"), doc)
    assert code == 1 and summary["results"][0]["outcome"] == "rejected"
    assert "lead@contoso.com rejected the request: use a smaller size overnight" in summary["results"][0]["detail"]
    assert tags(ml, "ci-gpu") == OTHER_TAGS and arm.count("PATCH") == 0
    assert any("use a smaller size overnight" in t for t in card_texts(last_card(teams)))


def test_a_press_forwarded_without_the_flows_reshaping_is_refused_with_a_pointer(arm, now, capsys, teams, prices, ml):
    doc = settings_doc(teams)
    card = pending_card(arm, now, capsys, teams, ml, doc)
    raw = {"data": next(a for a in card["actions"] if a["title"] == "Approve")["data"], "responder": responder(LEAD, "lead@contoso.com")}
    code, summary = run(arm, now, capsys, raw, doc)
    assert code == 1 and "Cost-aware approval" in summary["results"][0]["detail"] and arm.count("PATCH") == 0


@pytest.mark.parametrize(
    "approval, fragment",
    [
        ({"outcome": "Approve"}, "'approval' must be an object with 'approver' and 'outcome'"),
        ({"approver": {"displayName": "Lead"}, "outcome": "Approve"}, "does not say who approved"),
        ({"approver": {"objectId": "lead@contoso.com"}, "outcome": "Approve"}, "is not an Entra object id"),
        ({"approver": {"objectId": LEAD}}, "'outcome' is missing"),
        ({"approver": {"objectId": BOSS}, "outcome": "Maybe"}, "neither Approve nor Reject"),
    ],
)
def test_a_malformed_approval_is_refused(arm, now, capsys, teams, prices, ml, approval, fragment):
    code, summary = run(arm, now, capsys, {**gpu_request(), "approval": approval}, settings_doc(teams))
    assert code == 1 and fragment in summary["results"][0]["detail"] and arm.count("PATCH") == 0


def test_a_new_exemption_without_approval_does_not_inherit_an_old_approver(arm, now, capsys, teams, prices, ml):
    ml.compute(SUB1, "rg-a", "mlw-one", "ci-ada").tags[N.exempt_approved_by] = "lead@contoso.com"
    code, summary = run(arm, now, capsys, body(), settings_doc(teams))
    assert code == 0 and tags(ml, "ci-ada")[N.exempt_approved_by] == ""


def test_cancelling_removes_the_approver_tag_too(arm, now, capsys, teams, prices, ml):
    doc = settings_doc(teams)
    card = pending_card(arm, now, capsys, teams, ml, doc)
    run(arm, now, capsys, press(card, "Approve", responder(LEAD, "lead@contoso.com")), doc)
    cancel = {"data": last_card(teams)["actions"][0]["data"], "responder": responder(), "messageId": "msg-2"}
    code, summary = run(arm, now, capsys, cancel, doc)
    assert code == 0 and summary["results"][0]["outcome"] == "cancelled" and tags(ml, "ci-gpu") == OTHER_TAGS


# -- settings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exemption, fragment",
    [
        ({"approvers": []}, "nobody could approve"),
        ({"auto_approve_below": {"amount": 20, "currency": "usd"}}, "three-letter code"),
        ({"auto_approve_below": {"amount": -1, "currency": "USD"}}, "at least 0"),
        ({"auto_approve_below": {"amount": 20}}, "exemption.auto_approve_below"),
    ],
)
def test_bad_cost_settings_are_refused_before_any_call(arm, now, capsys, teams, prices, ml, exemption, fragment):
    doc = settings_doc(teams)
    doc["exemption"].update(exemption)
    code = handle_exemption_request.main(["--settings-b64", encode_settings(doc), webhook(body())], credential=arm.credential(), now=now)
    summary = summary_from(capsys.readouterr().out)
    assert code == 2 and fragment in summary["error"] and teams.cards == [] and prices.requests_seen == []


# -- the pure rules -----------------------------------------------------------------------

NOW = datetime(2026, 11, 23, 19, 0, tzinfo=timezone.utc)
SECTION = ExemptionSection(approvers=("lead@contoso.com",), auto_approve_below=CostLimit(20, "USD"))
CI = ComputeInstanceRecord(WorkspaceRef(SUB1, "rg-a", "mlw-one"), "ci-gpu", "Running", assigned_user_object_id=OWNER, assigned_user_tenant_id=TENANT)


def _cost(quote: Optional[PriceQuote] = None, hours: float = 12.0, reason: str = "") -> CICost:
    return CICost(CI.key, "Standard_NC6s_v3", "westeurope", hours, quote, NOW + timedelta(hours=hours), "USD", reason)


def _request(approval: Optional[Approval] = None):
    request = validate_request(gpu_request(), NOW).request
    return replace(request, approval=approval)


def test_decision_cost_rule_and_approval():
    cheap = _cost(PriceQuote("Standard_DS3_v2", "westeurope", "USD", 0.344, "DS3 v2", ""))
    dear = _cost(PriceQuote("Standard_NC6s_v3", "westeurope", "USD", 3.305, "NC6s v3", ""))
    assert decide_exemption(_request(), CI, SECTION, cost=cheap).verdict == RECORD
    assert decide_exemption(_request(), CI, SECTION, cost=dear).verdict == NEEDS_APPROVAL
    assert decide_exemption(_request(), CI, SECTION, cost=None).verdict == NEEDS_APPROVAL  # not estimated = unknown
    assert decide_exemption(_request(), CI, replace(SECTION, auto_approve_below=None), cost=None).verdict == RECORD
    approved = decide_exemption(_request(Approval("Lead@Contoso.com", LEAD, "Approve")), CI, SECTION, cost=dear)
    assert approved.verdict == RECORD and approved.approved_by == "Lead@Contoso.com"
    # A "Reject" is never overridden, even when the cost would not have needed an approver.
    assert decide_exemption(_request(Approval("lead@contoso.com", LEAD, "Reject")), CI, SECTION, cost=cheap).verdict == REJECT


def test_self_approval_falls_back_to_the_upn_when_the_approval_has_no_object_id():
    section = replace(SECTION, approvers=("ada@contoso.com", "lead@contoso.com"))
    decision = decide_exemption(_request(Approval(approver_upn="ADA@contoso.com")), CI, section, cost=None)
    assert decision.verdict == REJECT and "you cannot approve your own request" in decision.reasons[0]


def test_cost_text_and_summary_shapes():
    known = _cost(PriceQuote("Standard_NC6s_v3", "westeurope", "USD", 1.03, "NC6s v3", ""), hours=12)
    assert known.estimate_text == "\u2248 USD 12.36 until Tue 24 Nov 07:00 UTC at USD 1.03/h (Standard_NC6s_v3, westeurope)"
    assert known.to_dict()["amount"] == 12.36 and known.to_dict()["unknown_reason"] is None
    unknown = _cost(reason="no list price for X")
    assert unknown.estimate_text == "estimated cost unknown: no list price for X"
    assert json.loads(json.dumps(unknown.to_dict())) == {
        "amount": None,
        "currency": "USD",
        "hourly": None,
        "hours": 12.0,
        "until": "2026-11-24T07:00:00Z",
        "vm_size": "Standard_NC6s_v3",
        "region": "westeurope",
        "text": "estimated cost unknown: no list price for X",
        "unknown_reason": "no list price for X",
    }
