"""What every runbook does around its real work: logging set-up, parameters and settings,
credential, and printing the report (readable lines, then one JSON summary line)."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from typing import Any, Callable, Optional, Sequence, Tuple

from shared.automation.args import RunbookArgumentParser, flatten_argv
from shared.automation.selfcheck import requested, self_check
from shared.errors import UsageError
from shared.report import PRINTED_SUMMARY_BUDGET, SUMMARY_MARKER, RunReport, ScopeError
from shared.sections import read_sections
from shared.settings import Settings, load_settings

log = logging.getLogger("ci_governance")

# Azure SDK loggers are chatty at INFO (every HTTP request, with headers): keep them to warnings.
_QUIET = ("azure", "azure.core", "azure.identity", "azure.ai.ml", "urllib3", "msal")


def printable(text: str) -> str:
    """``text`` with lone surrogates (valid in JSON, ``"\\ud800"``) written as ``\\ud800`` escapes.

    A lone surrogate cannot be encoded as UTF-8: printed as-is it raises UnicodeEncodeError, which
    would end the run in a traceback after its work is done. JSON text stays valid JSON.
    """
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


class _PrintableFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))


def configure_logging(verbose: bool = False, stream: Any = None) -> None:
    """Plain ``LEVEL message`` lines on stdout: Azure Automation timestamps each line itself."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(_PrintableFormatter("%(levelname)-7s %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_ci_governance", False):
            root.removeHandler(old)
    handler._ci_governance = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)


def parse_and_load(
    parser: RunbookArgumentParser, argv: Optional[Sequence[str]], credential: Any = None, *, require_scope: bool = False
) -> Tuple[Any, Settings]:
    """Parse runbook parameters and load settings, applying scope flags, and check the whole
    settings document (every section, whichever runbook reads it) before any call; the secret
    settings named in ``secrets.stored`` are read from Key Vault with the runbook's identity (or ``credential``).
    With ``require_scope``, settings that name no subscription are refused (the runbook would act on
    whatever its identity can reach).

    Raises UsageError or SettingsError with a message meant for the operator.
    """
    args = parser.parse_args(flatten_argv(list(sys.argv[1:] if argv is None else argv)))
    for flag in ("subscription", "resource_group", "workspace"):
        # An empty value would match nothing: the run would stop nothing and still say "done".
        if any(not str(v).strip() for v in getattr(args, flag, None) or ()):
            raise UsageError(f"--{flag.replace('_', '-')} is empty")
    check_summary_file(getattr(args, "summary_file", None))
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
    read_sections(settings)  # a mistyped section of any runbook fails every runbook at once, with exit 2
    if require_scope:
        settings.require_scope()
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


def check_summary_file(path: Optional[str]) -> None:
    """Refuse a ``--summary-file`` that cannot be written, before any work (UsageError)."""
    if path is None:
        return
    if not path.strip():
        raise UsageError("--summary-file is empty")
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path) or not os.path.isdir(folder) or not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise UsageError(f"--summary-file {printable(path)} cannot be written (is its folder there and writable?)")


# How many summary lines this process has printed: a run prints exactly one (see guarded).
_summaries_printed = 0


def _print_summary(text: str, stream: Any) -> None:
    global _summaries_printed
    print(SUMMARY_MARKER + printable(text), file=stream)
    stream.flush()
    _summaries_printed += 1


def emit_report(report: RunReport, summary_file: Optional[str] = None, out: Any = None) -> None:
    """Print the report lines, then the JSON summary on one marked line (and to a file if asked).

    The file is written first: a file that cannot be written after all (the disk filled up) is a
    failure the printed summary and the exit code must show, not a traceback after the summary.
    """
    stream = out or sys.stdout
    if summary_file:
        try:
            with open(summary_file, "w", encoding="utf-8") as fh:
                fh.write(printable(report.to_json()) + "\n")
        except OSError as exc:
            log.error("Could not write --summary-file %s: %s", summary_file, exc.strerror or exc)
            report.errors.append(ScopeError("--summary-file", f"cannot write {summary_file}: {exc.strerror or exc}"))
    for line in report.lines():
        print(printable(line), file=stream)
    _print_summary(report.to_json(max_bytes=PRINTED_SUMMARY_BUDGET), stream)


def usage_failure(message: str, runbook: str) -> int:
    """Log a parameter/settings error with the summary line machines look for; returns exit code 2."""
    log.error("%s", message)
    _print_summary(json.dumps({"runbook": runbook, "exit_code": 2, "failed": True, "error": message}, ensure_ascii=False), sys.stdout)
    return 2


def guarded(runbook: str) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Wrap a runbook's ``main`` so that every run ends with exit code 0, 1 or 2 and exactly one
    summary line: an unexpected error is reported as one line and a failed summary (exit 1),
    never as a traceback (the traceback goes to the debug log). ``--self-check`` runs the read-only
    self-check (shared.automation.selfcheck) instead of the runbook, for every runbook alike."""

    def wrap(main: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(main)
        def run(*args: Any, **kwargs: Any) -> int:
            before = _summaries_printed
            try:
                argv = args[0] if args else kwargs.get("argv")
                if requested(argv):  # --self-check: read-only proof that the runbook can run here (publish.py starts it)
                    gateway = kwargs.get("gateway")
                    return self_check(runbook, argv, credential=kwargs.get("credential"), gateway_factory=(lambda _cred: gateway) if gateway else None)
                return main(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - the last line of defence: report, never crash
                log.error("%s stopped by an unexpected error: %s: %s", runbook, type(exc).__name__, str(exc)[:500])
                log.debug("Traceback of the unexpected error", exc_info=True)
                if _summaries_printed == before:
                    error = f"unexpected error: {type(exc).__name__}: {str(exc)[:500]}"
                    _print_summary(json.dumps({"runbook": runbook, "exit_code": 1, "failed": True, "error": error}, ensure_ascii=False), sys.stdout)
                return 1

        return run

    return wrap
