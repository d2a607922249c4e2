"""What every runbook does around its real work: logging set-up, parameters and settings,
credential, and printing the report (readable lines, then one JSON summary line)."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, Optional, Sequence, Tuple

from shared.automation.args import RunbookArgumentParser, flatten_argv
from shared.report import PRINTED_SUMMARY_BUDGET, SUMMARY_MARKER, RunReport
from shared.settings import Settings, load_settings

log = logging.getLogger("ci_governance")

# Azure SDK loggers are chatty at INFO (every HTTP request, with headers): keep them to warnings.
_QUIET = ("azure", "azure.core", "azure.identity", "azure.ai.ml", "urllib3", "msal")


def configure_logging(verbose: bool = False, stream: Any = None) -> None:
    """Plain ``LEVEL message`` lines on stdout: Azure Automation timestamps each line itself."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(logging.Formatter("%(levelname)-7s %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_ci_governance", False):
            root.removeHandler(old)
    handler._ci_governance = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)


def parse_and_load(parser: RunbookArgumentParser, argv: Optional[Sequence[str]], credential: Any = None) -> Tuple[Any, Settings]:
    """Parse runbook parameters and load settings, applying scope flags; the secret settings named in
    ``secrets.stored`` are read from Key Vault with the runbook's identity (or ``credential``).

    Raises UsageError or SettingsError with a message meant for the operator.
    """
    args = parser.parse_args(flatten_argv(list(sys.argv[1:] if argv is None else argv)))
    settings = load_settings(getattr(args, "settings", None), getattr(args, "settings_b64", None))
    overrides = {}
    if getattr(args, "subscription", None):
        overrides["subscriptions"] = list(args.subscription)
    if getattr(args, "resource_group", None):
        overrides["resource_groups"] = list(args.resource_group)
    if getattr(args, "workspace", None):
        overrides["include_workspaces"] = list(args.workspace)
    if overrides:
        settings = settings.with_overrides(scope=overrides)
    settings = with_secrets(settings, credential)
    return args, settings


def with_secrets(settings: Settings, credential: Any = None) -> Settings:
    """``settings`` with its Key Vault secrets filled in (unchanged when it names none)."""
    if not (settings.raw.get("secrets") or {}).get("stored"):
        return settings
    from shared.automation.secrets import read_secrets
    from shared.azure.auth import get_credential

    cred, _ = get_credential(settings.identity.client_id, credential=credential)
    return read_secrets(settings, cred)[0]


def emit_report(report: RunReport, summary_file: Optional[str] = None, out: Any = None) -> None:
    """Print the report lines, then the JSON summary on one marked line (and to a file if asked)."""
    stream = out or sys.stdout
    for line in report.lines():
        print(line, file=stream)
    print(SUMMARY_MARKER + report.to_json(max_bytes=PRINTED_SUMMARY_BUDGET), file=stream)
    stream.flush()
    if summary_file:
        with open(summary_file, "w", encoding="utf-8") as fh:
            fh.write(report.to_json() + "\n")


def usage_failure(message: str, runbook: str) -> int:
    """Log a parameter/settings error with the summary line machines look for; returns exit code 2."""
    log.error("%s", message)
    print(SUMMARY_MARKER + json.dumps({"runbook": runbook, "exit_code": 2, "failed": True, "error": message}, ensure_ascii=False))
    return 2
