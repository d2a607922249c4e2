"""Run reports: one line per CI an operator can read in the Automation job output, and one JSON
summary a machine can read (the last line of the output, prefixed with ``SUMMARY_MARKER``)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional

from shared.models import FAILED, ComputeInstanceRecord
from shared.tags import Exemption
from shared.times import format_instant

SUMMARY_MARKER = "CI_GOVERNANCE_SUMMARY "
# Azure Automation keeps at most 1 MiB per job stream, and the report lines share it: at 2,000 CIs
# the full summary alone is ~1 MiB. The printed summary is kept under this many bytes.
PRINTED_SUMMARY_BUDGET = 400_000
# What an operator must act on comes first when the printed summary has to leave rows out.
_ROW_PRIORITY = {FAILED: 0, "skipped": 1, "exempt": 2, "rejected": 3}


@dataclass
class CIResult:
    """The one final outcome of one CI in a run."""

    subscription_id: str
    resource_group: str
    workspace: str
    compute_instance: str
    state: str
    outcome: str
    detail: str
    vm_size: str = ""
    location: str = ""
    exempt_until: Optional[str] = None
    exempt_by: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.subscription_id}/{self.resource_group}/{self.workspace}/{self.compute_instance}"

    @classmethod
    def for_ci(cls, ci: ComputeInstanceRecord, outcome: str, detail: str, exemption: Optional[Exemption] = None, state: Optional[str] = None) -> CIResult:
        """The report row for ``ci`` (``state`` overrides the listed state, e.g. after a stop)."""
        return cls(
            subscription_id=ci.workspace.subscription_id,
            resource_group=ci.workspace.resource_group,
            workspace=ci.workspace.name,
            compute_instance=ci.name,
            state=state or ci.state,
            outcome=outcome,
            detail=detail,
            vm_size=ci.vm_size,
            location=ci.location,
            exempt_until=format_instant(exemption.until) if exemption else None,
            exempt_by=exemption.by if exemption else None,
        )


@dataclass
class ScopeError:
    """A subscription or workspace that could not be read: its CIs are unknown, so the run failed."""

    scope: str
    error: str


@dataclass
class RunReport:
    """Everything a runbook did in one run."""

    runbook: str
    dry_run: bool
    started_at: datetime
    finished_at: Optional[datetime] = None
    results: List[CIResult] = field(default_factory=list)
    errors: List[ScopeError] = field(default_factory=list)
    extra: Dict[str, Any] = field(default_factory=dict)

    def finish(self) -> None:
        """Stamp ``finished_at`` now, never before ``started_at`` (tests and the sandbox inject a
        future "now" as the start; the report's clock must stay consistent with it)."""
        real = datetime.now(timezone.utc)
        self.finished_at = real if real >= self.started_at else self.started_at

    def counts(self) -> Dict[str, int]:
        return dict(sorted(Counter(r.outcome for r in self.results).items()))

    @property
    def failed(self) -> bool:
        return bool(self.errors) or any(r.outcome == FAILED for r in self.results)

    @property
    def exit_code(self) -> int:
        """0 when nothing failed, 1 otherwise (bad parameters or settings exit with 2 earlier)."""
        return 1 if self.failed else 0

    def to_dict(self) -> Dict[str, Any]:
        return {
            "runbook": self.runbook,
            "dry_run": self.dry_run,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "counts": self.counts(),
            "failed": self.failed,
            "exit_code": self.exit_code,
            "results": [asdict(r) for r in sorted(self.results, key=lambda r: r.key.lower())],
            "errors": [asdict(e) for e in self.errors],
            **self.extra,
        }

    def to_json(self, max_bytes: Optional[int] = None) -> str:
        """The summary as one JSON line; with ``max_bytes``, rows are left out to fit.

        Counts, errors and every other key stay exact. Rows are kept in order of urgency (failed,
        skipped, exempt, then the rest) while they fit; ``results_omitted`` says how many of each
        outcome were left out. Every CI is still in the report lines and in ``--summary-file``.
        """
        data = self.to_dict()
        text = json.dumps(data, sort_keys=True, ensure_ascii=False)
        if max_bytes is None or len(text.encode("utf-8")) <= max_bytes:
            return text
        rows = sorted(data["results"], key=lambda r: _ROW_PRIORITY.get(r["outcome"], 9))
        data["results"] = []
        data["results_omitted"] = {"count": len(rows), "by_outcome": dict(Counter(r["outcome"] for r in rows)), "note": _OMITTED_NOTE}
        budget = max_bytes - len(json.dumps(data, sort_keys=True, ensure_ascii=False).encode("utf-8")) - 64
        kept = []
        for row in rows:
            size = len(json.dumps(row, sort_keys=True, ensure_ascii=False).encode("utf-8")) + 2
            if size > budget:
                break
            budget -= size
            kept.append(row)
        left = rows[len(kept) :]
        data["results"] = sorted(kept, key=lambda r: (r["workspace"].lower(), r["compute_instance"].lower()))
        data["results_omitted"] = {"count": len(left), "by_outcome": dict(sorted(Counter(r["outcome"] for r in left).items())), "note": _OMITTED_NOTE}
        return json.dumps(data, sort_keys=True, ensure_ascii=False)

    def lines(self) -> List[str]:
        """Human-readable report lines, sorted by workspace then CI."""
        out = []
        for r in sorted(self.results, key=lambda r: (r.workspace.lower(), r.compute_instance.lower(), r.key.lower())):
            out.append(f"{r.outcome.upper():<16} {r.workspace}/{r.compute_instance}  [{r.state}]  {r.detail}")
        for e in self.errors:
            out.append(f"{'ERROR':<16} {e.scope}  {e.error}")
        counts = ", ".join(f"{k}={v}" for k, v in self.counts().items()) or "no compute instances"
        out.append(f"Totals: {counts}; scope errors={len(self.errors)}; {'DRY RUN, nothing changed' if self.dry_run else 'done'}; exit code {self.exit_code}")
        return out


_OMITTED_NOTE = "rows left out to fit Azure Automation's 1 MiB job stream; every CI is in the report lines, and all rows in --summary-file"


def _iso(moment: Optional[datetime]) -> Optional[str]:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None
