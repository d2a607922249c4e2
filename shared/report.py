"""Run reports: one line per CI an operator can read in the Automation job output, and one JSON
summary a machine can read (the last line of the output, prefixed with ``SUMMARY_MARKER``)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Optional, Tuple

from shared.models import ALREADY_STOPPED, FAILED, STOPPED, WOULD_STOP, ComputeInstanceRecord
from shared.tags import Exemption
from shared.times import format_instant

SUMMARY_MARKER = "CI_GOVERNANCE_SUMMARY "
# Azure Automation keeps at most 1 MiB per job stream, and the report lines share it: at 2,000 CIs
# the full summary alone is ~1 MiB. The printed summary is kept under this many bytes.
PRINTED_SUMMARY_BUDGET = 400_000
# What an operator must act on comes first when the printed summary has to leave rows out.
_ROW_PRIORITY = {FAILED: 0, "skipped": 1, "exempt": 2, "rejected": 3}
# Outcomes that need nobody's attention: the report lines count them per workspace instead of
# printing a line per CI (10,000 CIs at a line each would fill Automation's 1 MiB stream alone).
# The morning start's outcomes are spelt out here to keep this foundation free of capabilities.
ROUTINE_OUTCOMES = (STOPPED, WOULD_STOP, ALREADY_STOPPED, "started", "would_start", "already_running")
# Bytes of individual (non-routine) report lines; past it the rest are counted per workspace too,
# so that the lines, the printed summary (PRINTED_SUMMARY_BUDGET) and the log fit one stream.
PRINTED_LINES_BUDGET = 300_000


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
    @property
    def workspace_key(self) -> str:
        """``subscription/resourceGroup/workspace``: what the report lines group by."""
        return f"{self.subscription_id}/{self.resource_group}/{self.workspace}"


def routine_label(result: CIResult) -> Optional[str]:
    """The label a routine result is counted under in the report lines; None: print it on its own line."""
    return result.outcome if result.outcome in ROUTINE_OUTCOMES else None


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
    # Which rows the report lines count per workspace rather than print (see routine_label).
    aggregate: Callable[[CIResult], Optional[str]] = field(default=routine_label, repr=False, compare=False)

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
        if max_bytes is None or len(text.encode("utf-8", "surrogatepass")) <= max_bytes:
            return text
        rows = sorted(data["results"], key=lambda r: _ROW_PRIORITY.get(r["outcome"], 9))
        data["results"] = []
        data["results_omitted"] = {"count": len(rows), "by_outcome": dict(Counter(r["outcome"] for r in rows)), "note": _OMITTED_NOTE}
        budget = max_bytes - len(json.dumps(data, sort_keys=True, ensure_ascii=False).encode("utf-8", "surrogatepass")) - 64
        kept = []
        for row in rows:
            size = len(json.dumps(row, sort_keys=True, ensure_ascii=False).encode("utf-8", "surrogatepass")) + 2
            if size > budget:
                break
            budget -= size
            kept.append(row)
        left = rows[len(kept) :]
        data["results"] = sorted(kept, key=lambda r: (r["workspace"].lower(), r["compute_instance"].lower()))
        data["results_omitted"] = {"count": len(left), "by_outcome": dict(sorted(Counter(r["outcome"] for r in left).items())), "note": _OMITTED_NOTE}
        return json.dumps(data, sort_keys=True, ensure_ascii=False)

    def lines(self, budget: int = PRINTED_LINES_BUDGET) -> List[str]:
        """Human-readable report lines, by workspace: every non-routine result (failed, skipped,
        exempt, ...) on its own line, then one ``WORKSPACE`` line counting the routine ones.

        Individual lines stop at ``budget`` bytes; results past it are counted on their
        workspace's line as well, and a note says so (every row is in ``--summary-file``).
        """
        out: List[str] = []
        groups: Dict[Tuple[str, str], List[CIResult]] = {}
        for r in self.results:
            groups.setdefault((r.workspace.lower(), r.workspace_key.lower()), []).append(r)
        left_out = 0
        for _, rows in sorted(groups.items()):
            counted: Counter = Counter()
            for r in sorted(rows, key=lambda r: (r.compute_instance.lower(), r.key.lower())):
                label = self.aggregate(r)
                if label is None:
                    line = f"{r.outcome.upper():<16} {r.workspace}/{r.compute_instance}  [{r.state}]  {r.detail}"
                    if len(line.encode("utf-8", "surrogatepass")) < budget:
                        budget -= len(line.encode("utf-8", "surrogatepass")) + 1
                        out.append(line)
                        continue
                    label, left_out = r.outcome, left_out + 1
                counted[label] += 1
            if counted:
                total = sum(counted.values())
                tally = ", ".join(f"{k}={v}" for k, v in sorted(counted.items()))
                out.append(f"{'WORKSPACE':<16} {rows[0].workspace_key}  {total} compute instance(s): {tally}")
        if left_out:
            note = "are counted on their WORKSPACE line instead of listed, to fit Azure Automation's 1 MiB job stream; --summary-file has every row"
            out.append(f"{'NOTE':<16} {left_out} result(s) {note}")
        for e in self.errors:
            out.append(f"{'ERROR':<16} {e.scope}  {e.error}")
        counts = ", ".join(f"{k}={v}" for k, v in self.counts().items()) or "no compute instances"
        out.append(f"Totals: {counts}; scope errors={len(self.errors)}; {'DRY RUN, nothing changed' if self.dry_run else 'done'}; exit code {self.exit_code}")
        return out


_OMITTED_NOTE = "rows left out to fit Azure Automation's 1 MiB job stream; every CI is in the report lines, and all rows in --summary-file"


def _iso(moment: Optional[datetime]) -> Optional[str]:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None
