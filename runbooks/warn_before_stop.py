"""Pre-stop warning: tell each owner, shortly before the nightly stop, which of their compute
instances it will stop, when, and what they would cost overnight, with a "keep running until…"
form that files an ordinary exemption request.

It computes the sweep's own plan (shared.stop.run.plan, at the stop time), so the warning names
exactly the CIs the sweep will stop unless something changes in between (an exemption recorded
from the warning, for one). Scheduled ``warning.minutes_before`` minutes before the stop by publish.py.

Parameters (any order; several may share one portal box):
  --settings-b64 B64 | --settings FILE_OR_JSON   configuration (sections warning, stop, pricing, exemption)
  --subscription ID (repeatable)  --resource-group RG  --workspace PATTERN   narrow the scope
  --dry-run                      print the cards instead of posting them
  --summary-file PATH            also write the JSON summary to a file
  --self-check                   read-only proof that the runbook can run here (publish.py starts it)
Exit code: 0 every warning delivered (or nothing to warn about), 1 a card could not be posted or a
scope could not be read, 2 bad parameters or settings.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime
from typing import Any, Optional, Sequence

try:
    import shared  # noqa: F401  (installed as a package in Azure Automation)
except ImportError:  # run from a checkout: python runbooks/warn_before_stop.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from shared.automation.args import common_parser
from shared.automation.output import configure_logging, emit_report, guarded, parse_and_load, usage_failure
from shared.azure.ml_gateway import MLGateway, sign_in
from shared.errors import SettingsError, UsageError
from shared.sections import read_sections
from shared.warning.run import DRY_RUN_MARKER, RUNBOOK, run_warning, warning_url

__all__ = ["DRY_RUN_MARKER", "main"]


@guarded(RUNBOOK)
def main(
    argv: Optional[Sequence[str]] = None, *, credential: Any = None, now: Optional[datetime] = None, gateway: Optional[MLGateway] = None, **run_kwargs: Any
) -> int:
    """Run the warning; returns the process exit code."""
    configure_logging()
    parser = common_parser(RUNBOOK, "Warn owners of the compute instances the nightly stop will stop.")
    try:
        args, settings = parse_and_load(parser, argv, credential=credential, require_scope=True)
        sections = read_sections(settings)
        if not warning_url(settings, sections) and not args.dry_run:
            raise SettingsError("no Teams workflow to post warnings to: set warning.workflow_url or teams.workflow_url")
    except (UsageError, SettingsError) as exc:
        return usage_failure(str(exc), RUNBOOK)
    gateway = sign_in(settings, what="Stop warning", dry_run=args.dry_run, credential=credential, gateway=gateway)
    report = run_warning(gateway, settings, sections, now=now, dry_run=args.dry_run, **run_kwargs)
    emit_report(report, args.summary_file)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
