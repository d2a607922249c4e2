"""The stop sweep's nightly summary card, posted to the Teams workflow through the fake."""

from __future__ import annotations

import json
from datetime import timedelta

from fake_azure import Fault
from fake_azure.teams import FakeTeamsWorkflow
from runbooks import stop_compute_instances
from shared.settings import encode_settings
from shared.tags import TagNames
from shared.times import format_instant
from tests.cardcheck import assert_valid_card
from tests.conftest import SUB1, fast_stop_settings
from tests.summary import summary_from

N = TagNames()


def seed(ml, now):
    ws = ml.add_workspace(SUB1, "rg-a", "mlw-one")
    ml.add_compute_instance(ws, "ci-run", state="Running")
    ml.add_compute_instance(ws, "ci-exempt", tags={N.exempt_until: format_instant(now + timedelta(hours=5)), N.exempt_by: "ada@contoso.com"})
    ml.add_compute_instance(ws, "ci-broken", state="Running", stop_error=(400, "BadRequest", "StopCompute is not allowed when ComputeInstance disk is full"))


def run(arm, now, capsys, teams, *extra):
    doc = {"scope": {"subscriptions": [SUB1]}, "teams": {"workflow_url": teams.url}, "stop": fast_stop_settings(), "pricing": {"enabled": False}}
    code = stop_compute_instances.main(["--settings-b64", encode_settings(doc), *extra], credential=arm.credential(), now=now)
    return code, summary_from(capsys.readouterr().out)


def texts(card) -> str:
    return json.dumps(card, ensure_ascii=False)


def test_summary_card_reports_every_outcome_and_the_expiring_exemption(arm, ml, now, capsys):
    seed(ml, now)
    teams = FakeTeamsWorkflow(arm)
    code, summary = run(arm, now, capsys, teams)
    assert code == 1 and summary["teams_summary_posted"] is True  # ci-broken failed
    assert len(teams.cards) == 1
    card = teams.cards[0]
    assert_valid_card(card)
    body = texts(card)
    for needle in ("ci-run", "ci-exempt", "ci-broken", "disk is full", "ada@contoso.com", format_instant(now + timedelta(hours=5))):
        assert needle in body, needle


def test_a_failed_post_is_logged_and_changes_nothing_else(arm, ml, now, capsys):
    seed(ml, now)
    teams = FakeTeamsWorkflow(arm)
    arm.inject(Fault(400, method="POST", path_contains="/workflows/", times=None))
    code, summary = run(arm, now, capsys, teams)
    assert summary["teams_summary_posted"] is False
    assert code == 1 and summary["counts"] == {"exempt": 1, "failed": 1, "stopped": 1}  # same as with a working Teams
    assert ml.compute(SUB1, "rg-a", "mlw-one", "ci-run").state == "Stopped"


def test_no_teams_summary_flag_and_dry_run_post_nothing(arm, ml, now, capsys):
    seed(ml, now)
    teams = FakeTeamsWorkflow(arm)
    run(arm, now, capsys, teams, "--no-teams-summary")
    assert teams.cards == []
    code, summary = run(arm, now, capsys, teams, "--dry-run")
    assert teams.cards == [] and "teams_summary_posted" not in summary  # a dry run posts nothing
