"""The cards in Microsoft's own renderer (npm adaptivecards) in headless Chromium: what a user fills in is what the runbook gets.

Skipped, with the reason, when Chromium, tests/browser/node_modules or playwright is missing
(.ci/install-browser-deps.sh installs them); set CI_GOVERNANCE_REQUIRE_BROWSER=1 to fail instead.
"""

from __future__ import annotations

import os

import pytest

from shared.teams.cards import render_card
from tests.browser.harness import CardBrowser, HarnessError, SubmissionBlocked, browser_available

pytestmark = pytest.mark.browser

SUB = "11111111-1111-4111-8111-111111111111"
WORKSPACES = [{"title": f"ws-{n}", "value": f"{SUB}/rg-ml-{n}/ws-{n}"} for n in ("dev", "research")]
REQUEST = dict(workspaces=WORKSPACES, time_zones=["UTC", "Europe/Amsterdam", "America/New_York"], default_time_zone="UTC", max_hours=72, min_date="2026-11-23")
INPUT_IDS = ["workspace", "compute_instance", "until_date", "until_time", "time_zone", "reason"]
VALID = {
    "workspace": WORKSPACES[1]["value"],
    "compute_instance": "ci-ann-gpu",
    "until_date": "2026-11-25",
    "until_time": "07:30",
    "time_zone": "Europe/Amsterdam",
    "reason": 'Fine-tune "llama" \\ run\nends Wed 😀',
}


@pytest.fixture(scope="module")
def browser():
    ok, reason = browser_available()
    if not ok:
        if os.environ.get("CI_GOVERNANCE_REQUIRE_BROWSER"):
            pytest.fail(f"CI_GOVERNANCE_REQUIRE_BROWSER is set but {reason}")
        pytest.skip(reason)
    with CardBrowser() as b:
        yield b


def test_request_form_submits_exactly_its_inputs(browser):
    card = render_card("exemption_request", **REQUEST)
    assert browser.render(card)["inputs"] == INPUT_IDS
    data = browser.render_fill_submit(card, VALID, "Request exemption")
    assert data == {"action": "request_exemption", **VALID}


def test_request_form_defaults_are_submitted(browser):
    card = render_card("exemption_request", **dict(REQUEST, compute_instance="ci-bo", workspace=WORKSPACES[0]["value"]))
    data = browser.render_fill_submit(card, {"until_date": "2026-11-24", "reason": "overnight job"}, "Request exemption")
    assert data == {
        "action": "request_exemption",
        "workspace": WORKSPACES[0]["value"],
        "compute_instance": "ci-bo",
        "until_date": "2026-11-24",
        "until_time": "08:00",
        "time_zone": "UTC",
        "reason": "overnight job",
    }


@pytest.mark.parametrize(
    "changes, invalid",
    [
        ({"compute_instance": "1-starts-with-digit"}, ["compute_instance"]),
        ({"compute_instance": "ci_underscore"}, ["compute_instance"]),
        ({"compute_instance": ""}, ["compute_instance"]),
        ({"reason": ""}, ["reason"]),
        ({"until_date": ""}, ["until_date"]),
        ({"until_time": ""}, ["until_time"]),
    ],
)
def test_renderer_blocks_invalid_or_missing_input(browser, changes, invalid):
    card = render_card("exemption_request", **REQUEST)
    with pytest.raises(SubmissionBlocked) as blocked:
        browser.render_fill_submit(card, {**VALID, **changes}, "Request exemption")
    assert blocked.value.invalid_inputs == invalid


def test_unselected_workspace_blocks_submission(browser):
    card = render_card("exemption_request", **REQUEST)
    values = {k: v for k, v in VALID.items() if k != "workspace"}
    with pytest.raises(SubmissionBlocked) as blocked:
        browser.render_fill_submit(card, values, "Request exemption")
    assert blocked.value.invalid_inputs == ["workspace"]


def test_action_buttons_of_the_other_cards_send_their_data(browser):
    approved = render_card(
        "exemption_approved",
        workspace=VALID["workspace"],
        compute_instance="ci-ann-gpu",
        until_utc="2026-11-25T06:30:00Z",
        until_local="Wed 25 Nov 07:30 (Europe/Amsterdam)",
        requested_by="Ann",
        reason=VALID["reason"],
    )
    assert browser.render_fill_submit(approved, {}, "Cancel exemption") == {
        "action": "cancel_exemption",
        "workspace": VALID["workspace"],
        "compute_instance": "ci-ann-gpu",
    }
    rejected = render_card("exemption_rejected", reasons=["72 hours at most"], compute_instance="ci-ann-gpu")
    assert browser.render_fill_submit(rejected, {}, "Try again") == {"action": "request_exemption_form"}


def test_every_card_renders_without_renderer_warnings(browser):
    summary = {
        "started_at": "2026-11-23T19:00:00Z",
        "finished_at": "2026-11-23T19:05:00Z",
        "dry_run": True,
        "counts": {"failed": 1, "would_stop": 1},
        "items": [
            {"workspace": "ws-dev", "compute_instance": "ci-1", "outcome": "failed", "detail": "disk full"},
            {"workspace": "ws-dev", "compute_instance": "ci-2", "outcome": "would_stop", "detail": ""},
        ],
        "expiring": [{"workspace": "ws-dev", "compute_instance": "ci-3", "until": "2026-11-24T07:00:00Z", "by": "Ann"}],
    }
    exemption = dict(workspace="w", compute_instance="ci-1", until_utc="u", until_local="l", requested_by="r", reason="x")
    for name, context in [
        ("exemption_request", dict(REQUEST, workspaces=[])),
        ("exemption_pending_approval", dict(exemption, approvers=["Bo"], cost_text="EUR 3")),
        ("exemption_cancelled", dict(workspace="w", compute_instance="ci-1")),
        ("nightly_summary", dict(summary=summary)),
    ]:
        browser.render(render_card(name, **context))  # raises HarnessError on any renderer warning


def test_hostile_text_is_shown_literally(browser):
    hostile = 'a "q" \\ </script><script>window.__pwned = 1</script> <b>bold?</b> **md** {{ 7*7 }} 😀'
    card = render_card("exemption_approved", workspace="w", compute_instance="ci-1", until_utc="u", until_local="l", requested_by=hostile, reason=hostile)
    browser.render(card)
    assert browser.visible_text().count(hostile) == 2
    assert browser.render_fill_submit(card, {}, "Cancel exemption")["workspace"] == "w"
    assert browser.evaluate("window.__pwned") is None


@pytest.mark.parametrize(
    "body, message",
    [
        ([{"type": "TextBlok", "text": "typo"}], "Unknown element type"),
        ([{"type": "Input.Text", "id": "a"}, {"type": "Input.Text", "id": "a"}], "Duplicate Id"),
    ],
)
def test_harness_reports_renderer_warnings(browser, body, message):
    with pytest.raises(HarnessError, match=message):
        browser.render({"type": "AdaptiveCard", "version": "1.5", "body": body})


# -- every card the product posts, as Teams shows it on a phone (issue 13) -------------------------


@pytest.fixture(scope="module")
def posted_cards():
    """A few of each card the sandbox demos post (the real runbooks against the fake Azure), plus the request forms."""
    from sandbox.cards import collect, pick

    return pick(collect(), 2)


def test_every_template_renders_in_the_teams_host_configs_without_warnings_or_overflow_at_360_px(browser, posted_cards):
    from shared.teams.cards import find_template_dir
    from tests.browser.harness import TEAMS_THEMES, teams_host_config

    templates = {p.name[: -len(".json.j2")] for p in find_template_dir().glob("*.json.j2")}
    assert {c.template for c in posted_cards} == templates, "a template the demos never post is not looked at"
    configs = {theme: teams_host_config(theme) for theme in TEAMS_THEMES}
    if any(c is None for c in configs.values()):
        if os.environ.get("CI_GOVERNANCE_REQUIRE_BROWSER"):
            pytest.fail("the Teams host configs (npm adaptivecards-designer) are missing: run .ci/install-browser-deps.sh")
        pytest.skip("the Teams host configs (npm adaptivecards-designer) are missing")
    for posted in posted_cards:
        for theme, config in configs.items():
            browser.render(posted.card, config, 360)  # raises on any renderer warning
            assert browser.horizontal_overflow() == [], f"{posted.template} ({posted.step}, {theme}) overflows at 360 px"


def test_the_warning_keeps_a_chosen_ci_with_one_tap_or_another_time(browser, posted_cards):
    from datetime import datetime, timedelta, timezone

    from shared.models import ComputeInstanceRecord, WorkspaceRef
    from shared.warning.policy import UPN, Recipient, exemption_form, warning_cards

    now = datetime(2026, 11, 23, 18, 30, tzinfo=timezone.utc)
    ws = WorkspaceRef(SUB, "rg-ml-dev", "ws-dev")
    cis = [ComputeInstanceRecord(ws, name, "Running", "STANDARD_DS3_V2", "westeurope") for name in ("ci-a", "ci-b")]
    form = exemption_form(now, datetime(2026, 11, 24, 8, 0, tzinfo=timezone.utc), ["UTC", "Europe/Amsterdam"], "Europe/Amsterdam", 72)
    ((warning,),) = [warning_cards([(Recipient(UPN, "ada@contoso.com"), cis)], now + timedelta(minutes=30), form)]
    card = render_card("stop_warning", **warning.context)
    # One tap: the pick's date and time, the chosen CI and the pre-filled reason; the hidden "other time" inputs are not sent.
    data = browser.render_fill_submit(card, {"compute_instance": "ci-b"}, "Until Tue 09:00 CET")
    assert data == {
        "action": "request_exemption",
        "workspace": f"{SUB}/rg-ml-dev/ws-dev",
        "until_date": "2026-11-24",
        "until_time": "09:00",
        "time_zone": "Europe/Amsterdam",
        "compute_instance": "ci-b",
        "reason": "Still working on it",
    }
    # Another time: the show card's inputs and the card's own.
    browser.render(card)
    browser.evaluate("Array.from(document.querySelectorAll('button')).find(b => b.textContent === 'Other time\u2026').click()")
    browser.fill({"until_date": "2026-11-25", "until_time": "07:30", "reason": "long run"})
    data = browser.submit("Keep running until then")
    assert data == {
        "action": "request_exemption",
        "workspace": f"{SUB}/rg-ml-dev/ws-dev",
        "until_date": "2026-11-25",
        "until_time": "07:30",
        "time_zone": "Europe/Amsterdam",
        "compute_instance": "ci-a",
        "reason": "long run",
    }
