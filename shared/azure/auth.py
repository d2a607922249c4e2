"""Which credential to use: the Automation account's managed identity in Azure, the developer's
own sign-in elsewhere, or one injected by the caller (the tests and the sandbox)."""

from __future__ import annotations

import logging
import os
from typing import Any, Mapping, Optional, Tuple

log = logging.getLogger(__name__)


def in_azure_automation(environ: Mapping[str, str] = os.environ) -> bool:
    """True inside an Azure Automation (or other App Service-style) managed-identity sandbox."""
    return bool(environ.get("IDENTITY_ENDPOINT") and environ.get("IDENTITY_HEADER"))


def get_credential(client_id: Optional[str] = None, *, credential: Any = None, environ: Mapping[str, str] = os.environ) -> Tuple[Any, str]:
    """Return ``(credential, description)``; the description is safe to log.

    - an injected ``credential`` wins (tests, sandbox);
    - inside Azure Automation: ``ManagedIdentityCredential``, system-assigned, or user-assigned
      when ``client_id`` is set (azure-identity uses its App Service path for the sandbox's
      IDENTITY_ENDPOINT/IDENTITY_HEADER);
    - elsewhere: ``DefaultAzureCredential`` (Azure CLI sign-in, environment, ...).
    """
    if credential is not None:
        return credential, f"injected credential ({type(credential).__name__})"
    if in_azure_automation(environ):
        from azure.identity import ManagedIdentityCredential

        if client_id:
            return ManagedIdentityCredential(client_id=client_id), f"user-assigned managed identity (client id {client_id})"
        return ManagedIdentityCredential(), "system-assigned managed identity of the Automation account"
    from azure.identity import DefaultAzureCredential

    if client_id:
        return DefaultAzureCredential(managed_identity_client_id=client_id), f"DefaultAzureCredential (managed identity client id {client_id})"
    return DefaultAzureCredential(), "DefaultAzureCredential (outside Azure Automation)"
