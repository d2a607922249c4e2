"""Run reports: one line per CI an operator can read in the Automation job output, and one JSON
summary a machine can read (the last line of the output, prefixed with ``SUMMARY_MARKER``)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Dict, List, Optional

from shared.decision import FAILED

SUMMARY_MARKER = "CI_GOVERNANCE_SUMMARY "


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

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)

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


def _iso(moment: Optional[datetime]) -> Optional[str]:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None
