"""``--self-check``: prove, read-only, that a runbook can run where it was deployed.

publish.py starts one job per runbook with ``--self-check`` after deploying (Python 3.10 packages
are validated only when a job runs: docs/platform.md, "Azure Automation: Python runtime"). The check

1. imports every module the runbooks use (the whole ``shared`` package and the third-party modules
   it imports lazily), so a missing or unusable wheel fails here with its ``ModuleNotFoundError``;
2. validates the whole settings document with the runbooks' rules, after reading the secret
   settings from Key Vault with the managed identity;
3. obtains an ARM token with the managed identity;
4. reads the scope's first subscription's workspaces (one listing, read-only);

and posts nothing, changes nothing. It prints one line, ``SELF-CHECK PASSED <runbook>: ...`` or
``SELF-CHECK FAILED <runbook>: <what>``, and exits 0 or 1.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import traceback
from typing import Any, Callable, List, Optional, Sequence

from shared.automation.args import RunbookArgumentParser, flatten_argv

FLAG = "--self-check"
PASSED, FAILED = "SELF-CHECK PASSED", "SELF-CHECK FAILED"
ARM_SCOPE = "https://management.azure.com/.default"
# Third-party modules the shared package imports inside functions (so importing shared is not enough).
LAZY_MODULES = ("azure.identity", "azure.ai.ml", "azure.ai.ml.entities", "azure.core.exceptions", "jinja2", "requests")


def requested(argv: Optional[Sequence[str]]) -> bool:
    """True when the runbook's parameters ask for the self-check."""
    return FLAG in flatten_argv(list(sys.argv[1:] if argv is None else argv))


def import_everything() -> List[str]:
    """Import every module of ``shared`` and :data:`LAZY_MODULES`; returns their names. An import
    error propagates as is (its message is what the admin needs to see)."""
    import shared

    names = [m.name for m in pkgutil.walk_packages(shared.__path__, "shared.")] + list(LAZY_MODULES)
    for name in names:
        importlib.import_module(name)
    return names


def self_check(
    runbook: str,
    argv: Optional[Sequence[str]],
    *,
    credential: Any = None,
    gateway_factory: Optional[Callable[[Any], Any]] = None,
    out: Callable[[str], None] = print,
) -> int:
    """Run the checks; prints one line; returns 0 (passed) or 1 (failed)."""
    step = "importing modules"
    try:
        modules = import_everything()
        from shared.automation.output import with_secrets
        from shared.azure.auth import get_credential
        from shared.sections import check_settings_document
        from shared.settings import load_settings

        step = "reading the settings"
        parser = RunbookArgumentParser(prog=runbook, add_help=False, allow_abbrev=False)
        parser.add_argument(FLAG, action="store_true")
        parser.add_argument("--settings")
        parser.add_argument("--settings-b64")
        args, _ = parser.parse_known_args(flatten_argv(list(sys.argv[1:] if argv is None else argv)))
        settings = load_settings(args.settings, args.settings_b64)
        step = "reading the secret settings from Key Vault"
        stored = len((settings.raw.get("secrets") or {}).get("stored") or ())
        settings = with_secrets(settings, credential)
        step = "validating the settings"
        check_settings_document(dict(settings.raw))
        step = "obtaining an ARM token with the managed identity"
        cred, who = get_credential(settings.identity.client_id, credential=credential)
        cred.get_token(ARM_SCOPE)
        step = "reading the scope's workspaces"
        from shared.azure.ml_gateway import AzureMLGateway

        gateway = (gateway_factory or AzureMLGateway)(cred)
        subscription = settings.scope.subscriptions[0]
        group = settings.scope.resource_groups[0] if settings.scope.resource_groups else None
        workspaces = gateway.list_workspaces(subscription, group)
    except Exception as exc:  # the check reports any failure as one line, with the exception's own words
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip().splitlines()[-1]
        out(f"{FAILED} {runbook}: {step}: {detail}")
        return 1
    where = f"{subscription}/{group}" if group else subscription
    secrets = f"{stored} secret(s) from Key Vault; " if stored else ""
    out(
        f"{PASSED} {runbook}: {len(modules)} modules imported; settings valid; {secrets}ARM token for {who}; "
        f"{len(workspaces)} workspace(s) readable in {where}; nothing posted or changed"
    )
    return 0
