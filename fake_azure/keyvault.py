"""Fake Azure Key Vault secrets (data plane), enough for publish.py to store the secret settings and
for a runbook to read them with its managed identity.

Shapes follow Azure/azure-rest-api-specs, specification/keyvault/data-plane/Microsoft.KeyVault/stable/7.4/
secrets.json (SetSecret ``PUT {vault}/secrets/{name}`` with ``{"value": ...}``; GetSecret
``GET {vault}/secrets/{name}[/{version}]``; SecretBundle ``{"value", "id", "attributes"}``; KeyVaultError
``{"error": {"code", "message", "innererror"}}``) and the Learn page "Azure Key Vault REST API reference"
(vault host ``https://<name>.vault.azure.net``, tokens for ``https://vault.azure.net``):
- no or foreign bearer token: 401 with a ``WWW-Authenticate: Bearer authorization=..., resource=https://vault.azure.net``
  challenge (Learn key-vault/general/authentication-requests-and-responses.md);
- a caller without a data-plane role: 403 ``Forbidden`` / innererror ``ForbiddenByRbac`` (same page, "RBAC");
  ``readers`` / ``writers`` (principal ids; None = anyone) stand for *Key Vault Secrets User* /
  *Key Vault Secrets Officer* (Learn key-vault/general/rbac-guide.md);
- an unknown secret: 404 ``SecretNotFound``.
Secret names: 1-127 characters of 0-9, a-z, A-Z and "-" (Learn key-vault/general/about-keys-secrets-certificates.md).
"""

from __future__ import annotations

import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Dict, List, Optional, Set

from fake_azure.server import FakeArmServer, FakeRequest, FakeResponse

API_VERSIONS = ("7.4", "7.5", "2025-07-01")
_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")


@dataclass
class FakeSecretVersion:
    value: str
    version: str
    created: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


def _error(status: int, code: str, message: str, inner: Optional[str] = None) -> FakeResponse:
    body: Dict[str, object] = {"error": {"code": code, "message": message}}
    if inner:
        body["error"]["innererror"] = {"code": inner}  # type: ignore[index]
    return FakeResponse(status, body)


class FakeKeyVault:
    """One vault, served at ``https://<name>.vault.azure.net`` on a :class:`FakeArmServer`."""

    def __init__(self, server: FakeArmServer, name: str, *, readers: Optional[Set[str]] = None, writers: Optional[Set[str]] = None):
        self.server = server
        self.name = name
        self.url = f"https://{name}.vault.azure.net"
        self.readers = readers
        self.writers = writers
        self.secrets: Dict[str, List[FakeSecretVersion]] = {}
        self.reads: List[tuple] = []  # (secret name, principal) of every successful read
        self._lock = threading.Lock()
        for method in ("GET", "PUT"):
            server.route(method, r"/secrets/(?P<name>[^/]+)(/(?P<version>[^/]*))?", self._handle, api_versions=API_VERSIONS, host=self.url, authenticated=False)

    def value(self, name: str) -> Optional[str]:
        """The current value of a secret, or None."""
        versions = self.secrets.get(name.lower())
        return versions[-1].value if versions else None

    def _handle(self, req: FakeRequest) -> FakeResponse:
        holder = self.server.authority.holder(next((v for k, v in req.headers.items() if k.lower() == "authorization"), None))
        if holder is None or holder[0] != "vault":
            challenge = 'Bearer authorization="https://login.microsoftonline.com/common", resource="https://vault.azure.net"'
            response = _error(401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.")
            response.headers["WWW-Authenticate"] = challenge
            return response
        principal = holder[1]
        name = req.match.group("name")
        if not _NAME.match(name):
            return _error(400, "BadParameter", f"The secret name '{name}' is invalid: use 1-127 of 0-9, a-z, A-Z and '-'.")
        allowed = self.writers if req.method == "PUT" else self.readers
        if allowed is not None and principal not in allowed:
            action = "Microsoft.KeyVault/vaults/secrets/setSecret/action" if req.method == "PUT" else "Microsoft.KeyVault/vaults/secrets/getSecret/action"
            return _error(403, "Forbidden", f"Caller is not authorized to perform action on resource. Action: '{action}'", "ForbiddenByRbac")
        if req.method == "PUT":
            body = req.json() if req.body else {}
            value = body.get("value") if isinstance(body, dict) else None
            if not isinstance(value, str):
                return _error(400, "BadParameter", "Property 'value' is required.")
            with self._lock:
                version = FakeSecretVersion(value, uuid.uuid4().hex)
                self.secrets.setdefault(name.lower(), []).append(version)
            return FakeResponse(200, self._bundle(name, version))
        with self._lock:
            versions = self.secrets.get(name.lower()) or []
            wanted = req.match.group("version")
            version = next((v for v in versions if v.version == wanted), None) if wanted else (versions[-1] if versions else None)
            if version is not None:
                self.reads.append((name, principal))
        if version is None:
            return _error(404, "SecretNotFound", f"A secret with (name/id) {name} was not found in this key vault.")
        return FakeResponse(200, self._bundle(name, version))

    def _bundle(self, name: str, version: FakeSecretVersion) -> dict:
        stamp = int(version.created.timestamp())
        return {
            "value": version.value,
            "id": f"{self.url}/secrets/{name}/{version.version}",
            "attributes": {"enabled": True, "created": stamp, "updated": stamp, "recoveryLevel": "Recoverable+Purgeable"},
        }
