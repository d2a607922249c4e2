"""Command-line parameters that work the same from the portal, a schedule, a webhook and a shell.

Azure Automation passes Python runbook parameters positionally (``sys.argv[1:]``) and drops their
names, so every runbook takes ``--name value`` tokens, and any one positional value may hold
several tokens (an admin types ``--dry-run --subscription 000…`` into one box in the portal):
:func:`flatten_argv` splits such values the way a shell would.
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any, List, Optional, Sequence

from shared.errors import UsageError

TRUE = {"1", "true", "yes", "y", "on"}
FALSE = {"0", "false", "no", "n", "off"}


def flatten_argv(argv: Sequence[str]) -> List[str]:
    """Split positional values that carry several ``--flag value`` tokens; leave others whole.

    A value that starts with ``{`` or ``[`` is JSON (a webhook body) and is never split.
    """
    out: List[str] = []
    for item in argv:
        text = item if isinstance(item, str) else str(item)
        stripped = text.strip()
        if stripped.startswith("--") and any(ch.isspace() for ch in stripped) and not stripped.startswith(("{", "[")):
            try:
                out.extend(shlex.split(stripped))
                continue
            except ValueError:
                pass  # unbalanced quotes: keep the value whole and let argparse report it
        out.append(text)
    return out


def parse_bool(value: Optional[str]) -> bool:
    """``--dry-run`` alone means true; ``--dry-run false`` (or ``=no``) means false."""
    if value is None:
        return True
    lowered = value.strip().lower()
    if lowered in TRUE:
        return True
    if lowered in FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


class StoreOnce(argparse.Action):
    """``store`` that refuses a second occurrence: argparse would silently keep the last one, so
    ``--dry-run --dry-run false`` would stop for real and two different ``--request`` values would
    not be noticed."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: Optional[str] = None) -> None:
        seen = namespace.__dict__.setdefault("_given_once", set())
        if self.dest in seen:
            raise UsageError(f"{parser.prog}: {option_string} is given more than once; give it once")
        seen.add(self.dest)
        setattr(namespace, self.dest, values)


class RunbookArgumentParser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so a runbook can report the error and exit 2.

    Every plain (``store``) option may be given only once (:class:`StoreOnce`); repeatable
    options say so with ``action="append"``.
    """

    def add_argument(self, *args: Any, **kwargs: Any) -> Any:
        """As argparse's, with :class:`StoreOnce` as the default action of options."""
        if args and str(args[0]).startswith("-") and kwargs.get("action") in (None, "store"):
            kwargs["action"] = StoreOnce
        return super().add_argument(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")




def common_parser(prog: str, description: str) -> RunbookArgumentParser:
    """A parser with the flags every runbook shares (settings, scope, dry run, summary file)."""
    parser = RunbookArgumentParser(prog=prog, description=description, allow_abbrev=False)
    parser.add_argument("--settings", help="settings: a JSON file path or inline JSON")
    parser.add_argument("--settings-b64", help="settings as base64 JSON (what publish.py sets)")
    parser.add_argument("--subscription", action="append", default=None, help="subscription id to manage (repeatable; replaces scope.subscriptions)")
    parser.add_argument("--resource-group", action="append", default=None, help="narrow the scope to this resource group (repeatable)")
    parser.add_argument("--workspace", action="append", default=None, help="only workspaces matching this name or pattern (repeatable)")
    parser.add_argument("--dry-run", nargs="?", const="true", default="false", type=parse_bool, help="plan only: change nothing")
    parser.add_argument("--summary-file", help="also write the JSON summary to this file")
    return parser
