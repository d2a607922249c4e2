"""Credential selection, and which workspaces are in scope."""

from __future__ import annotations

import pytest

from shared.azure.auth import get_credential, in_azure_automation
from shared.models import WorkspaceRef
from shared.settings import Scope, workspace_in_scope

AUTOMATION = {"IDENTITY_ENDPOINT": "http://127.0.0.1:40342/metadata/identity/oauth2/token", "IDENTITY_HEADER": "secret"}


def test_injected_credential_wins_everywhere():
    sentinel = object()
    cred, who = get_credential("client-id", credential=sentinel, environ=AUTOMATION)
    assert cred is sentinel and who.startswith("injected")


def test_system_assigned_identity_inside_automation():
    from azure.identity import ManagedIdentityCredential

    assert in_azure_automation(AUTOMATION) and not in_azure_automation({"IDENTITY_ENDPOINT": "x"})
    cred, who = get_credential(None, environ=AUTOMATION)
    assert isinstance(cred, ManagedIdentityCredential) and "system-assigned" in who


def test_user_assigned_identity_inside_automation_is_named_in_the_log_line():
    from azure.identity import ManagedIdentityCredential

    cred, who = get_credential("0000-client", environ=AUTOMATION)
    assert isinstance(cred, ManagedIdentityCredential) and "user-assigned" in who and "0000-client" in who


def test_default_credential_outside_automation():
    from azure.identity import DefaultAzureCredential

    cred, who = get_credential(None, environ={})
    assert isinstance(cred, DefaultAzureCredential) and "outside Azure Automation" in who


WS = WorkspaceRef("sub", "rg-ML", "mlw-Vision")


@pytest.mark.parametrize(
    "scope, expected",
    [
        (Scope(), True),
        (Scope(resource_groups=("RG-ml",)), True),  # case-insensitive
        (Scope(resource_groups=("rg-other",)), False),
        (Scope(include_workspaces=("mlw-*",)), True),
        (Scope(include_workspaces=("rg-ml/MLW-VISION",)), True),
        (Scope(include_workspaces=("mlw-nlp",)), False),
        (Scope(exclude_workspaces=("*vision",)), False),
        (Scope(include_workspaces=("mlw-*",), exclude_workspaces=("mlw-vision",)), False),  # deny wins
        (Scope(exclude_workspaces=("other/mlw-vision",)), True),
    ],
)
def test_workspace_in_scope(scope, expected):
    assert workspace_in_scope(WS, scope) is expected
