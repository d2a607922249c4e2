"""Create an Azure ML compute instance on request, within policy: allowed sizes, approval for
expensive sizes, a per-user limit, idle shutdown, and owner/cost-centre tags. Idempotent: asking
again for a compute instance that exists changes nothing and says so.

Parameters (any order; several may share one portal box):
  --settings-b64 B64 | --settings FILE_OR_JSON   configuration (settings section "create")
  --workspace-key SUB/RG/WS  or  --subscription SUB --resource-group RG --workspace-name WS
  --name NAME --size VM_SIZE [--idle-minutes N] [--cost-center CC]
  --user-object-id GUID --user-tenant-id GUID   the user the compute instance is assigned to
  --requester UPN [--owner UPN] [--approver UPN_OR_OBJECT_ID]
  --request-b64 B64 | the webhook's envelope (RequestBody, armoured {"b64": ...} or plain) |
  --webhook-data JSON | --request JSON (local command line only: Automation splits values on whitespace)
                                 instead of the above: the Teams flow's response body (identity
                                 from its responder, never from card inputs)
  --dry-run                      check everything, create nothing
  --summary-file PATH            also write the JSON summary to a file
  --self-check                   read-only proof that the runbook can run here (publish.py starts it)
Exit code: 0 decided (created, already exists, needs approval, rejected: see the summary),
1 Azure refused or did not finish the creation, 2 bad parameters or settings.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import datetime
from typing import Any, Optional, Sequence

try:
    import shared  # noqa: F401  (installed as a package in Azure Automation)
except ImportError:  # run from a checkout: python runbooks/create_compute_instance.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from shared.automation.args import RunbookArgumentParser, common_parser, flatten_argv
from shared.automation.output import configure_logging, emit_report, guarded, parse_and_load, usage_failure
from shared.automation.webhook import add_request_arguments, split_argv
from shared.azure.auth import get_credential
from shared.azure.ml_gateway import AzureMLGateway, MLGateway
from shared.create.request import RequestError
from shared.create.run import RUNBOOK, answer_unusable_request, request_from_args, run_create
from shared.errors import SettingsError, UsageError
from shared.sections import CreateSection

log = logging.getLogger("ci_governance." + RUNBOOK)


def build_parser() -> RunbookArgumentParser:
    """The runbook's parameters (shared ones from common_parser)."""
    parser = common_parser(RUNBOOK, "Create an Azure ML compute instance within policy.")
    parser.add_argument("--workspace-key", help="subscriptionId/resourceGroup/workspaceName")
    parser.add_argument("--workspace-name", help="the workspace (with --subscription and --resource-group)")
    parser.add_argument("--name", help="compute instance name")
    parser.add_argument("--size", help="VM size, e.g. Standard_DS3_v2")
    parser.add_argument("--user-object-id", help="Entra object id of the user the compute instance is assigned to")
    parser.add_argument("--user-tenant-id", help="Entra tenant id of that user")
    parser.add_argument("--idle-minutes", type=int, help="idle shutdown after N minutes (default: create.default_idle_minutes)")
    parser.add_argument("--requester", help="who asked (UPN)")
    parser.add_argument("--owner", help="owner tag (UPN); default: the requester")
    parser.add_argument("--approver", help="who approved a size that needs approval (UPN or object id)")
    parser.add_argument("--cost-center", help="cost centre tag value")
    add_request_arguments(parser)
    return parser


@guarded(RUNBOOK)
def main(
    argv: Optional[Sequence[str]] = None, *, credential: Any = None, now: Optional[datetime] = None, gateway: Optional[MLGateway] = None, **run_kwargs: Any
) -> int:
    """Handle one creation request; returns the process exit code. A request from Teams is answered in Teams."""
    configure_logging()
    try:
        # A webhook's WebhookData arrives as a positional JSON value: set it apart before argparse.
        loose, rest = split_argv(flatten_argv(list(sys.argv[1:] if argv is None else argv)))
        args, settings = parse_and_load(build_parser(), rest, credential=credential)
        section = settings.section("create", CreateSection)
    except (UsageError, SettingsError, ValueError) as exc:
        return usage_failure(str(exc), RUNBOOK)
    from_teams = bool(loose) or any(getattr(args, f) is not None for f in ("request", "request_b64", "webhook_data"))
    try:
        request = request_from_args(args, loose, settings, section)
    except (UsageError, RequestError, ValueError) as exc:
        if from_teams:
            answer_unusable_request(args, loose, settings, section, exc, run_kwargs.get("session"))
        return usage_failure(str(exc), RUNBOOK)
    log.info(
        "Create request%s: %s in %s, size %s, for %s (requested by %s)",
        " (DRY RUN)" if args.dry_run else "",
        request.name,
        request.workspace.key,
        request.size,
        request.user_object_id,
        request.requester,
    )
    if gateway is None:
        cred, who = get_credential(settings.identity.client_id, credential=credential)
        log.info("Signed in with %s", who)
        gateway = AzureMLGateway(cred, polling_interval=section.polling_interval_seconds)
    report = run_create(gateway, request, settings, now=now, dry_run=args.dry_run, answer=from_teams, **run_kwargs)
    emit_report(report, args.summary_file)
    return report.exit_code




if __name__ == "__main__":
    sys.exit(main())
