"""The whole exemption path with a real renderer: Microsoft's Adaptive Cards renderer in headless
Chromium shows the request form, a user fills it in and presses Submit; the submitted data is
wrapped as the Teams workflow and Azure Automation hand it over; the exemption runbook records it
on the CI in the fake Azure; the nightly sweep then leaves that CI running and stops the other.

Skipped, with the reason, where Chromium or the npm renderer is missing (CI installs them and sets
CI_GOVERNANCE_REQUIRE_BROWSER=1, which turns a skip into a failure)."""

from __future__ import annotations

import os

import pytest

from fake_azure.teams import FakeTeamsWorkflow
from runbooks import handle_exemption_request, stop_compute_instances
from shared.settings import encode_settings
from shared.tags import TagNames, read_exemption_for
from shared.teams.cards import render_card
from shared.teams.routing import iter_elements
from tests.browser.harness import browser_available, render_fill_submit
from tests.builders import armoured, envelope_argv
from tests.conftest import SUB1, TENANT, fast_stop_settings
from tests.summary import outcomes, summary_from

pytestmark = pytest.mark.browser
N = TagNames()
OWNER = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
WS_KEY = f"{SUB1}/rg-a/mlw-one"


@pytest.fixture
def browser_ready():
    ok, reason = browser_available()
    if not ok:
        if os.environ.get("CI_GOVERNANCE_REQUIRE_BROWSER"):
            pytest.fail(f"CI_GOVERNANCE_REQUIRE_BROWSER is set but {reason}")
        pytest.skip(reason)


def test_card_submitted_in_a_browser_becomes_an_exemption_the_sweep_honours(browser_ready, arm, ml, now, capsys):
    ws = ml.add_workspace(SUB1, "rg-a", "mlw-one")
    ml.add_compute_instance(ws, "ci-ada", state="Running", assigned_user=(OWNER, TENANT), tags={"team": "vision"})
    ml.add_compute_instance(ws, "ci-bob", state="Running")
    teams = FakeTeamsWorkflow(arm)
    doc = {
        "scope": {"subscriptions": [SUB1]},
        "teams": {"workflow_url": teams.url},
        "exemption": {"readback_delay_seconds": 0},
        "stop": fast_stop_settings(),
    }

    card = render_card(
        "exemption_request",
        workspaces=[{"title": "mlw-one (rg-a)", "value": WS_KEY}],
        time_zones=["UTC", "Europe/Berlin"],
        default_time_zone="UTC",
        max_hours=72,
        min_date="2026-11-23",
    )
    reason = 'Fine-tune "llama" \\ until morning 🚀'
    submitted = render_fill_submit(
        card,
        {
            "workspace": WS_KEY,
            "compute_instance": "ci-ada",
            "until_date": "2026-11-24",
            "until_time": "08:00",
            "time_zone": "Europe/Berlin",
            "reason": reason,
        },
        "Request exemption",
    )
    assert submitted["action"] == "request_exemption" and submitted["reason"] == reason

    # What "Post adaptive card and wait for a response" returns, POSTed armoured by the flow to the webhook;
    # Azure Automation hands it over in its whitespace-split envelope. Identity comes from the responder, not the card.
    response = {
        "data": submitted,
        "responder": {"objectId": OWNER, "tenantId": TENANT, "email": "ada@contoso.com", "userPrincipalName": "ada@contoso.com", "displayName": "Ada"},
        "responseTime": "2026-11-23T19:00:00Z",
        "messageId": "1732388400000",
        "submitActionId": "Request exemption",
    }
    argv = envelope_argv(armoured(response), escaped=True, order="after", params=(f"--settings-b64 {encode_settings(doc)}",))
    code = handle_exemption_request.main(argv, credential=arm.credential(), now=now)
    answer = summary_from(capsys.readouterr().out)
    assert code == 0, answer
    # The default (pessimistic) platform refuses CI tags: the exemption is on the workspace; read both places.
    status = read_exemption_for(ml.compute(SUB1, "rg-a", "mlw-one", "ci-ada").tags, ml.workspace(SUB1, "rg-a", "mlw-one").tags, "ci-ada", now)
    assert status.protects and status.exemption.by == "ada@contoso.com"
    assert status.exemption.until.isoformat() == "2026-11-24T07:00:00+00:00"  # 08:00 in Berlin (CET)
    assert ml.compute(SUB1, "rg-a", "mlw-one", "ci-ada").tags["team"] == "vision"
    assert len(teams.cards) == 1 and any(e.get("text") == reason for e in iter_elements(teams.cards[0]))  # the confirmation card, reason intact

    code = stop_compute_instances.main(["--settings-b64", encode_settings(doc), "--no-teams-summary"], credential=arm.credential(), now=now)
    sweep = summary_from(capsys.readouterr().out)
    assert code == 0
    assert outcomes(sweep) == {"mlw-one/ci-ada": "exempt", "mlw-one/ci-bob": "stopped"}
    assert ml.compute(SUB1, "rg-a", "mlw-one", "ci-ada").state == "Running"
    assert ml.compute(SUB1, "rg-a", "mlw-one", "ci-bob").state == "Stopped"
