"""Exemption request from Teams: record (or cancel) an exemption from the nightly stop on one
compute instance, then answer in Teams.

Started by the Automation webhook that the Teams flow calls (the request arrives in the platform's
whitespace-split envelope, its body armoured as {"b64": ...}; shared/automation/webhook.py), or by
the Automation "Create job" API with --request-b64. See docs/admin.md, "Exemptions from Teams".
The exemption is recorded on the CI's tags, or on its workspace where the CI refuses them.

Parameters (any order; several may share one portal box):
  --settings-b64 B64 | --settings FILE_OR_JSON   configuration (publish.py sets --settings-b64)
  --request-b64 B64              the request body itself (Create job API / Power Automate)
  --webhook-data JSON | --request JSON   the webhook object / the body as JSON (local command line
                                 only: Automation splits parameter values on whitespace)
  --summary-file PATH            also write the JSON summary to a file
  --self-check                   read-only proof that the runbook can run here (publish.py starts it)
Exit code: 0 recorded, cancelled, already recorded or waiting for approval; 1 rejected or failed;
2 unusable parameters. The summary's ``needs_approval`` and ``cost`` say whether the request waits for
an approver (its estimated cost is not below ``exemption.auto_approve_below``) and what it costs.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import datetime
from typing import Any, Optional, Sequence

try:
    import shared  # noqa: F401  (installed as a package in Azure Automation)
except ImportError:  # run from a checkout: python runbooks/handle_exemption_request.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from shared.automation.args import RunbookArgumentParser
from shared.automation.output import configure_logging, emit_report, guarded, parse_and_load, usage_failure
from shared.automation.webhook import WebhookInputError, add_request_arguments, extract_request, split_argv
from shared.azure.auth import get_credential
from shared.azure.ml_gateway import AzureMLGateway, MLGateway
from shared.errors import SettingsError, UsageError
from shared.exemption.policy import load_section
from shared.exemption.run import RUNBOOK, handle_request, price_client, reject_unreadable, tag_writer_for

log = logging.getLogger("ci_governance." + RUNBOOK)


def build_parser() -> RunbookArgumentParser:
    """The runbook's parameters (loose webhook JSON is taken out before parsing)."""
    parser = RunbookArgumentParser(prog=RUNBOOK, description="Record or cancel an exemption requested in Teams.", allow_abbrev=False)
    parser.add_argument("--settings", help="settings: a JSON file path or inline JSON")
    parser.add_argument("--settings-b64", help="settings as base64 JSON (what publish.py sets)")
    add_request_arguments(parser)
    parser.add_argument("--summary-file", help="also write the JSON summary to this file")
    return parser


@guarded(RUNBOOK)
def main(
    argv: Optional[Sequence[str]] = None,
    *,
    credential: Any = None,
    now: Optional[datetime] = None,
    gateway: Optional[MLGateway] = None,
    session: Any = None,
    price_session: Any = None,
) -> int:
    """Handle one request; returns the process exit code.

    ``session`` posts the answer card; ``price_session`` (a ``requests.Session``) looks up prices.
    """
    configure_logging()
    raw = list(sys.argv[1:] if argv is None else argv)
    try:
        loose, rest = split_argv(raw)
        # Without a scope the runbook would write tags in any subscription its identity can reach.
        args, settings = parse_and_load(build_parser(), rest, credential=credential, require_scope=True)
        section = load_section(settings)
        prices = price_client(settings, section, price_session)  # a bad pricing section fails here, before any call
    except (UsageError, SettingsError) as exc:
        return usage_failure(str(exc), RUNBOOK)
    try:
        inbound = extract_request(loose, webhook_data=args.webhook_data, request=args.request, request_b64=args.request_b64)
    except WebhookInputError as exc:
        report = reject_unreadable(str(exc), settings, now=now, session=session)
        emit_report(report, args.summary_file)
        return report.exit_code
    cred, who = get_credential(settings.identity.client_id, credential=credential)
    log.info("Signed in with %s; tags are written with method %s", who, section.tag_write_method)
    gateway = gateway or AzureMLGateway(cred)
    report = handle_request(inbound, settings, section, gateway, tag_writer_for(cred, gateway, section), now=now, session=session, prices=prices)
    emit_report(report, args.summary_file)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
