"""End to end: the real stop runbook, through azure-ai-ml and azure-core, against the fake."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

from fake_azure import Fault
from runbooks import stop_compute_instances
from shared.settings import encode_settings
from shared.tags import TagNames
from shared.times import format_instant
from tests.conftest import ROOT, SUB1, SUB2, fast_stop_settings
from tests.summary import outcomes, summary_from

N = TagNames()


def seed(ml, now):
    ws1 = ml.add_workspace(SUB1, "rg-a", "mlw-one")
    ws2 = ml.add_workspace(SUB1, "rg-a", "mlw-two")
    ws3 = ml.add_workspace(SUB2, "rg-b", "mlw-three")
    ml.add_compute_instance(ws1, "ci-run", state="Running", tags={"team": "a"})
    ml.add_compute_instance(ws1, "ci-off", state="Stopped")
    ml.add_compute_instance(ws1, "ci-exempt", tags={N.exempt_until: format_instant(now + timedelta(hours=3)), N.exempt_by: "ada@contoso.com"})
    ml.add_compute_instance(ws2, "ci-expired", tags={N.exempt_until: format_instant(now - timedelta(minutes=1)), N.exempt_by: "bob@contoso.com"})
    ml.add_compute_instance(ws2, "ci-job", state="JobRunning")
    ml.add_compute_instance(ws3, "ci-far", state="Running")
    ml.add_compute_instance(ws3, "cluster", compute_type="AmlCompute")
    return ws1, ws2, ws3


def run(arm, now, capsys, *extra, stop=None, settings=None):
    doc = settings or {"scope": {"subscriptions": [SUB1, SUB2]}, "stop": fast_stop_settings(**(stop or {}))}
    code = stop_compute_instances.main(["--settings-b64", encode_settings(doc), *extra], credential=arm.credential(), now=now)
    out = capsys.readouterr().out
    return code, summary_from(out), out


def state(ml, ws, name):
    return ml.compute(ws.subscription_id, ws.resource_group, ws.name, name).state


def test_sweep_stops_running_cis_and_reports_each_once(arm, ml, now, capsys):
    ws1, ws2, ws3 = seed(ml, now)
    code, summary, out = run(arm, now, capsys)
    assert code == 0
    assert outcomes(summary) == {
        "mlw-one/ci-run": "stopped",
        "mlw-one/ci-off": "already_stopped",
        "mlw-one/ci-exempt": "exempt",
        "mlw-two/ci-expired": "stopped",
        "mlw-two/ci-job": "skipped",
        "mlw-three/ci-far": "stopped",
    }
    assert state(ml, ws1, "ci-run") == "Stopped" and state(ml, ws3, "ci-far") == "Stopped"
    assert state(ml, ws1, "ci-exempt") == "Running" and state(ml, ws2, "ci-job") == "JobRunning"
    assert state(ml, ws1, "ci-run") == "Stopped" and ml.compute(SUB1, "rg-a", "mlw-one", "ci-run").tags == {"team": "a"}
    # operator lines and the machine summary agree
    assert f"WORKSPACE        {SUB1}/rg-a/mlw-one  2 compute instance(s): already_stopped=1, stopped=1" in out
    assert "EXEMPT           mlw-one/ci-exempt" in out and "ada@contoso.com" in out and "STOPPED " not in out
    assert summary["counts"] == {"already_stopped": 1, "exempt": 1, "skipped": 1, "stopped": 3}
    assert arm.count("POST", "/stop") == 3


def test_dry_run_changes_nothing(arm, ml, now, capsys):
    ws1, ws2, ws3 = seed(ml, now)
    code, summary, _ = run(arm, now, capsys, "--dry-run")
    assert code == 0 and summary["dry_run"] is True
    assert outcomes(summary)["mlw-one/ci-run"] == "would_stop" and outcomes(summary)["mlw-two/ci-expired"] == "would_stop"
    assert arm.count("POST") == 0 and arm.count("PUT") == 0 and arm.count("PATCH") == 0 and arm.count("DELETE") == 0
    assert state(ml, ws1, "ci-run") == "Running"


def test_exemption_expiring_before_next_night_is_listed(arm, ml, now, capsys):
    seed(ml, now)
    _, summary, _ = run(arm, now, capsys)
    assert summary["expiring_exemptions"] == [
        {"workspace": "mlw-one", "compute_instance": "ci-exempt", "until": format_instant(now + timedelta(hours=3)), "by": "ada@contoso.com"}
    ]


def test_job_running_stopped_when_policy_says_so(arm, ml, now, capsys):
    _, ws2, _ = seed(ml, now)
    code, summary, _ = run(arm, now, capsys, stop={"stop_job_running": True})
    assert code == 0 and outcomes(summary)["mlw-two/ci-job"] == "stopped" and state(ml, ws2, "ci-job") == "Stopped"


def test_throttled_stop_is_retried(arm, ml, now, capsys):
    ws1, _, _ = seed(ml, now)
    fault = arm.inject(Fault(429, method="POST", path_contains="/computes/ci-run/stop", times=2, retry_after=0.01))
    code, summary, _ = run(arm, now, capsys)
    assert code == 0 and fault.hits == 2
    assert outcomes(summary)["mlw-one/ci-run"] == "stopped" and state(ml, ws1, "ci-run") == "Stopped"
    assert arm.count("POST", "/computes/ci-run/stop") == 3


def test_forbidden_workspace_leaves_the_others_swept_and_fails_the_run(arm, ml, now, capsys):
    ws1, ws2, ws3 = seed(ml, now)
    arm.inject(
        Fault(
            403,
            method="GET",
            path_contains="/workspaces/mlw-two/computes",
            times=None,
            code="AuthorizationFailed",
            message="The client does not have authorization to perform action 'Microsoft.MachineLearningServices/workspaces/computes/read'.",
        )
    )
    code, summary, out = run(arm, now, capsys)
    assert code == 1 and summary["failed"] is True
    assert outcomes(summary) == {
        "mlw-one/ci-run": "stopped",
        "mlw-one/ci-off": "already_stopped",
        "mlw-one/ci-exempt": "exempt",
        "mlw-three/ci-far": "stopped",
    }
    assert len(summary["errors"]) == 1 and "mlw-two" in summary["errors"][0]["scope"] and "AuthorizationFailed" in summary["errors"][0]["error"]
    assert state(ml, ws2, "ci-expired") == "Running" and state(ml, ws3, "ci-far") == "Stopped"
    assert "ERROR" in out and "HTTP 403" in out


def test_scope_narrowed_by_resource_group_and_workspace_patterns(arm, ml, now, capsys):
    ws1, ws2, ws3 = seed(ml, now)
    doc = {"scope": {"subscriptions": [SUB1, SUB2], "resource_groups": ["RG-A"], "exclude_workspaces": ["mlw-two"]}, "stop": fast_stop_settings()}
    code, summary, _ = run(arm, now, capsys, settings=doc)
    assert code == 0 and set(outcomes(summary)) == {"mlw-one/ci-run", "mlw-one/ci-off", "mlw-one/ci-exempt"}
    assert state(ml, ws3, "ci-far") == "Running" and state(ml, ws2, "ci-expired") == "Running"


def test_missing_subscription_is_a_clear_usage_error(arm, capsys, monkeypatch):
    monkeypatch.delenv("CI_GOVERNANCE_SETTINGS", raising=False)
    code = stop_compute_instances.main(["--dry-run"], credential=arm.credential())
    out = capsys.readouterr().out
    assert code == 2 and "no subscription to manage" in out
    assert summary_from(out)["exit_code"] == 2
    assert arm.count() == 0


def test_runs_as_a_script_from_a_checkout(tmp_path):
    """As Automation starts it: a file with positional parameters (here one that fails fast)."""
    env = {k: v for k, v in os.environ.items() if k != "CI_GOVERNANCE_SETTINGS"}
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "runbooks", "stop_compute_instances.py"), "--dry-run --settings", '{"scope": {}}'],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=str(tmp_path),
    )
    assert proc.returncode == 2, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1].split(" ", 1)[1])["error"].startswith("no subscription")
