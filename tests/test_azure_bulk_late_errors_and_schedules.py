"""Issue 10 items 4-5: outcomes stay true when a wrong-state start/stop fails late (as an operation,
after a 202), and a CI's own schedules and idle shutdown are read (lastOperation, idleTimeBeforeShutdown,
schedules) and reported: stopped by the platform, or an exemption they may end early."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from fake_azure.ml import FakeMachineLearning, compute_schedule
from fake_azure.platform import ALL_VARIANTS, PESSIMISTIC, VARIANT_IDS
from fake_azure.teams import FakeTeamsWorkflow
from runbooks import handle_exemption_request, stop_compute_instances
from shared.azure.bulk import ALREADY, BUSY, DONE, START, STOP, run_bulk
from shared.azure.ml_gateway import AzureMLGateway
from shared.models import CISchedule, ComputeInstanceRecord, WorkspaceRef
from shared.sections import BulkSettings
from shared.settings import encode_settings
from shared.stop.policy import exemption_undermined_by
from shared.times import cron_fires_between, weekly_fires_between
from tests.conftest import SUB1, TENANT, fast_stop_settings
from tests.summary import summary_from

FAST = BulkSettings(confirm_interval_seconds=0.02, confirm_timeout_seconds=10)
OWNER = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"


def fleet(arm, platform, seconds=0.0):
    ml = FakeMachineLearning(arm, stop_seconds=seconds, start_seconds=seconds, platform=platform)
    ws = ml.add_workspace(SUB1, "rg-a", "mlw-one")
    return ml, ws, AzureMLGateway(arm.credential(), reads_per_second=None)


def listed(gateway, name):
    ws = gateway.list_workspaces(SUB1)[0]
    return next(c for c in gateway.list_compute_instances(ws) if c.name == name)


# -- item 4: late errors ---------------------------------------------------------------------------
@pytest.mark.parametrize("platform", ALL_VARIANTS, ids=VARIANT_IDS)
def test_a_ci_its_own_schedule_stopped_after_listing_is_not_reported_as_ours(arm, platform):
    ml, ws, gateway = fleet(arm, platform)
    ml.add_compute_instance(ws, "ci-sched", state="Running")
    record = listed(gateway, "ci-sched")
    ml.simulate_schedule_stop(ws, "ci-sched")  # between the listing and our stop (0 s: done at once)
    result = run_bulk(gateway, [record], STOP, FAST)[record.key]
    assert result.status == ALREADY and "by its own schedule" in result.detail, result
    assert ml.compute(SUB1, "rg-a", "mlw-one", "ci-sched").last_operation["operationTrigger"] == "Schedule"


@pytest.mark.parametrize("platform", ALL_VARIANTS, ids=VARIANT_IDS)
def test_a_start_of_a_ci_someone_started_meanwhile_is_already_running_not_started(arm, platform):
    ml, ws, gateway = fleet(arm, platform)
    ml.add_compute_instance(ws, "ci-ada", state="Stopped")
    record = listed(gateway, "ci-ada")
    ml.begin_operation(ws, "ci-ada", "Start")  # the user, in the portal
    result = run_bulk(gateway, [record], START, FAST)[record.key]
    assert result.status == ALREADY and result.final_state == "Running", result


def test_a_late_wrong_state_failure_is_read_from_the_operation_not_waited_out(arm):
    ml, ws, gateway = fleet(arm, PESSIMISTIC, seconds=0.05)
    ml.add_compute_instance(ws, "ci-busy", state="Running")
    record = listed(gateway, "ci-busy")
    ml.compute(SUB1, "rg-a", "mlw-one", "ci-busy").state = "SettingUp"  # neither Running nor heading to Stopped
    started = datetime.now()
    result = run_bulk(gateway, [record], STOP, FAST)[record.key]
    assert result.status == BUSY and "StopComputeInstanceOnlyAllowedInRunningState" in result.detail
    assert (datetime.now() - started).total_seconds() < 5  # not the 10 s confirmation timeout


@pytest.mark.parametrize("platform", ALL_VARIANTS, ids=VARIANT_IDS)
def test_a_plain_stop_is_still_done_in_every_variant(arm, platform):
    ml, ws, gateway = fleet(arm, platform, seconds=0.05)
    ml.add_compute_instance(ws, "ci-run", state="Running")
    record = listed(gateway, "ci-run")
    assert run_bulk(gateway, [record], STOP, FAST)[record.key].status == DONE


# -- item 5: native schedules and idle shutdown ---------------------------------------------------
def test_records_carry_last_operation_idle_shutdown_and_stop_schedules(arm):
    ml, ws, gateway = fleet(arm, PESSIMISTIC)
    schedules = [
        compute_schedule("Stop", cron="0 20 * * 1-5", time_zone="Europe/Berlin"),
        compute_schedule("Start", cron="0 7 * * 1-5"),
        compute_schedule("Stop", cron="0 2 * * *", enabled=False),
    ]
    ml.add_compute_instance(ws, "ci-ada", state="Running", idle_shutdown_minutes=45, schedules=schedules)
    ml.simulate_idle_shutdown(ws, "ci-ada")
    record = listed(gateway, "ci-ada")
    assert (record.last_operation, record.last_operation_trigger, record.last_operation_status) == ("Stop", "IdleShutdown", "Succeeded")
    assert record.idle_shutdown_minutes == 45
    assert record.stop_schedules == (CISchedule("Stop", "cron", "Europe/Berlin", expression="0 20 * * 1-5"),)


def test_schedule_arithmetic():
    monday_18 = datetime(2026, 11, 23, 18, 0, tzinfo=timezone.utc)
    assert cron_fires_between("0 20 * * 1-5", "Europe/Berlin", monday_18, monday_18 + timedelta(hours=3)) == datetime(2026, 11, 23, 19, 0, tzinfo=timezone.utc)
    assert cron_fires_between("0 20 * * 6", "UTC", monday_18, monday_18 + timedelta(hours=24)) is None
    assert cron_fires_between("*/15 * * * *", "UTC", monday_18 + timedelta(minutes=1), monday_18 + timedelta(hours=1)).minute == 15
    assert weekly_fires_between([22], [30], ["Tuesday"], "UTC", monday_18, monday_18 + timedelta(days=2)) == datetime(2026, 11, 24, 22, 30, tzinfo=timezone.utc)
    with pytest.raises(ValueError):
        cron_fires_between("0 20 * *", "UTC", monday_18, monday_18 + timedelta(hours=1))
    odd = CISchedule("Stop", "cron", "Nowhere/Land", expression="0 1 * * *")
    ci = ComputeInstanceRecord(WorkspaceRef(SUB1, "rg", "ws"), "ci", "Running", stop_schedules=(odd,))
    assert "not understood" in exemption_undermined_by(ci, monday_18, monday_18 + timedelta(hours=5))[0]


def test_the_sweep_reports_a_platform_stop_and_lists_undermined_exemptions(arm, capsys):
    now = datetime(2026, 11, 23, 18, 0, tzinfo=timezone.utc)  # a Monday
    ml, ws, _ = fleet(arm, PESSIMISTIC)
    until = "2026-11-24T07:00:00Z"
    ws.tags["ci-governance.exempt.ci-ada"] = f"until={until};by=ada@contoso.com;req=m-1"
    ml.add_compute_instance(ws, "ci-ada", state="Running", schedules=[compute_schedule("Stop", cron="0 20 * * *", time_zone="Europe/Berlin")])
    ml.add_compute_instance(ws, "ci-idle", state="Running", idle_shutdown_minutes=30)
    ml.simulate_idle_shutdown(ws, "ci-idle")
    doc = {"scope": {"subscriptions": [SUB1]}, "stop": fast_stop_settings()}
    assert stop_compute_instances.main(["--settings-b64", encode_settings(doc)], credential=arm.credential(), now=now) == 0
    summary = summary_from(capsys.readouterr().out)
    rows = {r["compute_instance"]: r for r in summary["results"]}
    assert rows["ci-idle"]["outcome"] == "already_stopped" and "by its own idle shutdown" in rows["ci-idle"]["detail"]
    assert rows["ci-ada"]["outcome"] == "exempt" and "recorded on the workspace" in rows["ci-ada"]["detail"]
    (undermined,) = summary["undermined_exemptions"]
    assert undermined["compute_instance"] == "ci-ada" and "2026-11-23T19:00:00Z" in undermined["undermined_by"][0]


def test_the_answer_card_says_when_the_cis_own_schedule_would_end_the_exemption_early(arm, capsys):
    now = datetime(2026, 11, 23, 18, 0, tzinfo=timezone.utc)
    ml, ws, _ = fleet(arm, PESSIMISTIC)
    ml.add_compute_instance(ws, "ci-ada", state="Running", assigned_user=(OWNER, TENANT), idle_shutdown_minutes=60, schedules=[compute_schedule("Stop")])
    teams = FakeTeamsWorkflow(arm)
    body = {
        "data": {
            "action": "request_exemption",
            "workspace": f"{SUB1}/rg-a/mlw-one",
            "compute_instance": "ci-ada",
            "until_date": "2026-11-24",
            "until_time": "08:00",
            "time_zone": "UTC",
            "reason": "overnight training",
        },
        "responder": {"objectId": OWNER, "tenantId": TENANT, "userPrincipalName": "ada@contoso.com"},
        "messageId": "m-1",
    }
    import base64
    import json

    doc = {"scope": {"subscriptions": [SUB1]}, "teams": {"workflow_url": teams.url}, "exemption": {"readback_delay_seconds": 0}}
    b64 = base64.b64encode(json.dumps(body).encode()).decode()
    assert handle_exemption_request.main(["--settings-b64", encode_settings(doc), "--request-b64", b64], credential=arm.credential(), now=now) == 0
    summary = summary_from(capsys.readouterr().out)
    assert summary["results"][0]["outcome"] == "exempted" and len(summary["undermined_by"]) == 2
    texts = json.dumps(teams.cards[-1])
    assert "idle shutdown stops it after 60 minutes" in texts and "2026-11-23T19:00:00Z" in texts


def test_the_morning_start_reads_exemptions_from_both_places():
    from datetime import date

    from shared.sections import StartSection
    from shared.start.policy import decide_start

    now = datetime(2026, 11, 24, 6, 0, tzinfo=timezone.utc)
    ws = WorkspaceRef(SUB1, "rg", "ws", tags={"ci-governance.exempt.ci-ada": "until=2026-11-24T09:00:00Z;by=ada@contoso.com"})
    ci = ComputeInstanceRecord(ws, "ci-ada", "Stopped", tags={"ci-governance.auto-start": "yes"}, last_operation="Stop", last_operation_trigger="IdleShutdown")
    decision = decide_start(ci, date(2026, 11, 24), StartSection(), now=now)
    assert decision.start and decision.exemption_record is not None and decision.exemption_record.by == "ada@contoso.com"
    assert "exempt (recorded on the workspace) but was stopped by its own idle shutdown" in decision.reason


def test_cards_with_the_new_lines_are_valid_adaptive_cards():
    from shared.teams.cards import render_card
    from tests.cardcheck import assert_valid_card

    approved = render_card(
        "exemption_approved",
        workspace=f"{SUB1}/rg/ws",
        compute_instance="ci-ada",
        until_utc="2026-11-24T07:00:00Z",
        until_local="2026-11-24 08:00 Europe/Berlin",
        requested_by="ada@contoso.com",
        reason='quotes " and braces {}',
        recorded_on="workspace ws, because this compute instance does not accept tag changes",
        ends_early="It may stop before then anyway: its idle shutdown stops it after 60 minutes without activity.",
    )
    assert_valid_card(approved)
    summary = {
        "started_at": "2026-11-23T19:00:00Z",
        "finished_at": "2026-11-23T19:01:00Z",
        "dry_run": False,
        "counts": {"exempt": 1},
        "items": [{"workspace": "ws", "compute_instance": "ci-ada", "outcome": "exempt", "detail": "exempt"}],
        "expiring": [],
        "undermined": [{"workspace": "ws", "compute_instance": "ci-ada", "why": "its own stop schedule stops it at 2026-11-23T20:00:00Z"}],
    }
    card = render_card("nightly_summary", summary=summary)
    assert_valid_card(card)
    assert "may end early" in str(card)
