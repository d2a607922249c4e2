"""The Azure roles the Automation account's managed identity needs on each managed scope.

Least privilege among built-in roles (definitions: Learn "Azure built-in roles"; AzureML Compute Operator
is e503ece1-11d0-4e8e-8e2c-7a6c3bf38815 with actions workspaces/computes/* and workspaces/notebooks/vm/*):
- AzureML Compute Operator: read, start, stop and create compute instances (computes/*). It grants no
  Microsoft.MachineLearningServices/workspaces/read, so on its own the runbooks cannot list workspaces;
- Reader: adds the workspace listing (read-only; no data-plane or secret access);
- Tag Contributor: exemption tags are written through the ARM Tags API (Microsoft.Resources/tags/*),
  which a compute write permission does not cover.
A custom role with exactly workspaces/read, workspaces/computes/{read,write,start/action,stop/action}
and Microsoft.Resources/tags/* would be tighter still; it is not built in, so it is not proposed here.
"""

from __future__ import annotations

import shlex
from typing import List, Optional, Tuple
from urllib.parse import urlsplit

from deployment.model import AccountInfo, PublishError

ROLES: Tuple[Tuple[str, str], ...] = (
    ("AzureML Compute Operator", "get, start, stop and create compute instances"),
    ("Reader", "list the Azure ML workspaces (the compute role lacks workspaces/read)"),
    ("Tag Contributor", "write exemption tags on compute instances through the ARM Tags API"),
)


def scopes_from_settings(settings: dict) -> List[str]:
    """ARM scope ids from ``settings["scope"]``; nothing else of the settings is read.

    As the runbooks read it (shared/discovery.py), ``resource_groups`` holds names that narrow every listed
    subscription, so the managed scopes are subscription x resource group, or whole subscriptions.
    """
    scope = settings.get("scope") if isinstance(settings, dict) else None
    if not isinstance(scope, dict):
        raise PublishError('The settings file has no "scope" object ({"scope": {"subscriptions": [...], "resource_groups": [...]}}).')
    subscriptions = [str(s).strip() for s in scope.get("subscriptions") or [] if str(s).strip()]
    groups = [str(g).strip() for g in scope.get("resource_groups") or [] if str(g).strip()]
    if not subscriptions:
        raise PublishError('settings["scope"]["subscriptions"] is empty: the runbooks would manage nothing.')
    bad = [g for g in groups if "/" in g]
    if bad:
        raise PublishError(f'settings["scope"]["resource_groups"] holds resource group names, not ids: {", ".join(bad)}')
    if groups:
        scopes = [f"/subscriptions/{sub}/resourceGroups/{rg}" for sub in subscriptions for rg in groups]
    else:
        scopes = [f"/subscriptions/{sub}" for sub in subscriptions]
    return list(dict.fromkeys(scopes))


KEY_VAULT_ROLE = ("Key Vault Secrets User", "read the secret settings (Teams workflow URLs, shared secret) at the start of each job")


def role_guidance(account: AccountInfo, scopes: List[str], key_vault: Optional[str] = None) -> List[str]:
    """Operator-readable lines: the exact ``az`` command for each role on each scope, each once, with what it is for."""
    lines = ["Roles the Automation account's managed identity needs (grant each once; publish.py does not check them):"]
    principals = account.principal_ids
    if not principals:
        lines.append(f"  ! Automation account {account.name} has no managed identity. Turn on its system-assigned identity")
        lines.append("    (portal: Automation account > Account Settings > Identity), then re-run publish.py for the exact commands:")
        principals = [("managed identity", "<principal-object-id>")]
    grants = [(role, why, scope) for scope in scopes for role, why in ROLES]
    if key_vault:
        host = urlsplit(key_vault).hostname
        vault = host.split(".")[0] if host else key_vault
        grants.append((KEY_VAULT_ROLE[0], KEY_VAULT_ROLE[1], f"$(az keyvault show --name {vault} --query id -o tsv)"))
    for label, principal in principals:
        if len(principals) > 1:
            lines.append(f"  for the {label}:")
        for role, why, scope in grants:
            cmd = ["az", "role", "assignment", "create", "--assignee-object-id", principal, "--assignee-principal-type", "ServicePrincipal", "--role", role]
            scope_arg = scope if scope.startswith("$(") else shlex.quote(scope)
            lines.append("  " + " ".join(shlex.quote(part) for part in cmd) + f" --scope {scope_arg}   # {why}")
    return lines
