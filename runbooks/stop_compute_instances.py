"""Nightly stop sweep: stop every running compute instance in the managed scope unless it has a
valid exemption, then report what happened to each one.

Parameters (any order; several may share one portal box):
  --settings-b64 B64 | --settings FILE_OR_JSON   configuration (publish.py sets --settings-b64)
  --subscription ID (repeatable)  --resource-group RG  --workspace PATTERN   narrow the scope
  --dry-run                      print the plan, change nothing, post nothing to Teams
  --no-teams-summary             do not post the nightly summary card
  --summary-file PATH            also write the JSON summary to a file
  --self-check                   read-only proof that the runbook can run here (publish.py starts it)
Exit code: 0 all good, 1 something failed (see the FAILED/ERROR lines), 2 bad parameters or settings.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import datetime
from typing import Any, Optional, Sequence

try:
    import shared  # noqa: F401  (installed as a package in Azure Automation)
except ImportError:  # run from a checkout: python runbooks/stop_compute_instances.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from shared.automation.args import common_parser
from shared.automation.output import configure_logging, emit_report, guarded, parse_and_load, usage_failure
from shared.azure.ml_gateway import MLGateway, sign_in
from shared.errors import SettingsError, UsageError
from shared.stop.run import run_stop_sweep
from shared.stop.summary import post_nightly_summary

RUNBOOK = "stop_compute_instances"
log = logging.getLogger("ci_governance." + RUNBOOK)


@guarded(RUNBOOK)
def main(
    argv: Optional[Sequence[str]] = None, *, credential: Any = None, now: Optional[datetime] = None, gateway: Optional[MLGateway] = None, **run_kwargs: Any
) -> int:
    """Run the sweep; returns the process exit code."""
    configure_logging()
    parser = common_parser(RUNBOOK, "Stop idle Azure ML compute instances unless exempt.")
    parser.add_argument("--no-teams-summary", action="store_true", help="do not post the summary card to Teams")
    try:
        args, settings = parse_and_load(parser, argv, credential=credential, require_scope=True)
    except (UsageError, SettingsError) as exc:
        return usage_failure(str(exc), RUNBOOK)
    gateway = sign_in(settings, what="Stop sweep", dry_run=args.dry_run, credential=credential, gateway=gateway)
    report = run_stop_sweep(gateway, settings, now=now, dry_run=args.dry_run, **run_kwargs)
    if args.dry_run:
        log.info("Dry run: the nightly summary card is not posted to Teams")
    elif settings.teams.workflow_url and settings.teams.post_nightly_summary and not args.no_teams_summary:
        post_nightly_summary(report, settings)
    emit_report(report, args.summary_file)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
