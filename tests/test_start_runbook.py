"""End to end: the morning start runbook, through azure-ai-ml and azure-core, against the fake."""

from __future__ import annotations

from datetime import datetime, timezone

from fake_azure import Fault
from runbooks import start_compute_instances
from shared.settings import encode_settings
from shared.tags import TagNames
from tests.conftest import SUB1, SUB2
from tests.summary import outcomes, summary_from

N = TagNames()
MONDAY_0600 = datetime(2026, 11, 23, 6, 0, tzinfo=timezone.utc)
SATURDAY_0600 = datetime(2026, 11, 28, 6, 0, tzinfo=timezone.utc)
CHRISTMAS_0600 = datetime(2026, 12, 25, 6, 0, tzinfo=timezone.utc)  # a Friday
WRITES = ("POST", "PUT", "PATCH", "DELETE")


def seed(ml):
    ws1 = ml.add_workspace(SUB1, "rg-a", "mlw-one")
    ws2 = ml.add_workspace(SUB2, "rg-b", "mlw-two")
    ml.add_compute_instance(ws1, "ci-auto", state="Stopped", tags={N.auto_start: "true", "team": "a"})
    ml.add_compute_instance(ws1, "ci-monwed", state="Stopped", tags={N.auto_start: "mon,wed"})
    ml.add_compute_instance(ws1, "ci-tuesday", state="Stopped", tags={N.auto_start: "tue"})
    ml.add_compute_instance(ws1, "ci-manual", state="Stopped")
    ml.add_compute_instance(ws1, "ci-optout", state="Stopped", tags={N.auto_start: "no"})
    ml.add_compute_instance(ws2, "ci-up", state="Running", tags={N.auto_start: "yes"})
    ml.add_compute_instance(ws2, "ci-far", state="Stopped", tags={N.auto_start: "YES"})
    ml.add_compute_instance(ws2, "ci-busy", state="Stopping", tags={N.auto_start: "yes"})
    ml.add_compute_instance(ws2, "ci-garbled", state="Stopped", tags={N.auto_start: "weekdays"})
    ml.add_compute_instance(ws2, "cluster", compute_type="AmlCompute", tags={N.auto_start: "yes"})
    return ws1, ws2


def doc(**start):
    section = {"confirm_interval_seconds": 0.02, "confirm_timeout_seconds": 10, "holidays": ["2026-12-25"], "time_zone": "Europe/Amsterdam", **start}
    return {"scope": {"subscriptions": [SUB1, SUB2]}, "start": section}


def run(arm, capsys, now, *extra, settings=None):
    code = start_compute_instances.main(["--settings-b64", encode_settings(settings or doc()), *extra], credential=arm.credential(), now=now)
    out = capsys.readouterr().out
    return code, summary_from(out), out


def states(ml):
    return {f"{ws.name}/{ci.name}": ci.state for ws, ci in ml.all_instances()}


def writes(arm):
    return sum(arm.count(m) for m in WRITES)


def test_opted_in_stopped_cis_are_started_and_others_untouched(arm, ml, capsys):
    seed(ml)
    before = states(ml)
    code, summary, out = run(arm, capsys, MONDAY_0600)
    assert code == 0
    assert outcomes(summary) == {
        "mlw-one/ci-auto": "started",
        "mlw-one/ci-monwed": "started",
        "mlw-one/ci-tuesday": "skipped",
        "mlw-one/ci-manual": "skipped",
        "mlw-one/ci-optout": "skipped",
        "mlw-two/ci-up": "already_running",
        "mlw-two/ci-far": "started",
        "mlw-two/ci-busy": "skipped",
        "mlw-two/ci-garbled": "skipped",
    }
    after = states(ml)
    started = {"mlw-one/ci-auto", "mlw-one/ci-monwed", "mlw-two/ci-far"}
    assert {k for k in after if after[k] != before[k]} == started and all(after[k] == "Running" for k in started)
    assert arm.count("POST", "/start") == 3 and arm.count("POST", "/stop") == 0 and arm.count("PUT") == 0 and arm.count("PATCH") == 0
    assert ml.compute(SUB1, "rg-a", "mlw-one", "ci-auto").tags == {N.auto_start: "true", "team": "a"}
    assert summary["counts"] == {"already_running": 1, "skipped": 5, "started": 3}
    assert (summary["today"], summary["weekday"], summary["time_zone"], summary["holiday"], summary["start_day"]) == (
        "2026-11-23",
        "mon",
        "Europe/Amsterdam",
        False,
        True,
    )
    # Routine outcomes and CIs that never opted in are counted per workspace; the rest listed one by one.
    assert f"WORKSPACE        {SUB1}/rg-a/mlw-one  4 compute instance(s): not_opted_in=2, started=2" in out
    assert f"WORKSPACE        {SUB2}/rg-b/mlw-two  2 compute instance(s): already_running=1, started=1" in out
    assert "SKIPPED          mlw-one/ci-tuesday" in out and "opted in for tue, not mon" in out and "SKIPPED          mlw-two/ci-garbled" in out
    lines = "\n".join(ln for ln in out.splitlines() if not ln.startswith("CI_GOVERNANCE_SUMMARY"))
    assert "ci-manual" not in lines and "ci-optout" not in lines and "STARTED " not in lines


def test_holiday_starts_nothing(arm, ml, capsys):
    seed(ml)
    before = states(ml)
    code, summary, _ = run(arm, capsys, CHRISTMAS_0600)
    assert code == 0 and summary["holiday"] is True and writes(arm) == 0 and states(ml) == before
    assert outcomes(summary)["mlw-one/ci-auto"] == "skipped" and "started" not in summary["counts"]
    assert any("holiday (2026-12-25)" in r["detail"] for r in summary["results"])


def test_weekend_starts_nothing(arm, ml, capsys):
    seed(ml)
    before = states(ml)
    code, summary, _ = run(arm, capsys, SATURDAY_0600)
    assert code == 0 and summary["start_day"] is False and writes(arm) == 0 and states(ml) == before
    assert "no start on sat" in next(r["detail"] for r in summary["results"] if r["compute_instance"] == "ci-auto")


def test_today_is_the_date_in_the_configured_time_zone(arm, ml, capsys):
    seed(ml)
    late_friday_utc = datetime(2026, 11, 27, 23, 30, tzinfo=timezone.utc)  # already Saturday in Amsterdam
    code, summary, _ = run(arm, capsys, late_friday_utc)
    assert code == 0 and summary["weekday"] == "sat" and writes(arm) == 0
    code, summary, _ = run(arm, capsys, late_friday_utc, settings=doc(time_zone="UTC"))
    assert code == 0 and summary["weekday"] == "fri" and outcomes(summary)["mlw-one/ci-auto"] == "started"


def test_dry_run_changes_nothing(arm, ml, capsys):
    seed(ml)
    before = states(ml)
    code, summary, out = run(arm, capsys, MONDAY_0600, "--dry-run")
    assert code == 0 and summary["dry_run"] is True and writes(arm) == 0 and states(ml) == before
    assert outcomes(summary)["mlw-one/ci-auto"] == "would_start" and outcomes(summary)["mlw-two/ci-far"] == "would_start"
    assert summary["counts"]["would_start"] == 3 and "DRY RUN, nothing changed" in out


def test_refused_start_is_a_failure_and_the_rest_still_start(arm, ml, capsys):
    seed(ml)
    arm.inject(Fault(400, "POST", "/computes/ci-far/start", code="StartComputeInstanceNotAllowed", message="Quota exceeded for the VM family."))
    code, summary, out = run(arm, capsys, MONDAY_0600)
    assert code == 1 and summary["failed"] is True
    assert outcomes(summary)["mlw-two/ci-far"] == "failed" and "Quota exceeded for the VM family." in out
    assert outcomes(summary)["mlw-one/ci-auto"] == "started"


def test_unreadable_subscription_is_a_scope_error(arm, ml, capsys):
    seed(ml)
    arm.inject(Fault(403, "GET", f"/subscriptions/{SUB2}/providers/Microsoft.MachineLearningServices/workspaces", times=None))
    code, summary, _ = run(arm, capsys, MONDAY_0600)
    assert code == 1 and len(summary["errors"]) == 1 and SUB2 in summary["errors"][0]["scope"]
    assert outcomes(summary)["mlw-one/ci-auto"] == "started" and "mlw-two/ci-far" not in outcomes(summary)


def test_bad_settings_exit_2_without_calls(arm, ml, capsys):
    code, summary, _ = run(arm, capsys, MONDAY_0600, settings=doc(holidays=["Christmas"]))
    assert code == 2 and "holiday 'Christmas' is not a date" in summary["error"] and arm.calls == []
    code, summary, _ = run(arm, capsys, MONDAY_0600, settings={"start": {}})
    assert code == 2 and "no subscription" in summary["error"]
