"""The pre-stop warning: pure grouping by owner and card contexts, the stop_warning card against the
1.5 schema and the exemption validation, and end to end: warn -> exemption from the warning card
(through the real exemption runbook) -> the real sweep skips that CI."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Optional
from urllib.parse import parse_qs, urlsplit

import pytest

from fake_azure import Fault
from fake_azure.retail_prices import FakeRetailPrices
from fake_azure.teams import DEFAULT_URL, FakeTeamsWorkflow
from runbooks import handle_exemption_request, stop_compute_instances, warn_before_stop
from shared.errors import SettingsError
from shared.exemption.request import validate_request
from shared.models import ComputeInstanceRecord, PriceQuote, WorkspaceRef
from shared.pricing.cost import CICost, CostEstimate
from shared.sections import RequestRules, StopPolicy, WarningSection
from shared.settings import encode_settings, settings_from_dict
from shared.stop.run import plan
from shared.tags import TagNames, read_exemption_for
from shared.teams.cards import MAX_MESSAGE_BYTES, message_size, render_card
from shared.times import format_instant
from shared.warning.policy import (
    FALLBACK,
    OBJECT_ID,
    UPN,
    Recipient,
    delivery_url,
    exemption_form,
    recipient_for,
    stop_time,
    to_stop_by_recipient,
    warning_cards,
)
from tests.cardcheck import assert_valid_card, input_ids
from tests.conftest import ROOT, SUB1, SUB2, TENANT, fast_stop_settings
from tests.summary import outcomes, summary_from

N = TagNames()
UTC = timezone.utc
ADA = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
BOB = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"
WS = WorkspaceRef(SUB1, "rg-a", "mlw-one", "westeurope")
WS2 = WorkspaceRef(SUB2, "rg-b", "mlw-two", "westeurope")
DS3_V2_WESTEUROPE = 0.344  # fake_azure/data/retail_prices_catalog.json


def ci(name: str, state: str = "Running", tags: Optional[Dict[str, str]] = None, user: Optional[str] = None, ws: WorkspaceRef = WS) -> ComputeInstanceRecord:
    return ComputeInstanceRecord(ws, name, state, "STANDARD_DS3_V2", "westeurope", tags or {}, user, TENANT if user else None)


def exempt(until: datetime, by: str = "ada@contoso.com") -> Dict[str, str]:
    return {N.exempt_until: format_instant(until), N.exempt_by: by}


# -- who is warned (pure) -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "tags, user, expected",
    [
        ({N.owner: "ada@contoso.com"}, BOB, Recipient(UPN, "ada@contoso.com")),  # the owner tag wins over the assigned user
        ({"CI-Governance.Owner": " Ada@Contoso.com "}, None, Recipient(UPN, "Ada@Contoso.com")),  # tag names are case-insensitive
        ({N.owner: ADA.upper()}, None, Recipient(OBJECT_ID, ADA)),
        ({N.owner: "team vision"}, BOB, Recipient(OBJECT_ID, BOB, TENANT)),  # names nobody reachable: next rule
        ({}, BOB, Recipient(OBJECT_ID, BOB, TENANT)),
        ({N.owner: ""}, None, Recipient(FALLBACK)),
        ({}, "not-a-guid", Recipient(FALLBACK)),
    ],
)
def test_recipient_is_the_owner_tag_then_the_assigned_user_then_the_fallback(tags, user, expected):
    assert recipient_for(ci("ci-x", tags=tags, user=user)) == expected


def test_only_what_the_plan_stops_is_grouped_by_recipient(now):
    stop_at = now + timedelta(minutes=30)
    fleet = [
        ci("ci-b", tags={N.owner: "ada@contoso.com"}),
        ci("ci-a", tags={N.owner: "ADA@contoso.com"}, ws=WS2),  # same person, other spelling
        ci("ci-c", user=BOB),
        ci("ci-orphan"),
        ci("ci-exempt", tags={N.owner: "ada@contoso.com", **exempt(stop_at + timedelta(hours=2))}),
        ci("ci-expiring", tags={N.owner: "ada@contoso.com", **exempt(stop_at - timedelta(minutes=5))}),  # valid now, not at the stop
        ci("ci-off", state="Stopped", tags={N.owner: "ada@contoso.com"}),
        ci("ci-job", state="JobRunning", user=BOB),
        ci("ci-shared", user=BOB),
    ]
    settings = settings_from_dict({})
    groups = to_stop_by_recipient(plan(fleet, stop_at, StopPolicy(exclude=("ci-shared",)), settings))
    assert [(who, [c.name for c in cis]) for who, cis in groups] == [
        (Recipient(UPN, "ada@contoso.com"), ["ci-b", "ci-expiring", "ci-a"]),  # sorted by workspace, then name
        (Recipient(OBJECT_ID, BOB, TENANT), ["ci-c"]),
        (Recipient(FALLBACK), ["ci-orphan"]),  # last
    ]


def test_stop_time_is_minutes_before_from_now_or_the_configured_stop_time(now):
    assert stop_time(now + timedelta(seconds=42), WarningSection()) == now + timedelta(minutes=30)
    assert stop_time(now, WarningSection(minutes_before=45)) == now + timedelta(minutes=45)
    # The stop runs at 20:00 Berlin (19:00 UTC in November); the warning job started 4 minutes late.
    berlin = WarningSection(stop_time="20:00", time_zone="Europe/Berlin")
    assert stop_time(datetime(2026, 11, 23, 18, 34, tzinfo=UTC), berlin) == datetime(2026, 11, 23, 19, 0, tzinfo=UTC)
    # ... and around midnight the nearest occurrence is on the other day.
    late = WarningSection(stop_time="00:10", time_zone="UTC")
    assert stop_time(datetime(2026, 11, 23, 23, 40, tzinfo=UTC), late) == datetime(2026, 11, 24, 0, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"minutes_before": 0}, "minutes_before"),
        ({"stop_time": "7pm"}, "stop_time"),
        ({"time_zone": "Nowhere/Land"}, "not a known time zone"),
        ({"workflow_url": "http://example.com"}, "https"),
        ({"max_cis_per_card": 50}, "max_cis_per_card"),
    ],
)
def test_bad_warning_settings_are_refused(values, message):
    with pytest.raises(SettingsError, match=message):
        settings_from_dict({"warning": values}).section("warning", WarningSection)


def test_delivery_url_adds_the_recipient_and_keeps_the_signed_query_byte_for_byte():
    # A warning expects an answer: wait=true; the fallback channel gets no recipient.
    assert delivery_url(DEFAULT_URL, Recipient(FALLBACK)) == DEFAULT_URL + "&wait=true"
    url = delivery_url(DEFAULT_URL, Recipient(UPN, "ada+ml@contoso.com"))
    assert url.startswith(DEFAULT_URL + "&")
    query = parse_qs(urlsplit(url).query)
    assert query["recipient"] == ["ada+ml@contoso.com"] and query["recipient_type"] == ["upn"] and query["sig"] == ["fake-signature"]
    assert query["wait"] == ["true"] and "audience" not in query


def test_the_form_suggests_the_next_morning_in_the_default_time_zone(now):
    morning = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
    form = exemption_form(now, morning, ["UTC", "Europe/Berlin"], "Europe/Berlin", 72)
    assert (form.min_date, form.until_date, form.until_time) == ("2026-11-23", "2026-11-24", "09:00")
    assert form.max_date == "2026-11-26"  # 72 h from 19:00 UTC is 20:00 in Berlin on the 26th
    # One-tap picks: the next morning, and 24 h from now (to the quarter hour), both in the default zone.
    assert [(q.title, q.until_date, q.until_time, q.time_zone) for q in form.quick] == [
        ("Until Tue 09:00 CET", "2026-11-24", "09:00", "Europe/Berlin"),
        ("+24 h", "2026-11-24", "20:00", "Europe/Berlin"),
    ]
    assert exemption_form(now, morning, ["UTC"], "UTC", 12).quick[1:] == ()  # +24 h is over a 12-hour limit
    # A suggestion the exemption rules would refuse is left for the requester to choose.
    assert exemption_form(now, morning, ["UTC"], "UTC", 6).until_date == ""


# -- the card -------------------------------------------------------------------------------------


def estimate_for(cis: List[ComputeInstanceRecord], hours: float = 13.0, unknown: tuple = ()) -> CostEstimate:
    quote = PriceQuote("Standard_DS3_v2", "westeurope", "USD", DS3_V2_WESTEUROPE, "D3 v2/DS3 v2", "2024-01-01T00:00:00Z")
    items = {c.key: CICost(c.key, c.vm_size, c.location, hours, None if c.name in unknown else quote) for c in cis}
    return CostEstimate("USD", hours, datetime(2026, 11, 24, 8, 0, tzinfo=UTC), items)


def cards_for(cis, now, estimate=None, max_cis=8, zones=("UTC", "Europe/Berlin")):
    stop_at = now + timedelta(minutes=30)
    groups = to_stop_by_recipient([(c, d) for c, d in plan(cis, stop_at, StopPolicy(), settings_from_dict({}))])
    form = exemption_form(now, datetime(2026, 11, 24, 8, 0, tzinfo=UTC), list(zones), zones[0], 72)
    return [(c, render_card("stop_warning", **c.context)) for c in warning_cards(groups, stop_at, form, estimate, max_cis)]


def texts(card: Any) -> List[str]:
    out: List[str] = []
    if isinstance(card, dict):
        if isinstance(card.get("text"), str):
            out.append(card["text"])
        for value in card.values():
            out.extend(texts(value))
    elif isinstance(card, list):
        for item in card:
            out.extend(texts(item))
    return out


def submits(card: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Every Action.Submit: the card's own (one-tap picks), then those inside its show cards."""
    top = [a for a in card.get("actions", []) if a["type"] == "Action.Submit"]
    return top + [a for s in card.get("actions", []) if s["type"] == "Action.ShowCard" for a in s["card"]["actions"]]


def submission(card: Dict[str, Any], compute_instance: str, responder: Dict[str, str], title: str = "Keep running until then", **typed: str) -> Dict[str, Any]:
    """What Teams hands the flow when the button ``title`` is pressed with ``compute_instance`` chosen: the
    button's data plus the values of the inputs it gathers (the card's own; a show card's button also its
    show card's), prefilled or ``typed``, and who pressed it."""
    inputs = [n for n in card["body"] if str(n.get("type", "")).startswith("Input.")]
    action = next((a for a in card.get("actions", []) if a.get("title") == title), None)
    if action is None:
        show = next(s for s in card["actions"] if s["type"] == "Action.ShowCard" and any(a["title"] == title for a in s["card"]["actions"]))
        action = next(a for a in show["card"]["actions"] if a["title"] == title)
        inputs += _inputs(show["card"])
    values = {}
    for node in inputs:
        if node["id"] in typed:
            values[node["id"]] = typed[node["id"]]
        elif node["id"] == "compute_instance":
            values[node["id"]] = compute_instance
        elif "value" in node:
            values[node["id"]] = node["value"]
    data = {**action["data"], **values}
    assert data["compute_instance"] == compute_instance, "this card is not about that compute instance"
    return {"data": data, "responder": responder, "messageId": "warn-msg-1", "submitActionId": action["title"]}


def _inputs(node: Any) -> List[Dict[str, Any]]:
    out: List[Dict[str, Any]] = []
    if isinstance(node, dict):
        if str(node.get("type", "")).startswith("Input."):
            out.append(node)
        for value in node.values():
            out.extend(_inputs(value))
    elif isinstance(node, list):
        for item in node:
            out.extend(_inputs(item))
    return out


def responder(oid: str = ADA, upn: str = "ada@contoso.com") -> Dict[str, str]:
    return {"objectId": oid, "tenantId": TENANT, "email": upn, "userPrincipalName": upn, "displayName": "Ada"}


def test_one_card_per_owner_and_workspace_with_a_ci_choice_one_tap_picks_and_another_time(now):
    fleet = [
        ci("ci-a", tags={N.owner: "ada@contoso.com"}),
        ci("ci-c", tags={N.owner: "ada@contoso.com"}),
        ci("ci-b", tags={N.owner: "ada@contoso.com"}, ws=WS2),
    ]
    (one, card), (two, card_b) = cards_for(fleet, now, estimate_for(fleet, unknown=("ci-c",)))
    assert (one.compute_instances, two.compute_instances) == ((fleet[0].key, fleet[1].key), (fleet[2].key,))
    for c in (card, card_b):
        assert_valid_card(c)
    assert sorted(input_ids(card)) == ["compute_instance", "reason", "time_zone", "until_date", "until_time"]
    assert sorted(input_ids(card_b)) == ["reason", "time_zone", "until_date", "until_time"]  # one CI: no choice to make
    choice = next(n for n in card["body"] if n.get("id") == "compute_instance")
    assert choice["style"] == "filtered" and [c["value"] for c in choice["choices"]] == ["ci-a", "ci-c"]
    shown = texts(card)
    assert "For ada@contoso.com" in shown and "Workspace mlw-one (rg-a)" in shown
    assert f" STANDARD_DS3_V2, ~USD {DS3_V2_WESTEUROPE * 13:.2f} overnight" in shown and " STANDARD_DS3_V2, ~unknown overnight" in shown
    assert any("{{DATE(2026-11-23T19:30:00Z, SHORT)}} {{TIME(2026-11-23T19:30:00Z)}}" in t for t in shown)
    assert any(f"would cost about USD {DS3_V2_WESTEUROPE * 13:.2f} + 1 unknown" in t for t in shown)
    assert [a["title"] for a in submits(card)] == ["Until Tue 08:00 UTC", "+24 h", "Keep running until then"]
    date_input = next(n for n in _inputs(card) if n["id"] == "until_date")
    assert (date_input["min"], date_input["max"]) == ("2026-11-23", "2026-11-26")
    # One tap: the pick's data plus the chosen CI and the (prefilled) reason is a complete, valid request.
    for title, until in (("Until Tue 08:00 UTC", "2026-11-24T08:00:00Z"), ("+24 h", "2026-11-24T19:00:00Z")):
        body = submission(card, "ci-c", responder(), title)
        validation = validate_request(body, now, RequestRules(max_hours=72))
        assert validation.ok, validation.reasons
        assert (validation.request.workspace.key, validation.request.compute_instance, validation.request.until_text) == (f"{SUB1}/rg-a/mlw-one", "ci-c", until)
    # Another time, from the show card; on the single-CI card the CI is in the button's data.
    body = submission(card_b, "ci-b", responder(), reason="training until the morning")
    validation = validate_request(body, now, RequestRules(max_hours=72))
    assert validation.ok, validation.reasons
    request = validation.request
    assert (request.workspace.key, request.compute_instance, request.until_text) == (f"{SUB2}/rg-b/mlw-two", "ci-b", "2026-11-24T08:00:00Z")


def test_without_pricing_the_card_shows_no_cost(now):
    ((_, card),) = cards_for([ci("ci-a", user=ADA)], now)
    assert_valid_card(card)
    assert not any("cost" in t.lower() for t in texts(card))


def test_many_cis_are_split_into_parts_that_each_fit_in_a_teams_message(now):
    # Longest names Azure allows (workspace 33, CI 24 characters) and a long owner tag.
    owner = "a-very-long-user-principal-name." + "x" * 60 + "@contoso.onmicrosoft.com"
    ws = WorkspaceRef(SUB1, "r" * 90, "w" * 33, "westeurope")
    fleet = [ci(f"ci-{i:02d}-" + "n" * 18, tags={N.owner: owner}, ws=ws) for i in range(41)]
    zones = ("UTC", "Europe/London", "Europe/Berlin", "America/New_York", "America/Los_Angeles", "Asia/Kolkata", "Asia/Tokyo", "Australia/Sydney")
    cards = cards_for(fleet, now, estimate_for(fleet), max_cis=20, zones=zones)
    assert [len(w.compute_instances) for w, _ in cards] == [20, 20, 1]
    assert [(w.context["part"], w.context["parts"]) for w, _ in cards] == [(1, 3), (2, 3), (3, 3)]
    for _, card in cards:
        assert_valid_card(card)
        assert message_size(card) <= MAX_MESSAGE_BYTES
    assert "Part 2 of 3 for this workspace." in texts(cards[1][1])


def test_the_fallback_card_says_why_it_went_to_the_channel(now):
    ((warning, card),) = cards_for([ci("ci-orphan")], now)
    assert warning.recipient.kind == FALLBACK
    assert_valid_card(card)
    assert "\u23f0 Compute instances without an owner stop tonight" in texts(card)
    assert not any(t.startswith("For ") for t in texts(card))


def test_hostile_owner_text_is_shown_only_as_plain_text(now):
    hostile = 'x"}]}**bold**{{7*7}}<b>@evil.example'  # still shaped like a UPN
    ((_, card),) = cards_for([ci("ci-a", tags={N.owner: hostile})], now)
    assert_valid_card(card)
    runs = [n for n in _nodes(card) if n.get("type") == "TextRun"]
    assert any(r["text"] == "For " + hostile for r in runs)


def _nodes(node: Any) -> List[Dict[str, Any]]:
    out: List[Dict[str, Any]] = []
    if isinstance(node, dict):
        out.append(node)
        for value in node.values():
            out.extend(_nodes(value))
    elif isinstance(node, list):
        for item in node:
            out.extend(_nodes(item))
    return out


# -- end to end ---------------------------------------------------------------------------------


class RecordingWorkflow(FakeTeamsWorkflow):
    """The fake Teams workflow, also remembering each accepted post's query (the recipient travels there)."""

    def __init__(self, server):
        self.posts: List[Dict[str, str]] = []
        super().__init__(server)

    def _handle(self, request):
        response = super()._handle(request)
        if response.status == 202:
            self.posts.append(dict(request.query))
        return response


@pytest.fixture
def teams(arm):
    return RecordingWorkflow(arm)


def seed(ml, now):
    stop_at = now + timedelta(minutes=30)
    ws = ml.add_workspace(SUB1, "rg-a", "mlw-one")
    ws2 = ml.add_workspace(SUB2, "rg-b", "mlw-two")
    ml.add_compute_instance(ws, "ci-ada", tags={N.owner: "ada@contoso.com"}, assigned_user=(ADA, TENANT))
    ml.add_compute_instance(ws2, "ci-ada-gpu", vm_size="STANDARD_NC6S_V3", tags={N.owner: "Ada@contoso.com"}, assigned_user=(ADA, TENANT))
    ml.add_compute_instance(ws, "ci-bob", assigned_user=(BOB, TENANT))
    ml.add_compute_instance(ws, "ci-orphan")
    ml.add_compute_instance(ws, "ci-expiring", assigned_user=(BOB, TENANT), tags=exempt(stop_at - timedelta(minutes=1), "bob@contoso.com"))
    ml.add_compute_instance(ws, "ci-exempt", assigned_user=(BOB, TENANT), tags=exempt(stop_at + timedelta(hours=3), "bob@contoso.com"))
    ml.add_compute_instance(ws, "ci-off", state="Stopped", assigned_user=(BOB, TENANT))
    ml.add_compute_instance(ws, "ci-job", state="JobRunning", assigned_user=(BOB, TENANT))


def doc(teams, **sections: Any) -> Dict[str, Any]:
    out: Dict[str, Any] = {
        "scope": {"subscriptions": [SUB1, SUB2]},
        "teams": {"workflow_url": teams.url},
        "stop": fast_stop_settings(),
        "exemption": {"readback_delay_seconds": 0},
    }
    out.update(sections)
    return out


def warn(arm, now, capsys, settings: Dict[str, Any], *extra: str, **kwargs: Any):
    code = warn_before_stop.main(["--settings-b64", encode_settings(settings), *extra], credential=arm.credential(), now=now, **kwargs)
    out = capsys.readouterr().out
    return code, summary_from(out), out


def sweep(arm, now, capsys, settings: Dict[str, Any], *extra: str):
    code = stop_compute_instances.main(["--settings-b64", encode_settings(settings), "--no-teams-summary", *extra], credential=arm.credential(), now=now)
    return code, summary_from(capsys.readouterr().out)


def test_the_warning_names_exactly_what_the_sweep_will_stop_one_card_per_owner(arm, ml, now, capsys, teams):
    FakeRetailPrices(arm)
    seed(ml, now)
    settings = doc(teams)
    code, summary, _ = warn(arm, now, capsys, settings)
    assert code == 0 and summary["stop_at"] == "2026-11-23T19:30:00Z"
    warned = {k for k, v in outcomes(summary).items() if v == "warned"}
    assert warned == {"mlw-one/ci-ada", "mlw-two/ci-ada-gpu", "mlw-one/ci-bob", "mlw-one/ci-orphan", "mlw-one/ci-expiring"}
    assert set(outcomes(summary).values()) == {"warned"}  # the CIs the sweep leaves alone are not in the warning

    # The same decision: a dry run of the sweep at the stop time would stop exactly these.
    _, planned = sweep(arm, now + timedelta(minutes=30), capsys, settings, "--dry-run")
    assert {k for k, v in outcomes(planned).items() if v == "would_stop"} == warned

    # One post per recipient and workspace; the person is in the query, the fallback has none; every warning waits for an answer.
    assert [(p.get("recipient"), p.get("recipient_type")) for p in teams.posts] == [("ada@contoso.com", "upn")] * 2 + [(BOB, "object_id"), (None, None)]
    assert all(p["wait"] == "true" for p in teams.posts)
    assert all(p["sig"] == "fake-signature" for p in teams.posts)
    for card in teams.cards:
        assert_valid_card(card)
    ada_gpu_card = teams.cards[1]
    assert {a["data"]["compute_instance"] for a in submits(ada_gpu_card)} == {"ci-ada-gpu"}
    assert any(t.endswith(f"USD {3.305 * 12.5:.2f} at list prices.") for t in texts(ada_gpu_card))  # NC6s_v3 from 19:30 to 08:00: 12.5 h
    by_ci = {r["compute_instance"]: r for r in summary["results"]}
    assert by_ci["ci-ada-gpu"]["extra"]["cost"]["hours"] == 12.5 and by_ci["ci-ada-gpu"]["detail"].startswith("warned ada@contoso.com; overnight ~USD")
    assert summary["cost_overnight"]["priced"] == 5 and [d["delivery"] for d in summary["deliveries"]] == ["posted"] * 4
    assert summary["teams_capacity"]["fits"] is True


def test_a_ci_exempted_from_the_warning_card_is_skipped_by_the_sweep(arm, ml, now, capsys, teams):
    FakeRetailPrices(arm)
    seed(ml, now)
    settings = doc(teams)
    assert warn(arm, now, capsys, settings)[0] == 0
    ada_card = teams.cards[1]

    # Ada presses "keep ci-ada-gpu running" a few minutes later; the flow hands the press to the real exemption runbook.
    press = submission(ada_card, "ci-ada-gpu", responder(), reason="fine-tuning until the morning")
    code = handle_exemption_request.main(
        ["--settings-b64", encode_settings(settings), "--request-b64", base64.b64encode(json.dumps(press).encode()).decode()],
        credential=arm.credential(),
        now=now + timedelta(minutes=5),
    )
    recorded = summary_from(capsys.readouterr().out)
    assert code == 0 and recorded["results"][0]["outcome"] == "exempted", recorded
    # The default (pessimistic) platform refuses CI tags: the exemption is on the workspace.
    assert recorded["recorded_on"] == "workspace"
    ws_tags = ml.workspace(SUB2, "rg-b", "mlw-two").tags
    status = read_exemption_for(ml.compute(SUB2, "rg-b", "mlw-two", "ci-ada-gpu").tags, ws_tags, "ci-ada-gpu", now, N)
    assert status.protects and format_instant(status.exemption.until) == "2026-11-24T08:00:00Z"

    code, swept = sweep(arm, now + timedelta(minutes=30), capsys, settings)
    assert code == 0
    assert outcomes(swept)["mlw-two/ci-ada-gpu"] == "exempt" and outcomes(swept)["mlw-one/ci-ada"] == "stopped"
    assert ml.compute(SUB2, "rg-b", "mlw-two", "ci-ada-gpu").state == "Running"


def test_a_dry_run_prints_the_cards_and_posts_nothing(arm, ml, now, capsys, teams):
    seed(ml, now)
    code, summary, out = warn(arm, now, capsys, doc(teams, pricing={"enabled": False}), "--dry-run")
    assert code == 0 and set(outcomes(summary).values()) == {"would_warn"}
    assert not teams.messages and arm.count("POST") == 0
    printed = [json.loads(line[len(warn_before_stop.DRY_RUN_MARKER) :]) for line in out.splitlines() if line.startswith(warn_before_stop.DRY_RUN_MARKER)]
    assert [p["recipient"]["kind"] for p in printed] == ["upn", "upn", "object_id", "fallback"]
    for p in printed:
        assert_valid_card(p["card"])
    assert "cost_overnight" not in summary


def test_a_card_teams_refuses_fails_the_run_and_says_for_whom(arm, ml, now, capsys, teams):
    seed(ml, now)
    arm.inject(Fault(400, method="POST", path_contains="/workflows/", times=1))  # the first post (Ada's) only
    code, summary, out = warn(arm, now, capsys, doc(teams, pricing={"enabled": False}), sleep=lambda s: None)
    assert code == 1 and summary["failed"] is True
    assert outcomes(summary)["mlw-one/ci-ada"] == "failed" and outcomes(summary)["mlw-one/ci-bob"] == "warned"
    assert "warning for ada@contoso.com not delivered" in out
    assert [d["delivery"] for d in summary["deliveries"]] == ["failed", "posted", "posted", "posted"]


def test_nothing_to_stop_means_nothing_posted(arm, ml, now, capsys, teams):
    ws = ml.add_workspace(SUB1, "rg-a", "mlw-one")
    ml.add_compute_instance(ws, "ci-off", state="Stopped")
    code, summary, _ = warn(arm, now, capsys, doc(teams))
    assert code == 0 and summary["results"] == [] and not teams.messages


def test_posting_needs_a_workflow_and_a_bad_section_is_a_usage_error(arm, ml, now, capsys, teams):
    no_url = doc(teams)
    del no_url["teams"]
    code, summary, _ = warn(arm, now, capsys, no_url)
    assert code == 2 and "warning.workflow_url or teams.workflow_url" in summary["error"]
    code, summary, _ = warn(arm, now, capsys, doc(teams, warning={"minutes_before": -5}))
    assert code == 2 and "minutes_before" in summary["error"]
    assert arm.count() == 0


def test_a_dedicated_warning_workflow_is_used_when_configured(arm, ml, now, capsys, teams):
    other = RecordingWorkflow.__new__(RecordingWorkflow)
    other.posts = []
    FakeTeamsWorkflow.__init__(other, arm, url=DEFAULT_URL.replace("/workflows/0000/", "/workflows/1111/"))
    ws = ml.add_workspace(SUB1, "rg-a", "mlw-one")
    ml.add_compute_instance(ws, "ci-ada", tags={N.owner: "ada@contoso.com"})
    code, _, _ = warn(arm, now, capsys, doc(teams, warning={"workflow_url": other.url}, pricing={"enabled": False}))
    assert code == 0 and len(other.messages) == 1 and not teams.messages
    assert other.posts[0]["recipient"] == "ada@contoso.com"


def test_runs_as_a_script_from_a_checkout(tmp_path):
    """As Automation starts it: a file with positional parameters (here one that fails fast)."""
    env = {k: v for k, v in os.environ.items() if k != "CI_GOVERNANCE_SETTINGS"}
    script = os.path.join(ROOT, "runbooks", "warn_before_stop.py")
    proc = subprocess.run(
        [sys.executable, script, "--dry-run --settings", '{"scope": {}}'], capture_output=True, text=True, env=env, timeout=60, cwd=str(tmp_path)
    )
    assert proc.returncode == 2, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1].split(" ", 1)[1])["error"].startswith("no subscription")


def test_a_fleet_too_big_for_the_lead_time_is_paced_and_told_to_the_job_output_and_the_admins(arm, ml, now, capsys, teams):
    ws = ml.add_workspace(SUB1, "rg-a", "mlw-one")
    for i in range(27):
        ml.add_compute_instance(ws, f"ci-{i:02d}", tags={N.owner: f"user{i:02d}@contoso.com"})
    clock, waits = [0.0], []

    def sleep(seconds):
        waits.append(seconds)
        clock[0] += seconds

    code, summary, out = warn(arm, now, capsys, doc(teams, pricing={"enabled": False}, warning={"minutes_before": 5}), sleep=sleep, clock=lambda: clock[0])
    assert code == 0 and [d["delivery"] for d in summary["deliveries"]] == ["posted"] * 27
    assert summary["teams_capacity"]["fits"] is False and summary["teams_capacity"]["seconds_needed"] == 300
    assert "ERROR   27 warning cards do not fit the 5-minute lead time" in out and "warning.minutes_before to at least 11" in out
    assert [w for w in waits if w > 1] == [pytest.approx(300 - 24 / 3)]  # the 26th card waits for the connector's window
    small = [w for w in waits if w <= 1]  # no two posts closer than 1/3 s (the trigger's 4 per second)
    assert len(small) >= 24 and all(w == pytest.approx(1 / 3) for w in small)
    notices = [(q, c) for q, c in teams.addressed_cards if str(c.get("fallbackText", "")).startswith("CI governance, for admins")]
    assert len(notices) == 1 and "recipient" not in notices[0][0] and "wait" not in notices[0][0]
