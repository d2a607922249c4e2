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
from typing import List, Tuple

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


def role_guidance(account: AccountInfo, scopes: List[str]) -> List[str]:
    """Operator-readable lines: which role on which scope, and the exact ``az`` command to grant it."""
    lines = ["Access the Automation account's managed identity needs on each managed scope:"]
    for role, why in ROLES:
        lines.append(f"  - {role}: {why}")
    principals = account.principal_ids
    if not principals:
        lines.append(f"  ! Automation account {account.name} has no managed identity. Turn on its system-assigned identity")
        lines.append("    (portal: Automation account > Account Settings > Identity), then re-run publish.py for the exact commands:")
        principals = [("managed identity", "<principal-object-id>")]
    for label, principal in principals:
        lines.append(f"  Commands for the {label} ({principal}):")
        for scope in scopes:
            for role, _ in ROLES:
                cmd = [
                    "az",
                    "role",
                    "assignment",
                    "create",
                    "--assignee-object-id",
                    principal,
                    "--assignee-principal-type",
                    "ServicePrincipal",
                    "--role",
                    role,
                    "--scope",
                    scope,
                ]
                lines.append("    " + " ".join(shlex.quote(part) for part in cmd))
    return lines
