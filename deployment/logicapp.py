"""The Teams side as a Logic App (Consumption), deployed by publish.py in the same run as the runbooks (issue 14).

Kept apart from the Automation plan (deployment/plan.py, apply.py) so that both can change independently; cli.py
calls it at three clearly marked points: :func:`begin` before the Automation plan is built (so the workflow's trigger
URL can go into the runbooks' settings), :meth:`TeamsApp.print_plan` with the plan, :meth:`TeamsApp.apply` after it.

What it deploys: ``deployment/logicapp/azuredeploy.json`` (one workflow, ``ci-governance-teams``, and its Teams API
connection) as a resource-group deployment (``Microsoft.Resources/deployments`` PUT, Incremental), through the
Automation client's own ARM pipeline (same credential, retry and logging policies; no extra SDK).

Two routes from the workflow to the runbooks (template parameter ``route``):
- ``webhook`` (default): the answer is POSTed armoured, ``{"b64": base64(JSON)}``, to runbook webhooks owned by the
  Logic App (``ci-governance-teams-<runbook>``). Their URLs exist only at creation, so they are (re)created
  exactly when the workflow is (re)deployed, and go straight into the deployment's secure parameters: never printed.
- ``job``: the workflow starts the runbook with the Automation *Create job* API and its managed identity
  (``--request-b64``); no webhook, no shared secret. The identity needs **Automation Job Operator** on the account
  (printed by publish.py).

Idempotence: the workflow carries a tag with a fingerprint of the template, the non-secret parameters and a digest
of the secret ones; the same fingerprint and healthy webhooks mean nothing to do. The trigger URL survives
redeployments (it changes only when the workflow's access keys are regenerated).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import shlex
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.rest import HttpRequest
from azure.mgmt.automation import models

from deployment.desired import runbook_parameters, split_secrets
from deployment.model import MANAGED_BY_TAG, NAME_PREFIX, ApplyError, PublishError

TEMPLATE_PATH = Path(__file__).resolve().parent / "logicapp" / "azuredeploy.json"
WORKFLOW_API = "2019-05-01"
CONNECTION_API = "2016-06-01"
DEPLOYMENT_API = "2021-04-01"
FINGERPRINT_TAG = "ci-governance-teams-sha256"
DEFAULT_NAME = f"{NAME_PREFIX}-teams"
ROUTES = ("webhook", "job")
# The runbook behind each webhook the workflow posts to (template parameters exemptionWebhookUrl, createWebhookUrl).
WEBHOOK_PARAMETERS = (("exemptionWebhookUrl", "handle_exemption_request"), ("createWebhookUrl", "create_compute_instance"))
WEBHOOK_EXPIRY_DAYS = 365
RENEW_BEFORE = timedelta(days=30)
JOB_ROLE = "Automation Job Operator"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """publish.py options of the Logic App; it is deployed when --teams-group-id and --teams-channel-id are given."""
    g = parser.add_argument_group("Teams Logic App (docs/admin.md, 'Wiring the Teams side')")
    g.add_argument("--teams-group-id", help="team (Microsoft 365 group) id of the channel where cards go; with --teams-channel-id, deploys the Logic App")
    g.add_argument("--teams-channel-id", help="channel id (19:...@thread.tacv2)")
    g.add_argument("--approvers-group-id", default="", help="team of the approvers' channel (default: the channel above)")
    g.add_argument("--approvers-channel-id", default="", help="channel for approval cards (default: the channel above)")
    g.add_argument(
        "--teams-route",
        choices=ROUTES,
        default="webhook",
        help="how the Logic App reaches the runbooks: webhook (default) or job (Create job API, managed identity)",
    )
    g.add_argument("--logic-app-name", default=DEFAULT_NAME, help=f"name of the workflow and of its Teams connection (default {DEFAULT_NAME})")


@dataclass(frozen=True)
class Options:
    subscription: str
    resource_group: str
    account: str
    location: str
    group_id: str
    channel_id: str
    approvers_group_id: str
    approvers_channel_id: str
    route: str
    name: str

    @property
    def account_id(self) -> str:
        return f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}/providers/Microsoft.Automation/automationAccounts/{self.account}"

    @property
    def workflow_path(self) -> str:
        return f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}/providers/Microsoft.Logic/workflows/{self.name}"

    @property
    def connection_path(self) -> str:
        return f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}/providers/Microsoft.Web/connections/{self.name}"

    @property
    def deployment_path(self) -> str:
        return f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}/providers/Microsoft.Resources/deployments/{self.name}"

    def webhook_name(self, runbook: str) -> str:
        return f"{self.name}-{runbook}"


def options_from_args(args: argparse.Namespace, location: str) -> Optional[Options]:
    """The Logic App options, or None when publish.py was not asked to deploy it."""
    group, channel = getattr(args, "teams_group_id", None), getattr(args, "teams_channel_id", None)
    if not group and not channel:
        return None
    if not (group and channel):
        raise PublishError("Give both --teams-group-id and --teams-channel-id to deploy the Teams Logic App (or neither).")
    if bool(args.approvers_group_id) != bool(args.approvers_channel_id):
        raise PublishError("Give both --approvers-group-id and --approvers-channel-id (or neither: approvals go to the same channel).")
    return Options(
        args.subscription, args.resource_group, args.automation_account, location, group, channel,
        args.approvers_group_id, args.approvers_channel_id, args.teams_route, args.logic_app_name,
    )  # fmt: skip


# -- ARM through the Automation client's pipeline ---------------------------------------------------------------


class Arm:
    """Plain ARM REST calls through an azure-mgmt client's own pipeline (its credential and policies)."""

    def __init__(self, client: Any):
        self._pipeline = client._client  # the ARMPipelineClient every generated azure-mgmt client holds

    def call(self, method: str, path: str, api_version: str, body: Any = None) -> Tuple[int, Any]:
        request = HttpRequest(method, f"https://management.azure.com{path}", params={"api-version": api_version}, json=body)
        response = self._pipeline.send_request(request)
        try:
            data = response.json() if response.text() else None
        except ValueError:
            data = response.text()
        if response.status_code == 404:
            raise ResourceNotFoundError(response=response)
        if response.status_code >= 400:
            message = (data or {}).get("error", {}).get("message") if isinstance(data, dict) else str(data)
            raise HttpResponseError(message=f"{method} {path}: {response.status_code} {message}", response=response)
        return response.status_code, data


# -- desired / observed ------------------------------------------------------------------------------------------


def load_template() -> Dict[str, Any]:
    return json.loads(TEMPLATE_PATH.read_text(encoding="utf-8"))


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode("utf-8")).hexdigest()


@dataclass
class Desired:
    template: Dict[str, Any]
    parameters: Dict[str, Any]  # non-secret deployment parameters
    secret_digest: str  # what the secret parameters depend on (the settings, for the job route)
    webhook_parameters: Dict[str, str]  # the Logic App's webhooks' own job parameters (webhook route)

    @property
    def fingerprint(self) -> str:
        return _digest([self.template, self.parameters, self.secret_digest])[:32]


def build_desired(opts: Options, settings: dict, encode: Callable[[dict], str]) -> Desired:
    params = {
        "workflowName": opts.name,
        "connectionName": opts.name,
        "location": opts.location,
        "teamsGroupId": opts.group_id,
        "teamsChannelId": opts.channel_id,
        "approversGroupId": opts.approvers_group_id,
        "approversChannelId": opts.approvers_channel_id,
        "route": opts.route,
        "automationAccountId": opts.account_id if opts.route == "job" else "",
    }
    secret = _digest(encode(settings)) if opts.route == "job" else ""
    # The Logic App's webhooks carry what every job gets: the settings without their secrets (Key Vault).
    return Desired(load_template(), params, secret, runbook_parameters(split_secrets(settings)[0]))


@dataclass
class ObservedWebhook:
    name: str
    runbook: str
    expiry: Optional[datetime]
    parameters: Dict[str, str]


@dataclass
class Observed:
    exists: bool = False
    fingerprint: Optional[str] = None
    principal_id: Optional[str] = None
    callback_url: Optional[str] = None
    connection_status: Optional[str] = None
    webhooks: Dict[str, ObservedWebhook] = field(default_factory=dict)


def observe(arm: Arm, client: Any, opts: Options) -> Observed:
    """GETs only (listCallbackUrl is a POST that reads): the workflow, its trigger URL, the connection, our webhooks."""
    seen = Observed()
    try:
        _, wf = arm.call("GET", opts.workflow_path, WORKFLOW_API)
    except ResourceNotFoundError:
        wf = None
    if wf:
        seen.exists = True
        seen.fingerprint = (wf.get("tags") or {}).get(FINGERPRINT_TAG)
        seen.principal_id = (wf.get("identity") or {}).get("principalId")
        _, cb = arm.call("POST", opts.workflow_path + "/triggers/manual/listCallbackUrl", WORKFLOW_API)
        seen.callback_url = (cb or {}).get("value")
        try:
            _, conn = arm.call("GET", opts.connection_path, CONNECTION_API)
            statuses = (conn.get("properties") or {}).get("statuses") or [{}]
            seen.connection_status = statuses[0].get("status")
        except ResourceNotFoundError:
            seen.connection_status = None
    if opts.route == "webhook":
        for wh in client.webhook.list_by_automation_account(opts.resource_group, opts.account):
            if wh.name.lower().startswith(opts.name.lower() + "-"):
                props = wh.properties
                seen.webhooks[wh.name.lower()] = ObservedWebhook(
                    wh.name, props.runbook.name if props.runbook else "", props.expiry_time, dict(props.parameters or {})
                )
    return seen


# -- plan ----------------------------------------------------------------------------------------------------------


@dataclass
class Plan:
    deploy: Optional[str] = None  # why, or None
    recreate_webhooks: List[Tuple[str, str, str]] = field(default_factory=list)  # (name, runbook, why)
    update_webhooks: List[str] = field(default_factory=list)
    unchanged: List[str] = field(default_factory=list)

    @property
    def changes(self) -> int:
        return (1 if self.deploy else 0) + len(self.recreate_webhooks) + len(self.update_webhooks)

    def lines(self) -> List[str]:
        out = [f"  + recreate webhook {name} for {runbook} ({why}; its URL goes only into the Logic App)" for name, runbook, why in self.recreate_webhooks]
        out += [f"  ~ update webhook parameters of {name} (settings changed; the URL stays valid)" for name in self.update_webhooks]
        if self.deploy:
            out.append(f"  ~ deploy the Teams Logic App (ARM deployment of deployment/logicapp/azuredeploy.json: {self.deploy})")
        out += [f"  = unchanged: {item}" for item in self.unchanged]
        return out


def make_plan(opts: Options, desired: Desired, observed: Observed, now: datetime) -> Plan:
    plan = Plan()
    if opts.route == "webhook":
        for _, runbook in WEBHOOK_PARAMETERS:
            name = opts.webhook_name(runbook)
            current = observed.webhooks.get(name.lower())
            why = None
            if current is None:
                why = "missing"
            elif current.expiry is not None and current.expiry - now < RENEW_BEFORE:
                why = f"expires {current.expiry:%Y-%m-%d}"
            elif current.runbook.lower() != runbook.lower():
                why = f"points to {current.runbook}"
            elif not observed.exists or observed.fingerprint != desired.fingerprint:
                why = "the workflow is redeployed and needs the URL, which Azure shows only at creation"
            if why:
                plan.recreate_webhooks.append((name, runbook, why))
            elif current is not None and current.parameters != desired.webhook_parameters:
                plan.update_webhooks.append(name)
            else:
                plan.unchanged.append(f"webhook {name}")
    if not observed.exists:
        plan.deploy = "new"
    elif observed.fingerprint != desired.fingerprint:
        plan.deploy = "template or parameters changed"
    elif plan.recreate_webhooks:
        plan.deploy = "new webhook URLs"
    else:
        plan.unchanged.append(f"Teams Logic App {opts.name} (fingerprint {desired.fingerprint[:12]})")
    return plan


# -- apply ---------------------------------------------------------------------------------------------------------


def deploy(arm: Arm, opts: Options, desired: Desired, secure: Dict[str, str], sleep: Callable[[float], None], poll_seconds: float = 5.0) -> None:
    """PUT the resource-group deployment (Incremental) and wait until it ends; raises ApplyError when it fails."""
    params = {**desired.parameters, **secure, "tags": {MANAGED_BY_TAG[0]: MANAGED_BY_TAG[1], FINGERPRINT_TAG: desired.fingerprint}}
    body = {"properties": {"mode": "Incremental", "template": desired.template, "parameters": {k: {"value": v} for k, v in params.items()}}}
    _, result = arm.call("PUT", opts.deployment_path, DEPLOYMENT_API, body)
    for _ in range(360):
        state = ((result or {}).get("properties") or {}).get("provisioningState")
        if state == "Succeeded":
            return
        if state in ("Failed", "Canceled"):
            error = ((result or {}).get("properties") or {}).get("error") or {}
            raise ApplyError(f"The Logic App deployment {opts.name} ended {state}: {error.get('message') or error}")
        sleep(poll_seconds)
        _, result = arm.call("GET", opts.deployment_path, DEPLOYMENT_API)
    raise ApplyError(f"The Logic App deployment {opts.name} did not finish in 30 minutes; see Deployments in the resource group.")


def _create_webhook(client: Any, opts: Options, name: str, runbook: str, parameters: Dict[str, str], now: datetime) -> str:
    raw = client.webhook.generate_uri(opts.resource_group, opts.account)
    uri = json.loads(raw) if raw.startswith('"') else raw
    with contextlib.suppress(ResourceNotFoundError):  # a webhook's URL cannot be changed: replace the webhook
        client.webhook.delete(opts.resource_group, opts.account, name)
    client.webhook.create_or_update(
        opts.resource_group,
        opts.account,
        name,
        models.WebhookCreateOrUpdateParameters(
            name=name,
            properties=models.WebhookCreateOrUpdateProperties(
                is_enabled=True,
                uri=uri,
                expiry_time=(now + timedelta(days=WEBHOOK_EXPIRY_DAYS)).replace(microsecond=0),
                parameters=dict(parameters),
                runbook=models.RunbookAssociationProperty(name=runbook),
            ),
        ),
    )
    return uri


def portal_link(opts: Options, tenant: str = "") -> str:
    """Where the admin authorizes the Teams connection (portal: API connection > Edit API connection > Authorize)."""
    return f"https://portal.azure.com/#{('@' + tenant) if tenant else ''}resource{opts.connection_path}/edit"


@dataclass
class TeamsApp:
    """One publish run's Logic App work: state read before the Automation plan, applied after it."""

    opts: Options
    arm: Arm
    client: Any
    settings: dict
    encode: Callable[[dict], str]
    observed: Observed
    now: Callable[[], datetime]
    sleep: Callable[[float], None]
    bootstrapped: bool = False

    @property
    def desired(self) -> Desired:
        return build_desired(self.opts, self.settings, self.encode)

    def plan(self) -> Plan:
        return make_plan(self.opts, self.desired, self.observed, self.now())

    def print_plan(self, out: Callable[[str], None]) -> None:
        plan = self.plan()
        url = (
            "wired into the runbooks' settings (teams.workflow_url)"
            if self.observed.callback_url
            else "read back after the first deployment and wired into the settings"
        )
        out(f"Teams Logic App {self.opts.name} (route {self.opts.route}; trigger URL {url}): {plan.changes} change(s)")
        for line in plan.lines():
            out(line)
        for line in self.guidance():
            out(line)

    def guidance(self) -> List[str]:
        lines = []
        if self.opts.route == "job":
            principal = self.observed.principal_id or "<the Logic App's principal id, printed after the first deployment>"
            cmd = ["az", "role", "assignment", "create", "--assignee-object-id", principal, "--assignee-principal-type", "ServicePrincipal",
                   "--role", JOB_ROLE, "--scope", self.opts.account_id]  # fmt: skip
            lines.append(f"  The Logic App's managed identity needs '{JOB_ROLE}' on the Automation account (it starts runbook jobs):")
            lines.append("    " + " ".join(shlex.quote(p) for p in cmd))
        if self.observed.connection_status != "Connected":
            lines.append("  ! One manual step left: authorize the Teams connection (sign in once with the account that posts the cards):")
            lines.append(f"    {portal_link(self.opts)}  (Edit API connection > Authorize > Save)")
            lines.append("    then add the Workflows app to the team of the channel.")
        return lines

    @property
    def has_work(self) -> bool:
        return self.plan().changes > 0 or self.observed.connection_status != "Connected"

    def bootstrap(self, out: Callable[[str], None]) -> None:
        """First deployment only: deploy the workflow without runbook URLs, to learn its trigger URL for the settings."""
        out(f"Teams Logic App {self.opts.name} does not exist: deploying it first, to wire its trigger URL into the runbooks' settings")
        desired = build_desired(self.opts, self.settings, self.encode)
        deploy(self.arm, self.opts, Desired(desired.template, desired.parameters, "bootstrap", desired.webhook_parameters), {}, self.sleep)
        self.observed = observe(self.arm, self.client, self.opts)
        self.bootstrapped = True
        self._wire_url()

    def _wire_url(self) -> None:
        if self.observed.callback_url:
            teams = dict(self.settings.get("teams") or {})
            teams["workflow_url"] = self.observed.callback_url
            self.settings = {**self.settings, "teams": teams}

    def apply(self, out: Callable[[str], None]) -> None:
        plan = self.plan()
        desired = self.desired
        secure: Dict[str, str] = {}
        now = self.now()
        try:
            for name, runbook, why in plan.recreate_webhooks:
                param = next(p for p, rb in WEBHOOK_PARAMETERS if rb == runbook)
                secure[param] = _create_webhook(self.client, self.opts, name, runbook, desired.webhook_parameters, now)
                out(f"  done: webhook {name} for {runbook} ({why}); URL passed to the Logic App only")
            for name in plan.update_webhooks:
                self.client.webhook.update(
                    self.opts.resource_group, self.opts.account, name,
                    models.WebhookUpdateParameters(name=name, properties=models.WebhookUpdateProperties(parameters=dict(desired.webhook_parameters))),
                )  # fmt: skip
                out(f"  done: webhook parameters of {name}")
            if plan.deploy:
                if self.opts.route == "job":
                    secure["runbookSettingsB64"] = self.encode(self.settings)
                elif len(secure) < len(WEBHOOK_PARAMETERS):
                    raise ApplyError("The Logic App must be redeployed but its webhook URLs are unknown; re-run publish.py (it recreates them).")
                deploy(self.arm, self.opts, desired, secure, self.sleep)
                out(f"  done: Teams Logic App {self.opts.name} deployed ({plan.deploy})")
        except HttpResponseError as exc:
            raise ApplyError(
                f"Deploying the Teams Logic App failed: Azure answered {exc.status_code}: {exc.message}\n  Fix the cause and re-run publish.py."
            ) from exc
        self.observed = observe(self.arm, self.client, self.opts)
        out(f"Teams Logic App {self.opts.name}: trigger URL wired into teams.workflow_url of the runbooks' settings")
        for line in self.guidance():
            out(line)


def begin(args: argparse.Namespace, client: Any, settings: dict, location: str, encode: Callable[[dict], str],
          now: Callable[[], datetime], sleep: Callable[[float], None], out: Callable[[str], None]) -> Optional[TeamsApp]:  # fmt: skip
    """Read the Logic App before the Automation plan and put its trigger URL in ``settings`` (``app.settings``).
    On a first real run the workflow is deployed first, so that its URL exists; a dry run only says it will."""
    opts = options_from_args(args, location)
    if opts is None:
        return None
    arm = Arm(client)
    app = TeamsApp(opts, arm, client, settings, encode, observe(arm, client, opts), now, sleep)
    app._wire_url()
    if not app.observed.exists and not args.dry_run:
        app.bootstrap(out)
    return app
