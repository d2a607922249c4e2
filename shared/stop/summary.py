"""Post the stop sweep's nightly summary card to the configured Teams workflow."""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional

from shared.report import RunReport
from shared.settings import Settings

log = logging.getLogger(__name__)


def scope_label(scope: str) -> str:
    """A scope that could not be read, as people name it: ``workspace <sub>/<rg>/<ws>`` → ``mlw-fraud (rg-ml-product)``,
    ``subscription <id>`` unchanged (its id is its name here)."""
    text = scope.removeprefix("workspace ").strip()
    parts = text.split("/")
    return f"{parts[2]} ({parts[1]})" if scope.startswith("workspace ") and len(parts) == 3 else scope


def summary_context(report: RunReport) -> Dict[str, Any]:
    """The ``summary`` context of the ``nightly_summary`` card, built from a sweep report."""
    data = report.to_dict()
    return {
        "started_at": data["started_at"],
        "finished_at": data["finished_at"],
        "dry_run": report.dry_run,
        "counts": data["counts"],
        "items": [
            {"workspace": r["workspace"], "compute_instance": r["compute_instance"], "outcome": r["outcome"], "detail": r["detail"]} for r in data["results"]
        ]
        + [{"workspace": scope_label(e["scope"]), "compute_instance": "-", "outcome": "failed", "detail": e["error"]} for e in data["errors"]],
        "expiring": report.extra.get("expiring_exemptions", []),
        "undermined": [
            {"workspace": u["workspace"], "compute_instance": u["compute_instance"], "why": "; ".join(u["undermined_by"])}
            for u in report.extra.get("undermined_exemptions", [])
        ],
        **({"cost_avoided_text": report.extra["cost_avoided_text"]} if report.extra.get("cost_avoided_text") else {}),
    }


def post_nightly_summary(report: RunReport, settings: Settings, *, session: Optional[Any] = None) -> bool:
    """Render and post the summary card to the configured channel (the admins' place); a failure is logged and recorded, never raised."""
    from shared.teams.post import post_card

    posted = post_card("nightly_summary", {"summary": summary_context(report)}, settings.teams.workflow_url, session=session)
    report.extra["teams_summary_posted"] = posted.ok
    return posted.ok
