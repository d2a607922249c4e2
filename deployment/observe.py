"""Read the current state of the Automation account (GET requests only)."""

from __future__ import annotations

from enum import Enum
from typing import Any, Dict, Optional

from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError

from deployment.model import (
    AccountInfo,
    Desired,
    Observed,
    ObservedEnvironment,
    ObservedJobSchedule,
    ObservedPackage,
    ObservedRunbook,
    ObservedSchedule,
    ObservedWebhook,
    PublishError,
)


def _text(value: Any) -> Optional[str]:
    """SDK enums are str subclasses; return their plain value."""
    if value is None:
        return None
    return value.value if isinstance(value, Enum) else str(value)


def read_account(client: Any, subscription: str, resource_group: str, account: str) -> AccountInfo:
    """The Automation account, or a :class:`PublishError` saying what to check."""
    try:
        acct = client.automation_account.get(resource_group, account)
    except ResourceNotFoundError as exc:
        code = exc.error.code if exc.error else "NotFound"
        raise PublishError(
            f"Automation account '{account}' was not found in resource group '{resource_group}' of subscription {subscription} ({code}).\n"
            "publish.py deploys into an existing account and does not create one. Check the names and the subscription, and that you are "
            f"signed in to the right tenant:\n  az automation account show --subscription {subscription} --resource-group {resource_group} --name {account}"
        ) from exc
    except ClientAuthenticationError as exc:
        raise PublishError(
            f"Could not authenticate to Azure ({exc.message}). Sign in with 'az login' or set the AZURE_* variables for a service principal."
        ) from exc
    except HttpResponseError as exc:
        if exc.status_code == 403:
            raise PublishError(
                f"Access to Automation account '{account}' was denied: you need at least 'Automation Contributor' on it ({exc.message})."
            ) from exc
        raise
    principals = []
    identity = acct.identity
    if identity is not None:
        if identity.principal_id:
            principals.append(("system-assigned identity", identity.principal_id))
        for resource_id, uai in (identity.user_assigned_identities or {}).items():
            if uai.principal_id:
                principals.append((f"user-assigned identity {resource_id.rsplit('/', 1)[-1]}", uai.principal_id))
    return AccountInfo(name=acct.name, location=acct.location, identity_type=_text(identity.type) if identity else None, principal_ids=principals)


def read_state(client: Any, resource_group: str, account: str, info: AccountInfo, desired: Desired, secret_store: Any = None) -> Observed:
    """Everything the planner compares: environments (ours with packages), runbooks, schedules, links,
    webhooks, and the current values of the secrets in Key Vault (compared, never printed)."""
    observed = Observed(account=info)
    for secret in desired.secrets:
        observed.secrets[secret.name] = secret_store.get(secret.name) if secret_store is not None else None
    prefix = desired.environment_prefix.lower() + "-"
    for env in client.runtime_environments.list_by_automation_account(resource_group, account):
        runtime = env.properties.runtime if env.properties else None
        packages: Dict[str, ObservedPackage] = {}
        if env.name.lower().startswith(prefix):
            for pkg in client.package.list_by_runtime_environment(resource_group, account, env.name):
                props = pkg.properties
                error = props.error.message if props and props.error and props.error.message else None
                packages[pkg.name.lower()] = ObservedPackage(
                    pkg.name, props.version if props else None, (_text(props.provisioning_state) or "Unknown") if props else "Unknown", error
                )
        observed.environments[env.name.lower()] = ObservedEnvironment(
            env.name, runtime.language if runtime else None, runtime.version if runtime else None, dict(env.tags or {}), packages
        )

    listed = {rb.name.lower(): rb for rb in client.runbook.list_by_automation_account(resource_group, account)}
    for rb in desired.runbooks:
        if rb.name.lower() in listed:
            # A GET per runbook of ours: list responses need not carry tags (listRunbooksByAutomationAccount.json has none).
            listed[rb.name.lower()] = client.runbook.get(resource_group, account, rb.name)
    for key, rb in listed.items():
        props = rb.properties
        observed.runbooks[key] = ObservedRunbook(
            rb.name,
            _text(props.runbook_type) if props else None,
            props.runtime_environment if props else None,
            _text(props.state) if props else None,
            dict(rb.tags or {}),
        )

    for sch in client.schedule.list_by_automation_account(resource_group, account):
        props = sch.properties
        observed.schedules[sch.name.lower()] = ObservedSchedule(
            sch.name, (props.description or "") if props else "", bool(props.is_enabled) if props else False
        )
    for js in client.job_schedule.list_by_automation_account(resource_group, account):
        props = js.properties
        observed.job_schedules.append(
            ObservedJobSchedule(props.job_schedule_id or js.name, props.schedule.name, props.runbook.name, dict(props.parameters or {}))
        )
    for wh in client.webhook.list_by_automation_account(resource_group, account):
        props = wh.properties
        observed.webhooks[wh.name.lower()] = ObservedWebhook(
            wh.name, props.runbook.name if props.runbook else "", props.expiry_time, bool(props.is_enabled), dict(props.parameters or {})
        )
    return observed
