"""The Key Vault that keeps the secret settings (publish.py's side; the runbooks read with
shared/automation/secrets.py). Key Vault REST, api-version 7.4: GetSecret and SetSecret
(Azure/azure-rest-api-specs specification/keyvault/data-plane/Microsoft.KeyVault/stable/7.4/secrets.json)."""

from __future__ import annotations

from typing import Any, Optional

import requests

from deployment.model import PublishError
from shared.automation.secrets import KEY_VAULT_API_VERSION, KEY_VAULT_SCOPE


class KeyVaultSecrets:
    """Reads and writes secrets of one vault with the publisher's own credential (needs *Key Vault
    Secrets Officer* on the vault). Values are never logged; errors name the secret, not its value."""

    def __init__(self, vault_url: str, credential: Any, session: Optional[requests.Session] = None):
        self.vault = vault_url.rstrip("/")
        self.credential = credential
        self.session = session or requests.Session()

    def _headers(self) -> dict:
        return {"Authorization": f"Bearer {self.credential.get_token(KEY_VAULT_SCOPE).token}"}

    def _fail(self, verb: str, name: str, response: Any) -> PublishError:
        hint = " You need 'Key Vault Secrets Officer' on the vault." if response.status_code in (401, 403) else ""
        return PublishError(f"Key Vault {self.vault} answered HTTP {response.status_code} when {verb} secret {name}.{hint}")

    def get(self, name: str) -> Optional[str]:
        """The secret's current value, or None when it does not exist."""
        response = self.session.get(f"{self.vault}/secrets/{name}?api-version={KEY_VAULT_API_VERSION}", headers=self._headers(), timeout=30)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._fail("reading", name, response)
        return response.json().get("value")

    def set(self, name: str, value: str) -> None:
        """Store a new version of the secret."""
        response = self.session.put(
            f"{self.vault}/secrets/{name}?api-version={KEY_VAULT_API_VERSION}",
            json={"value": value, "contentType": "text/plain", "tags": {"managed-by": "ci-governance"}},
            headers=self._headers(),
            timeout=30,
        )
        if response.status_code != 200:
            raise self._fail("writing", name, response)
