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
    assert sum(1 for ln in text.splitlines() if ln.startswith(("STOPPED", "FAILED", "EXEMPT", "SKIPPED", "ALREADY_STOPPED"))) == 2000
    printed = json.loads(next(ln for ln in text.splitlines() if ln.startswith(SUMMARY_MARKER))[len(SUMMARY_MARKER) :])
    assert printed["results_omitted"]["count"] > 0
    assert len(json.loads(path.read_text())["results"]) == 2000
