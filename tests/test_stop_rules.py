"""Rules of the nightly stop and the morning start that an adversarial review found broken (issue 12):
an exemption recorded while the sweep runs, scopes named twice, a 404 from a CI that exists, and a
job output that must fit Azure Automation's 1 MiB per stream. The real runbooks, end to end."""

from __future__ import annotations

import re
from datetime import timedelta

from fake_azure import Fault
from runbooks import start_compute_instances, stop_compute_instances
from shared.azure.ml_gateway import AzureMLGateway
from shared.settings import encode_settings
from shared.tags import TagNames
from shared.times import format_instant
from tests.conftest import SUB1, SUB2, fast_stop_settings
from tests.summary import outcomes, summary_from

N = TagNames()


def stop(arm, now, capsys, *extra, doc=None, gateway=None):
    doc = doc or {"scope": {"subscriptions": [SUB1, SUB2]}, "stop": fast_stop_settings()}
    kwargs = {"gateway": gateway} if gateway is not None else {}
    code = stop_compute_instances.main(["--settings-b64", encode_settings(doc), "--no-teams-summary", *extra], credential=arm.credential(), now=now, **kwargs)
    out = capsys.readouterr().out
    return code, summary_from(out), out


class ExemptAfterListing(AzureMLGateway):
    """The real gateway; right after the sweep's discovery has listed ``workspace``, someone records
    an exemption on ``ci`` (presses "keep running" on the warning card at the stop time)."""

    def __init__(self, credential, ml, workspace, ci, tags):
        super().__init__(credential)
        self.ml, self.workspace, self.ci, self.tags, self.done = ml, workspace, ci, tags, False

    def list_compute_instances(self, workspace):
        listing = super().list_compute_instances(workspace)
        if not self.done and workspace.name == self.workspace.name:
            self.done = True
            self.ml.compute(SUB1, "rg-a", self.workspace.name, self.ci).tags.update(self.tags)
        return listing


def test_an_exemption_recorded_after_discovery_is_honoured_at_the_stop(arm, ml, now, capsys):
    ws = ml.add_workspace(SUB1, "rg-a", "mlw-one")
    other = ml.add_workspace(SUB1, "rg-a", "mlw-two")
    for name in ("ci-a", "ci-b", "ci-keep"):
        ml.add_compute_instance(ws, name)
    ml.add_compute_instance(other, "ci-c")
    until = now + timedelta(hours=4)
    late = {N.exempt_until: format_instant(until), N.exempt_by: "ada@contoso.com", N.exempt_reason: "training"}
    gateway = ExemptAfterListing(arm.credential(), ml, ws, "ci-keep", late)
    code, summary, out = stop(arm, now, capsys, gateway=gateway)
    assert gateway.done and code == 0
    assert outcomes(summary) == {"mlw-one/ci-a": "stopped", "mlw-one/ci-b": "stopped", "mlw-one/ci-keep": "exempt", "mlw-two/ci-c": "stopped"}
    assert ml.compute(SUB1, "rg-a", "mlw-one", "ci-keep").state == "Running"
    assert arm.count("POST", "/ci-keep/stop") == 0
    row = next(r for r in summary["results"] if r["compute_instance"] == "ci-keep")
    assert row["exempt_until"] == format_instant(until) and row["exempt_by"] == "ada@contoso.com" and "just before its stop" in row["detail"]
    assert "EXEMPT           mlw-one/ci-keep" in out
    # The cost: one re-read per workspace with stops, not one per CI.
    assert re.search(r"Re-read 2 workspace listing\(s\) just before sending", out)
    assert arm.count("GET", "/computes/ci-") == 0


def test_an_expired_or_malformed_exemption_recorded_late_does_not_protect(arm, ml, now, capsys):
    ws = ml.add_workspace(SUB1, "rg-a", "mlw-one")
    ml.add_compute_instance(ws, "ci-keep")
    stale = {N.exempt_until: format_instant(now - timedelta(minutes=5)), N.exempt_by: "ada@contoso.com"}
    gateway = ExemptAfterListing(arm.credential(), ml, ws, "ci-keep", stale)
    code, summary, _ = stop(arm, now, capsys, gateway=gateway)
    assert gateway.done and code == 0 and outcomes(summary) == {"mlw-one/ci-keep": "stopped"}


def test_a_workspace_that_cannot_be_re_read_before_its_stops_is_not_stopped_and_fails(arm, ml, now, capsys):
    ws = ml.add_workspace(SUB1, "rg-a", "mlw-one")
    ml.add_compute_instance(ws, "ci-a")
    # Discovery's listing works; every listing after it (the re-read) answers 403.
    arm.inject(Fault(403, "GET", "/workspaces/mlw-one/computes", skip=1, times=None))
    code, summary, _ = stop(arm, now, capsys, doc={"scope": {"subscriptions": [SUB1]}, "stop": fast_stop_settings()})
    row = summary["results"][0]
    assert code == 1 and row["outcome"] == "failed" and "could not re-read" in row["detail"]
    assert arm.count("POST", "/stop") == 0 and ml.compute(SUB1, "rg-a", "mlw-one", "ci-a").state == "Running"


def test_a_scope_named_twice_lists_stops_and_reports_each_ci_once(arm, ml, now, capsys):
    ws = ml.add_workspace(SUB1, "rg-a", "mlw-one")
    for name in ("ci-a", "ci-b"):
        ml.add_compute_instance(ws, name)
    doc = {"scope": {"subscriptions": [SUB1, SUB1.upper()], "resource_groups": ["rg-a", "RG-A"]}, "stop": fast_stop_settings()}
    code, summary, _ = stop(arm, now, capsys, doc=doc)
    assert code == 0 and outcomes(summary) == {"mlw-one/ci-a": "stopped", "mlw-one/ci-b": "stopped"}
    assert arm.count("POST", "/ci-a/stop") == 1 and arm.count("POST", "/ci-b/stop") == 1


def test_subscription_flags_naming_one_subscription_twice_stop_each_ci_once(arm, ml, now, capsys):
    ws = ml.add_workspace(SUB1, "rg-a", "mlw-one")
    ml.add_compute_instance(ws, "ci-a")
    doc = {"stop": fast_stop_settings()}
    code, summary, _ = stop(arm, now, capsys, "--subscription", SUB1, "--subscription", SUB1.upper(), doc=doc)
    assert code == 0 and summary["counts"] == {"stopped": 1} and arm.count("POST", "/stop") == 1


def test_a_404_on_the_stop_of_a_ci_that_still_exists_is_a_failure(arm, ml, now, capsys):
    ws = ml.add_workspace(SUB1, "rg-a", "mlw-one")
    ml.add_compute_instance(ws, "ci-a")
    arm.inject(Fault(404, "POST", "/computes/ci-a/stop", times=None))
    code, summary, _ = stop(arm, now, capsys)
    row = summary["results"][0]
    assert code == 1 and row["outcome"] == "failed" and "exists" in row["detail"]


def test_a_404_on_the_stop_of_a_deleted_ci_is_still_skipped(arm, ml, now, capsys):
    ws = ml.add_workspace(SUB1, "rg-a", "mlw-one")
    ml.add_compute_instance(ws, "ci-a")
    arm.when("POST", "/computes/ci-a/stop", lambda: ml.delete_compute(ws, "ci-a"))
    code, summary, _ = stop(arm, now, capsys)
    assert code == 0 and summary["results"][0]["outcome"] == "skipped" and "deleted" in summary["results"][0]["detail"]


def test_start_counts_cis_that_did_not_opt_in_per_workspace(arm, ml, capsys):
    from datetime import datetime, timezone

    ws = ml.add_workspace(SUB1, "rg-a", "mlw-one")
    for i in range(30):
        ml.add_compute_instance(ws, f"ci-{i:02d}", state="Stopped")
    ml.add_compute_instance(ws, "ci-on", state="Stopped", tags={N.auto_start: "yes"})
    doc = {"scope": {"subscriptions": [SUB1]}, "start": {"confirm_interval_seconds": 0.02, "confirm_timeout_seconds": 10}}
    monday = datetime(2026, 11, 23, 6, 0, tzinfo=timezone.utc)
    code = start_compute_instances.main(["--settings-b64", encode_settings(doc)], credential=arm.credential(), now=monday)
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if not ln.startswith("CI_GOVERNANCE_SUMMARY")]
    assert code == 0 and summary_from(out)["counts"] == {"skipped": 30, "started": 1}
    assert not any(ln.startswith("SKIPPED") for ln in lines)
    assert any(ln.startswith("WORKSPACE") and "not_opted_in=30, started=1" in ln for ln in lines)
