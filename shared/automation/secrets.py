"""Secret settings (Teams workflow URLs, the shared secret) read from Azure Key Vault at start.

publish.py keeps them out of job schedules and webhooks (anyone who can read a job's inputs could
read them there) and stores them in the Key Vault named by ``secrets.key_vault``; the job's settings
list which ones in ``secrets.stored``. A runbook reads each with its managed identity through the
Key Vault REST API (``GET {vault}/secrets/{name}?api-version=7.4``, token scope
``https://vault.azure.net/.default``), with plain ``requests``: no extra package in the sandbox.
Why Key Vault and not encrypted Automation variables: docs/platform.md, "Secrets".
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Mapping, Optional, Tuple

from shared.errors import SettingsError
from shared.sections import SECRET_SETTINGS, SecretsSection
from shared.settings import Settings, build_dataclass, settings_from_dict

log = logging.getLogger(__name__)

KEY_VAULT_SCOPE = "https://vault.azure.net/.default"
KEY_VAULT_API_VERSION = "7.4"
_RETRIED = (429, 500, 502, 503, 504)


def secret_values(doc: Mapping[str, Any]) -> Dict[str, str]:
    """The secret settings present (non-empty) in a settings document: path -> value."""
    found = {}
    for path in SECRET_SETTINGS:
        section, key = path.split(".")
        value = (doc.get(section) or {}).get(key) if isinstance(doc.get(section), Mapping) else None
        if isinstance(value, str) and value:
            found[path] = value
    return found


def without_secrets(doc: Mapping[str, Any], key_vault: Optional[str], stored: Tuple[str, ...]) -> Dict[str, Any]:
    """``doc`` with every secret setting removed and a ``secrets`` section pointing at the vault."""
    out: Dict[str, Any] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in doc.items()}
    for path in SECRET_SETTINGS:
        section, key = path.split(".")
        if isinstance(out.get(section), dict):
            out[section].pop(key, None)
            if not out[section]:
                out.pop(section)
    if stored:
        out["secrets"] = {"key_vault": key_vault, "stored": sorted(stored)}
    else:
        out.pop("secrets", None)
    return out


def read_secrets(settings: Settings, credential: Any, session: Any = None) -> Tuple[Settings, int]:
    """Settings with the secrets of ``secrets.stored`` filled in from Key Vault (a value already in
    the document wins); returns (settings, how many were read). Raises SettingsError naming the
    secret and what to grant when one cannot be read."""
    section = build_dataclass(SecretsSection, settings.raw.get("secrets") or {}, "secrets")
    present = secret_values(settings.raw)
    wanted = [path for path in section.stored if path not in present]
    if not wanted:
        return settings, 0
    import requests

    session = session or requests.Session()
    vault = (section.key_vault or "").rstrip("/")
    token = credential.get_token(KEY_VAULT_SCOPE).token
    merged: Dict[str, Any] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in settings.raw.items()}
    for path in wanted:
        name = SECRET_SETTINGS[path]
        value = _get_secret(session, vault, name, token, path)
        section_name, key = path.split(".")
        merged.setdefault(section_name, {})[key] = value
    log.info("Read %d secret setting(s) from Key Vault %s", len(wanted), vault)
    return settings_from_dict(merged), len(wanted)


def _get_secret(session: Any, vault: str, name: str, token: str, path: str) -> str:
    url = f"{vault}/secrets/{name}?api-version={KEY_VAULT_API_VERSION}"
    response = None
    for _ in range(3):
        try:
            response = session.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        except Exception as exc:  # requests' connection errors: name the vault, not a traceback
            raise SettingsError(f"cannot reach Key Vault {vault} for {path}: {exc}") from None
        if response.status_code not in _RETRIED:
            break
    assert response is not None
    if response.status_code == 200:
        value = (response.json() or {}).get("value")
        if isinstance(value, str) and value:
            return value
        raise SettingsError(f"Key Vault secret {name} ({path}) in {vault} is empty")
    if response.status_code == 404:
        raise SettingsError(f"Key Vault secret {name} ({path}) was not found in {vault}: run publish.py again to store it")
    if response.status_code in (401, 403):
        raise SettingsError(
            f"the managed identity may not read secret {name} ({path}) in {vault} (HTTP {response.status_code}):"
            " grant it 'Key Vault Secrets User' on the vault (publish.py prints the command)"
        )
    raise SettingsError(f"Key Vault {vault} answered HTTP {response.status_code} for secret {name} ({path})")
