"""Create an Azure ML compute instance on request, within policy: allowed sizes, approval for
expensive sizes, a per-user limit, idle shutdown, and owner/cost-centre tags. Idempotent: asking
again for a compute instance that exists changes nothing and says so.

Parameters (any order; several may share one portal box):
  --settings-b64 B64 | --settings FILE_OR_JSON   configuration (settings section "create")
  --workspace-key SUB/RG/WS  or  --subscription SUB --resource-group RG --workspace-name WS
  --name NAME --size VM_SIZE [--idle-minutes N] [--cost-center CC]
  --user-object-id GUID --user-tenant-id GUID   the user the compute instance is assigned to
  --requester UPN [--owner UPN] [--approver UPN_OR_OBJECT_ID]
  --request JSON | --request-b64 B64 | --webhook-data JSON | WebhookData in any positional value
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
from typing import Any, Optional, Sequence, Tuple

try:
    import shared  # noqa: F401  (installed as a package in Azure Automation)
except ImportError:  # run from a checkout: python runbooks/create_compute_instance.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from shared.automation.args import RunbookArgumentParser, common_parser, flatten_argv
from shared.automation.output import configure_logging, emit_report, parse_and_load, usage_failure
from shared.automation.selfcheck import requested, self_check
from shared.automation.webhook import SOURCE_DIRECT, add_request_arguments, extract_request, split_argv
from shared.azure.auth import get_credential
from shared.azure.ml_gateway import AzureMLGateway
from shared.create.policy import CreateRequest
from shared.create.request import RequestError, approval_from_parameter, parse_workspace_key, request_from_teams
from shared.create.run import RUNBOOK, run_create
from shared.errors import SettingsError, UsageError
from shared.exemption.policy import check_shared_secret
from shared.models import WorkspaceRef
from shared.sections import CreateSection
from shared.settings import Settings

log = logging.getLogger("ci_governance." + RUNBOOK)

_FIELD_FLAGS = (
    "name",
    "size",
    "user_object_id",
    "user_tenant_id",
    "requester",
    "owner",
    "approver",
    "cost_center",
    "idle_minutes",
    "workspace_key",
    "workspace_name",
)


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


def request_from_args(args: Any, loose: Sequence[Tuple[str, str]], settings: Settings, section: CreateSection) -> CreateRequest:
    """The request the parameters describe; raises UsageError, RequestError or WebhookInputError.

    ``loose`` holds JSON values found among the positional parameters (a webhook's WebhookData).
    """
    if loose or args.request is not None or args.request_b64 is not None or args.webhook_data is not None:
        given = [f"--{f.replace('_', '-')}" for f in _FIELD_FLAGS if getattr(args, f) is not None]
        if given:
            raise UsageError(f"a Teams request carries the whole request; do not combine it with {', '.join(given)}")
        inbound = extract_request(loose, webhook_data=args.webhook_data, request=args.request, request_b64=args.request_b64)
        if inbound.source != SOURCE_DIRECT:  # anyone holding the webhook URL can post: check the secret
            problem = check_shared_secret(inbound.headers, section.require_shared_secret, settings.teams.shared_secret)
            if problem:
                raise RequestError([problem])
        log.info("Request from %s (%s)", inbound.origin, inbound.source)
        return request_from_teams(inbound.body)
    missing = [f"--{f.replace('_', '-')}" for f in ("name", "size", "user_object_id", "user_tenant_id", "requester") if not getattr(args, f)]
    if missing:
        raise UsageError(f"missing {', '.join(missing)} (or pass the Teams body with --request)")
    return CreateRequest(
        workspace=_workspace(args),
        name=args.name.strip(),
        size=args.size.strip(),
        user_object_id=args.user_object_id.strip().lower(),
        user_tenant_id=args.user_tenant_id.strip().lower(),
        requester=args.requester.strip(),
        owner=(args.owner or "").strip(),
        cost_center=(args.cost_center or "").strip(),
        idle_minutes=args.idle_minutes,
        approval=approval_from_parameter(args.approver),
    )


def _workspace(args: Any) -> WorkspaceRef:
    if args.workspace_key:
        if args.workspace_name:
            raise UsageError("give the workspace once: --workspace-key or --workspace-name with --subscription/--resource-group")
        try:
            return parse_workspace_key(args.workspace_key)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    subs, rgs = args.subscription or [], args.resource_group or []
    if not args.workspace_name or len(subs) != 1 or len(rgs) != 1:
        raise UsageError("name the workspace: --workspace-key SUB/RG/WS, or --subscription, --resource-group and --workspace-name once each")
    return parse_workspace_key(f"{subs[0]}/{rgs[0]}/{args.workspace_name}")


def main(argv: Optional[Sequence[str]] = None, *, credential: Any = None, now: Optional[datetime] = None, gateway: Any = None, **run_kwargs: Any) -> int:
    """Handle one creation request; returns the process exit code."""
    if requested(argv):  # read-only proof that the runbook can run here (publish.py starts it)
        return self_check(RUNBOOK, argv, credential=credential, gateway_factory=(lambda _cred: gateway) if gateway else None)
    configure_logging()
    try:
        # A webhook's WebhookData arrives as a positional JSON value: set it apart before argparse.
        loose, rest = split_argv(flatten_argv(list(sys.argv[1:] if argv is None else argv)))
        args, settings = parse_and_load(build_parser(), rest, credential=credential)
        section = settings.section("create", CreateSection)
        request = request_from_args(args, loose, settings, section)
    except (UsageError, SettingsError, RequestError, ValueError) as exc:
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
    report = run_create(gateway, request, settings, now=now, dry_run=args.dry_run, **run_kwargs)
    emit_report(report, args.summary_file)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
