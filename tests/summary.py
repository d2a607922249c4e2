"""Helpers to read a runbook's JSON summary from its captured output."""

from __future__ import annotations

import json
from typing import Any, Dict

from shared.report import SUMMARY_MARKER


def summary_from(output: str) -> Dict[str, Any]:
    """The JSON summary a runbook printed (exactly one marked line is expected)."""
    lines = [ln for ln in output.splitlines() if ln.startswith(SUMMARY_MARKER)]
    assert len(lines) == 1, f"expected one summary line, found {len(lines)}:\n{output[-2000:]}"
    return json.loads(lines[0][len(SUMMARY_MARKER) :])


def outcomes(summary: Dict[str, Any]) -> Dict[str, str]:
    """``workspace/ci`` → outcome, asserting each CI appears exactly once."""
    out: Dict[str, str] = {}
    for r in summary["results"]:
        key = f"{r['workspace']}/{r['compute_instance']}"
        assert key not in out, f"{key} reported twice"
        out[key] = r["outcome"]
    return out
