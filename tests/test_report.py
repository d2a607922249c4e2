"""Run reports: lines, exit codes, and a printed summary that fits Azure Automation's job stream."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from shared.automation.output import emit_report
from shared.report import PRINTED_SUMMARY_BUDGET, SUMMARY_MARKER, CIResult, RunReport, ScopeError

NOW = datetime(2026, 11, 23, 19, 0, tzinfo=timezone.utc)


def row(i: int, outcome: str) -> CIResult:
    return CIResult(
        "11111111-1111-4111-8111-111111111111",
        "rg-ml",
        f"mlw-{i % 200:03d}",
        f"ci-{i:04d}",
        "Stopped",
        outcome,
        "avoids ~USD 3.97; stop confirmed; was Running, no exemption " + "x" * 60,
        "STANDARD_DS3_V2",
        "westeurope",
        extra={"cost": {"amount": 3.97, "currency": "USD", "hourly": 0.344, "hours": 11.5, "region": "westeurope", "text": "USD 3.97"}},
    )


def big_report() -> RunReport:
    report = RunReport("stop_compute_instances", False, NOW, NOW)
    outcomes = ["failed"] * 7 + ["exempt"] * 40 + ["skipped"] * 150 + ["already_stopped"] * 300 + ["stopped"] * 1503
    report.results = [row(i, o) for i, o in enumerate(outcomes)]
    report.errors = [ScopeError("workspace sub/rg/mlw-x", "HTTP 403 AuthorizationFailed: no")]
    return report


def test_exit_code_and_lines():
    report = RunReport("x", False, NOW, NOW, results=[row(1, "stopped")])
    assert report.exit_code == 0 and report.lines()[-1].startswith("Totals: stopped=1")
    report.results.append(row(2, "failed"))
    assert report.exit_code == 1
    assert RunReport("x", False, NOW, errors=[ScopeError("s", "e")]).exit_code == 1


def test_small_summary_is_complete():
    report = RunReport("x", False, NOW, NOW, results=[row(i, "stopped") for i in range(5)])
    data = json.loads(report.to_json(max_bytes=PRINTED_SUMMARY_BUDGET))
    assert len(data["results"]) == 5 and "results_omitted" not in data


def test_large_summary_fits_keeps_counts_exact_and_urgent_rows_first():
    report = big_report()
    full = report.to_json()
    assert len(full.encode()) > PRINTED_SUMMARY_BUDGET  # the case this exists for (~1 MiB at 2,000 CIs)
    printed = report.to_json(max_bytes=PRINTED_SUMMARY_BUDGET)
    assert len(printed.encode()) <= PRINTED_SUMMARY_BUDGET
    data = json.loads(printed)
    assert data["counts"] == {"already_stopped": 300, "exempt": 40, "failed": 7, "skipped": 150, "stopped": 1503}
    assert data["failed"] is True and data["exit_code"] == 1 and len(data["errors"]) == 1
    kept = [r["outcome"] for r in data["results"]]
    assert kept.count("failed") == 7 and kept.count("exempt") == 40 and kept.count("skipped") == 150
    omitted = data["results_omitted"]
    assert omitted["count"] + len(kept) == 2000
    assert sum(omitted["by_outcome"].values()) == omitted["count"] and "failed" not in omitted["by_outcome"]


def test_emit_report_prints_the_bounded_summary_and_files_the_full_one(tmp_path):
    import io

    report = big_report()
    out = io.StringIO()
    path = tmp_path / "summary.json"
    emit_report(report, str(path), out=out)
    text = out.getvalue()
    assert len(text.encode()) < 1024 * 1024  # the whole job output, lines included, fits one stream
    # Non-routine results one per line; routine ones counted on one line per workspace (200 here).
    assert sum(1 for ln in text.splitlines() if ln.startswith(("FAILED", "EXEMPT", "SKIPPED"))) == 197
    assert not any(ln.startswith(("STOPPED", "ALREADY_STOPPED")) for ln in text.splitlines())
    counted = [ln for ln in text.splitlines() if ln.startswith("WORKSPACE")]
    assert len(counted) == 200
    assert sum(int(n) for ln in counted for n in __import__("re").findall(r"(?:stopped|already_stopped)=(\d+)", ln)) == 1803
    printed = json.loads(next(ln for ln in text.splitlines() if ln.startswith(SUMMARY_MARKER))[len(SUMMARY_MARKER) :])
    assert printed["results_omitted"]["count"] > 0
    assert len(json.loads(path.read_text())["results"]) == 2000


def test_routine_outcomes_are_counted_per_workspace_and_the_rest_listed():
    rows = [row(0, "stopped"), row(200, "stopped"), row(400, "already_stopped"), row(600, "failed"), row(1, "exempt")]
    report = RunReport("x", False, NOW, NOW, results=rows)
    lines = report.lines()
    assert [ln.split()[0] for ln in lines] == ["FAILED", "WORKSPACE", "EXEMPT", "Totals:"]
    assert "11111111-1111-4111-8111-111111111111/rg-ml/mlw-000  3 compute instance(s): already_stopped=1, stopped=2" in lines[1]
    assert "mlw-000/ci-0600" in lines[0] and "mlw-001/ci-0001" in lines[2]


def test_individual_lines_stop_at_their_budget_and_say_so():
    report = RunReport("x", False, NOW, NOW, results=[row(i, "failed") for i in range(50)])
    lines = report.lines(budget=1000)
    listed = [ln for ln in lines if ln.startswith("FAILED")]
    assert 0 < len(listed) < 50 and sum(len(ln) + 1 for ln in listed) <= 1000
    assert any(ln.startswith("NOTE") and f"{50 - len(listed)} result(s)" in ln for ln in lines)
    counted = sum(int(n) for ln in lines if ln.startswith("WORKSPACE") for n in __import__("re").findall(r"failed=(\d+)", ln))
    assert counted == 50 - len(listed)


def test_ten_thousand_routine_results_print_well_under_a_mebibyte(tmp_path):
    import io

    report = RunReport("stop_compute_instances", False, NOW, NOW)
    report.results = [row(i, "stopped") for i in range(10_000)]
    out = io.StringIO()
    emit_report(report, str(tmp_path / "s.json"), out=out)
    assert len(out.getvalue().encode()) < 600 * 1024
