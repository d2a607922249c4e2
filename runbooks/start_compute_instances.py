"""Morning start: start every stopped compute instance that opted in with the auto-start tag, on
the configured start days (Monday to Friday by default) except holidays, then report what
happened to each one.

Parameters (any order; several may share one portal box):
  --settings-b64 B64 | --settings FILE_OR_JSON   configuration (settings section "start")
  --subscription ID (repeatable)  --resource-group RG  --workspace PATTERN   narrow the scope
  --dry-run                      print the plan, change nothing
  --summary-file PATH            also write the JSON summary to a file
  --self-check                   read-only proof that the runbook can run here (publish.py starts it)
Exit code: 0 all good, 1 something failed (see the FAILED/ERROR lines), 2 bad parameters or settings.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime
from typing import Any, Optional, Sequence

try:
    import shared  # noqa: F401  (installed as a package in Azure Automation)
except ImportError:  # run from a checkout: python runbooks/start_compute_instances.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from shared.automation.args import common_parser
from shared.automation.output import configure_logging, emit_report, guarded, parse_and_load, usage_failure
from shared.azure.ml_gateway import MLGateway, sign_in
from shared.errors import SettingsError, UsageError
from shared.start.run import RUNBOOK, run_start_sweep


@guarded(RUNBOOK)
def main(
    argv: Optional[Sequence[str]] = None, *, credential: Any = None, now: Optional[datetime] = None, gateway: Optional[MLGateway] = None, **run_kwargs: Any
) -> int:
    """Run the morning start; returns the process exit code."""
    configure_logging()
    parser = common_parser(RUNBOOK, "Start opted-in Azure ML compute instances on working days.")
    try:
        args, settings = parse_and_load(parser, argv, credential=credential, require_scope=True)
    except (UsageError, SettingsError) as exc:
        return usage_failure(str(exc), RUNBOOK)
    gateway = sign_in(settings, what="Morning start", dry_run=args.dry_run, credential=credential, gateway=gateway)
    report = run_start_sweep(gateway, settings, now=now, dry_run=args.dry_run, **run_kwargs)
    emit_report(report, args.summary_file)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
