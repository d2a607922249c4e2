"""Issue 13: every request is answered to the person who asked, approvals go to the approvers' place,
wiring errors go to the admins in full; the routing contract; pacing to the Teams connector's limit."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

import pytest

from fake_azure.teams import DEFAULT_URL, FakeTeamsWorkflow
from runbooks import create_compute_instance, handle_exemption_request
from shared.settings import encode_settings
from shared.teams.post import ConnectorPacer, time_needed
from shared.teams.routing import Address, address_url, expects_answer, iter_elements
from shared.warning.run import fit_lead_time
from tests.cardcheck import assert_valid_card
from tests.conftest import SUB1, TENANT
from tests.summary import summary_from

ADA = "00000000-0000-4000-8000-000000000001"
BOSS = "00000000-0000-4000-8000-0000000000b0"
WS_KEY = f"{SUB1}/rg-ml/mlw-one"
ADA_RESPONDER = {"objectId": ADA, "tenantId": TENANT, "userPrincipalName": "ada@contoso.com", "email": "ada@contoso.com", "displayName": "Ada"}
BOSS_RESPONDER = {"objectId": BOSS, "tenantId": TENANT, "userPrincipalName": "boss@contoso.com", "email": "boss@contoso.com", "displayName": "Boss"}


@pytest.fixture
def teams(arm):
    return FakeTeamsWorkflow(arm)


@pytest.fixture
def ws(ml):
    return ml.add_workspace(SUB1, "rg-ml", "mlw-one")


def texts(card: Dict[str, Any]) -> List[str]:
    return [e["text"] for e in iter_elements(card) if e.get("type") in ("TextBlock", "TextRun") and isinstance(e.get("text"), str)]


def is_admin(card: Dict[str, Any]) -> bool:
    return str(card.get("fallbackText", "")).startswith("CI governance, for admins")


def posts(teams) -> List[Tuple[Dict[str, str], Dict[str, Any]]]:
    out = teams.addressed_cards
    for _, card in out:
        assert_valid_card(card)
    return out


# -- the create runbook answers in Teams ------------------------------------------------------


def create_doc(teams, **create: Any) -> Dict[str, Any]:
    section = {
        "allowed_sizes": ["Standard_DS3_v2", "Standard_E4ds_v4", "Standard_NC6s_v3"],
        "sizes_needing_approval": ["STANDARD_NC*"],
        "approvers": ["boss@contoso.com", "ada@contoso.com"],
        "polling_interval_seconds": 0.02,
        "timeout_seconds": 10,
        **create,
    }
    return {"scope": {"subscriptions": [SUB1]}, "teams": {"workflow_url": teams.url, "approvers_recipient": "ml-leads@contoso.com"}, "create": section}


def create_body(**data: str) -> Dict[str, Any]:
    base = {"action": "request_compute_instance", "workspace": WS_KEY, "name": "ci-ada", "size": "Standard_DS3_v2", "idle_minutes": "45", "cost_center": "CC-1"}
    return {"data": {**base, **data}, "responder": ADA_RESPONDER, "messageId": "m-1"}


def create(arm, capsys, teams, body: Any, doc: Optional[Dict[str, Any]] = None) -> Tuple[int, Dict[str, Any]]:
    args = ["--settings-b64", encode_settings(doc or create_doc(teams)), "--request", body if isinstance(body, str) else json.dumps(body)]
    code = create_compute_instance.main(args, credential=arm.credential())
    return code, summary_from(capsys.readouterr().out)


def test_created_answer_goes_to_the_requester_with_the_studio_link_and_idle_shutdown(arm, ml, ws, capsys, teams):
    code, summary = create(arm, capsys, teams, create_body())
    assert code == 0 and summary["results"][0]["outcome"] == "created"
    ((query, card),) = posts(teams)
    assert query == {"recipient": "ada@contoso.com", "recipient_type": "upn"}  # no wait: nothing to answer
    shown = texts(card)
    assert "\u2705 Your compute instance is ready" in shown and "after 45 idle minutes" in shown and "mlw-one (rg-ml)" in shown
    (link,) = [a["url"] for a in card["actions"] if a["type"] == "Action.OpenUrl"]
    assert link == f"https://ml.azure.com/compute/ci-ada/details?wsid=/subscriptions/{SUB1}/resourceGroups/rg-ml/providers/Microsoft.MachineLearningServices/workspaces/mlw-one&tid={TENANT}"


def test_refused_by_policy_lists_every_reason_in_user_words(arm, ml, ws, capsys, teams):
    code, summary = create(arm, capsys, teams, create_body(name="cpu-cluster-1", size="Standard_ND96asr_v4", idle_minutes="5"))
    assert summary["results"][0]["outcome"] == "rejected" and [c for c in arm.calls if "/workflows/" not in c.path] == []
    ((query, card),) = posts(teams)
    reasons = [t for t in texts(card) if t.startswith("\u2022 ")]
    assert query["recipient"] == "ada@contoso.com" and len(reasons) == 3
    assert all(t.endswith(".") and "create." not in t and "scope." not in t for t in reasons), reasons


def test_needs_approval_then_an_approver_approves_in_teams_and_the_requester_gets_the_outcome(arm, ml, ws, capsys, teams):
    code, summary = create(arm, capsys, teams, create_body(size="Standard_NC6s_v3"))
    assert code == 0 and summary["results"][0]["outcome"] == "needs_approval" and arm.count("PUT") == 0
    (to_ada, pending), (to_approvers, approval) = posts(teams)
    assert to_ada == {"recipient": "ada@contoso.com", "recipient_type": "upn"} and "\u23f3 Waiting for approval" in texts(pending)
    assert "\u2022 boss@contoso.com" in texts(pending)
    assert to_approvers == {"recipient": "ml-leads@contoso.com", "recipient_type": "upn", "audience": "approvers", "wait": "true"}
    assert expects_answer(approval) and not expects_answer(pending)

    # The approver presses Approve; the flow POSTs Teams' response to the create webhook as it is.
    approve = next(a for a in approval["actions"] if a["title"] == "Approve")
    answer = {"data": {**approve["data"], "comments": "fine for the sprint"}, "responder": BOSS_RESPONDER, "messageId": "m-2"}
    code, summary = create(arm, capsys, teams, answer)
    row = summary["results"][0]
    assert code == 0 and row["outcome"] == "created" and row["extra"]["approved_by"] == "boss@contoso.com"
    assert ml.compute(SUB1, "rg-ml", "mlw-one", "ci-ada").assigned_user == (ADA, TENANT)  # assigned to the requester, not the approver
    query, card = posts(teams)[-1]
    assert query["recipient"] == "ada@contoso.com" and "boss@contoso.com" in texts(card)


@pytest.mark.parametrize(
    "who, outcome, fragment",
    [(ADA_RESPONDER, "Approve", "cannot approve their own request"), (BOSS_RESPONDER, "Reject", "declined by boss@contoso.com")],
)
def test_self_approval_and_rejection_are_refused_and_told_to_the_requester(arm, ml, ws, capsys, teams, who, outcome, fragment):
    create(arm, capsys, teams, create_body(size="Standard_NC6s_v3"))
    approval = posts(teams)[-1][1]
    action = next(a for a in approval["actions"] if a["data"]["outcome"] == outcome)
    code, summary = create(arm, capsys, teams, {"data": action["data"], "responder": who, "messageId": "m-3"})
    assert summary["results"][0]["outcome"] == "rejected" and fragment in summary["results"][0]["detail"] and arm.count("PUT") == 0
    query, card = posts(teams)[-1]
    assert query["recipient"] == "ada@contoso.com" and any(fragment in t.lower() or fragment in t for t in texts(card))


def test_quota_failure_in_user_words_and_service_errors_go_to_the_admins(arm, ml, ws, capsys, teams):
    ml.create_errors["ci-ada"] = ("QuotaExceeded", "Operation results in exceeding approved standardDSv2Family Cores quota.")
    code, summary = create(arm, capsys, teams, create_body())
    assert code == 1 and "QuotaExceeded" in summary["results"][0]["detail"]  # the service's words in the job output
    ((query, card),) = posts(teams)
    assert query["recipient"] == "ada@contoso.com" and any("no quota left for Standard_DS3_v2" in t for t in texts(card))

    ml.create_errors["ci-other"] = ("InternalServerError", "Something broke in the resource provider.")
    create(arm, capsys, teams, create_body(name="ci-other"), create_doc(teams, max_per_user=5))
    (_, user), (admin_query, notice) = posts(teams)[-2:]
    assert any("your admin has been told" in t for t in texts(user)) and not any("resource provider" in t for t in texts(user))
    assert is_admin(notice) and "recipient" not in admin_query and any("Something broke" in t for t in texts(notice))


def test_an_unusable_request_tells_the_requester_only_that_and_the_admins_everything(arm, ml, ws, capsys, teams):
    code, _ = create(arm, capsys, teams, create_body(workspace="not-a-key"))
    assert code == 2
    (admin_query, notice), (query, user) = posts(teams)
    assert is_admin(notice) and any("not-a-key" in t for t in texts(notice))
    assert query["recipient"] == "ada@contoso.com" and "Your request could not be processed; your admin has been told." in texts(user)


# -- exemption answers: requester, approvers, try again ---------------------------------------


def exemption_doc(teams, **exemption: Any) -> Dict[str, Any]:
    return {
        "scope": {"subscriptions": [SUB1]},
        "teams": {"workflow_url": teams.url},
        "exemption": {"readback_delay_seconds": 0, "approvers": ["boss@contoso.com"], "time_zones": ["UTC", "Europe/Berlin"], **exemption},
    }


def exempt(arm, now, capsys, teams, body: Dict[str, Any], doc: Optional[Dict[str, Any]] = None) -> Tuple[int, Dict[str, Any]]:
    args = ["--settings-b64", encode_settings(doc or exemption_doc(teams)), "--request", json.dumps(body)]
    code = handle_exemption_request.main(args, credential=arm.credential(), now=now)
    return code, summary_from(capsys.readouterr().out)


def exemption_body(**data: str) -> Dict[str, Any]:
    base = {
        "action": "request_exemption",
        "workspace": WS_KEY,
        "compute_instance": "ci-ada",
        "until_date": "2026-11-24",
        "until_time": "08:00",
        "time_zone": "Europe/Berlin",
        "reason": "training",
    }
    return {"data": {**base, **data}, "responder": ADA_RESPONDER, "messageId": "m-1"}


def test_an_exemption_waiting_for_approval_tells_the_requester_and_asks_the_approvers(arm, ml, ws, now, capsys, teams):
    ml.add_compute_instance(ws, "ci-ada", assigned_user=(ADA, TENANT))
    doc = exemption_doc(teams, auto_approve_below={"amount": 1, "currency": "USD"})  # no price known: needs approval
    code, summary = exempt(arm, now, capsys, teams, exemption_body(), doc)
    assert summary["results"][0]["outcome"] == "pending_approval"
    (to_ada, pending), (to_approvers, approval) = posts(teams)
    assert to_ada == {"recipient": "ada@contoso.com", "recipient_type": "upn"} and not expects_answer(pending)
    assert to_approvers == {"audience": "approvers", "wait": "true"} and [a["title"] for a in approval["actions"]] == ["Approve", "Reject"]


def test_try_again_posts_the_request_again_prefilled_with_names_and_the_persons_cis(arm, ml, ws, now, capsys, teams):
    ml.add_compute_instance(ws, "ci-ada", assigned_user=(ADA, TENANT))
    ml.add_compute_instance(ws, "ci-ada-2", assigned_user=(ADA, TENANT))
    ml.add_compute_instance(ws, "ci-bob", assigned_user=("00000000-0000-4000-8000-000000000002", TENANT))
    exempt(arm, now, capsys, teams, exemption_body(compute_instance="ci-nope"))
    ((query, rejected),) = posts(teams)
    assert query["recipient"] == "ada@contoso.com" and query["wait"] == "true"  # "Try again" expects an answer
    (again,) = [a["data"] for a in rejected["actions"] if a["title"] == "Try again"]
    code, summary = exempt(arm, now, capsys, teams, {"data": again, "responder": ADA_RESPONDER, "messageId": "m-2"})
    assert summary["results"][0]["outcome"] == "form_sent"
    query, form = posts(teams)[-1]
    assert query["recipient"] == "ada@contoso.com"
    inputs = {e["id"]: e for e in iter_elements(form) if str(e.get("type", "")).startswith("Input.")}
    assert [c["title"] for c in inputs["workspace"]["choices"]] == ["mlw-one (rg-ml)"] and inputs["workspace"]["value"] == WS_KEY
    assert inputs["workspace"]["style"] == "filtered"
    assert [c["value"] for c in inputs["compute_instance"]["choices"]] == ["ci-ada", "ci-ada-2"]  # hers only
    assert (inputs["until_date"]["value"], inputs["until_time"]["value"], inputs["time_zone"]["value"]) == ("2026-11-24", "08:00", "Europe/Berlin")
    assert inputs["reason"]["value"] == "training" and inputs["until_date"]["max"] == "2026-11-26"


# -- the routing contract and the connector's pace ----------------------------------------------


def test_the_routing_contract_appends_to_the_signed_url_byte_for_byte():
    card_with_button = {"type": "AdaptiveCard", "actions": [{"type": "Action.Submit", "data": {}}]}
    assert expects_answer(card_with_button) and not expects_answer({"type": "AdaptiveCard", "body": []})
    assert address_url(DEFAULT_URL, Address()) == DEFAULT_URL
    url = address_url(DEFAULT_URL, Address.approvers("lead+ml@contoso.com"), wait=True)
    assert url.startswith(DEFAULT_URL + "&")
    assert parse_qs(urlsplit(url).query) | {} == {
        **parse_qs(urlsplit(DEFAULT_URL).query),
        "recipient": ["lead+ml@contoso.com"],
        "recipient_type": ["upn"],
        "audience": ["approvers"],
        "wait": ["true"],
    }
    assert Address.responder({"objectId": ADA.upper()}) == Address(ADA, "object_id")  # no UPN: the object id
    assert Address.responder({"userPrincipalName": "not a upn"}).is_channel


def test_the_pacer_keeps_to_25_posts_per_5_minutes():
    clock = [0.0]
    waits: List[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock[0] += seconds

    pacer = ConnectorPacer(clock=lambda: clock[0], sleep=sleep)
    for _ in range(60):
        pacer.acquire()
        clock[0] += 1.0
    assert waits == [275.0, 275.0] and pacer.waited == 550.0  # posts 26 and 51 wait for the window
    assert time_needed(25) == 0 and time_needed(26) == 300 and time_needed(151) == 1800


def test_a_fleet_that_does_not_fit_the_lead_time_says_so_and_what_would_fit():
    assert fit_lead_time(150, 30)["fits"] is True
    late = fit_lead_time(151, 30)
    assert late["fits"] is False and "warning.minutes_before to at least 36" in late["message"] and "25 cards per 5 minutes" in late["message"]
