"""Settings: one JSON document, checked strictly, with a clear message for every mistake.

Where it comes from (later wins): built-in defaults; the file named by the environment variable
``CI_GOVERNANCE_SETTINGS``; the runbook argument ``--settings`` (a path or inline JSON) or
``--settings-b64`` (base64 JSON, what ``publish.py`` puts in schedules and webhooks, because
Azure Automation passes Python runbook parameters positionally and quoting JSON there is fragile);
then individual flags such as ``--subscription``.

Top-level sections: ``scope``, ``identity``, ``tags``, ``teams`` (read here) and the feature
sections ``stop``, ``exemption``, ``create``, ``start``, ``warning``, ``pricing``, each read by
the module that owns it through :meth:`Settings.section`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple, Type, TypeVar

from shared.errors import SettingsError
from shared.models import GUID as _GUID
from shared.tags import TagNames

T = TypeVar("T")
ENV_VAR = "CI_GOVERNANCE_SETTINGS"
KNOWN_SECTIONS = ("scope", "identity", "tags", "teams", "stop", "exemption", "create", "start", "warning", "pricing", "secrets")




@dataclass(frozen=True)
class Scope:
    """Which workspaces are managed: subscriptions, optionally narrowed to resource groups and by
    workspace allow/deny lists (case-insensitive glob patterns on the workspace name or
    ``resourceGroup/workspace``)."""

    subscriptions: Tuple[str, ...] = ()
    resource_groups: Tuple[str, ...] = ()
    include_workspaces: Tuple[str, ...] = ()
    exclude_workspaces: Tuple[str, ...] = ()


@dataclass(frozen=True)
class Identity:
    """Which managed identity to use in Azure Automation: None = system-assigned."""

    client_id: Optional[str] = None


@dataclass(frozen=True)
class TeamsSettings:
    """Where outcome and summary cards are posted (a Teams Workflows 'webhook request' URL)."""

    workflow_url: Optional[str] = None
    post_nightly_summary: bool = True
    shared_secret: Optional[str] = None


@dataclass(frozen=True)
class Settings:
    """The whole configuration. Feature sections stay raw until their owner reads them."""

    scope: Scope = field(default_factory=Scope)
    identity: Identity = field(default_factory=Identity)
    tags: TagNames = field(default_factory=TagNames)
    teams: TeamsSettings = field(default_factory=TeamsSettings)
    raw: Mapping[str, Any] = field(default_factory=dict)

    def section(self, name: str, cls: Type[T]) -> T:
        """Read feature section ``name`` into dataclass ``cls`` (defaults where absent)."""
        if name not in KNOWN_SECTIONS:
            raise SettingsError(f"unknown settings section '{name}'")
        return build_dataclass(cls, self.raw.get(name) or {}, name)

    def require_scope(self) -> None:
        """Raise SettingsError unless at least one subscription is configured."""
        if not self.scope.subscriptions:
            raise SettingsError("no subscription to manage: set scope.subscriptions in the settings or pass --subscription")

    def with_overrides(self, **sections: Mapping[str, Any]) -> Settings:
        """A copy with some sections' keys replaced (used by command-line flags)."""
        merged: Dict[str, Any] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in self.raw.items()}
        for name, values in sections.items():
            merged.setdefault(name, {}).update({k: v for k, v in values.items() if v is not None})
        return settings_from_dict(merged)


def build_dataclass(cls: Type[T], data: Any, path: str) -> T:
    """Build dataclass ``cls`` from a JSON object, refusing unknown keys and wrong types.

    Supports str, int, float, bool, Optional[...], Tuple[X, ...] (from a JSON list) and
    Dict[str, X]. Messages name the exact setting (``stop.exclude[2]``).
    """
    if not isinstance(data, Mapping):
        raise SettingsError(f"{path} must be a JSON object, not {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise SettingsError(f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
    values = {name: _coerce(hints[name], data[name], f"{path}.{name}") for name in fields if name in data}
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{path}: {exc}") from None


def _coerce(hint: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union and type(None) in args:
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _coerce(inner, value, path)
    if origin in (tuple, Tuple):
        if not isinstance(value, list):
            raise SettingsError(f"{path} must be a list")
        return tuple(_coerce(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Dict):
        if not isinstance(value, Mapping):
            raise SettingsError(f"{path} must be an object")
        return {str(k): _coerce(args[1], v, f"{path}.{k}") for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise SettingsError(f"{path} must be true or false, not {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(f"{path} must be a whole number, not {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SettingsError(f"{path} must be a number, not {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise SettingsError(f"{path} must be a string, not {value!r}")
        return value
    if dataclasses.is_dataclass(hint):
        return build_dataclass(hint, value, path)
    return value


def settings_from_dict(data: Mapping[str, Any]) -> Settings:
    """Validate a settings document and build :class:`Settings`."""
    if not isinstance(data, Mapping):
        raise SettingsError("settings must be a JSON object")
    unknown = sorted(set(data) - set(KNOWN_SECTIONS))
    if unknown:
        raise SettingsError(f"unknown settings section(s) {', '.join(unknown)}; known: {', '.join(KNOWN_SECTIONS)}")
    scope = build_dataclass(Scope, data.get("scope") or {}, "scope")
    for i, sub in enumerate(scope.subscriptions):
        if not _GUID.match(sub):
            raise SettingsError(f"scope.subscriptions[{i}] = {sub!r} is not a subscription id (a GUID)")
    identity = build_dataclass(Identity, data.get("identity") or {}, "identity")
    tags = build_dataclass(TagNames, data.get("tags") or {}, "tags")
    teams = build_dataclass(TeamsSettings, data.get("teams") or {}, "teams")
    if teams.workflow_url and not teams.workflow_url.startswith("https://"):
        raise SettingsError("teams.workflow_url must be an https:// URL")
    return Settings(scope=scope, identity=identity, tags=tags, teams=teams, raw=dict(data))


def parse_settings_text(text: str, origin: str) -> Dict[str, Any]:
    """Parse JSON settings text; the error names where it came from and where it broke."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"settings from {origin} are not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"settings from {origin} must be a JSON object")
    return data


def load_settings(
    settings_arg: Optional[str] = None,
    settings_b64: Optional[str] = None,
    environ: Mapping[str, str] = os.environ,
) -> Settings:
    """Load settings from the environment variable, then ``--settings`` / ``--settings-b64``."""
    merged: Dict[str, Any] = {}
    path = environ.get(ENV_VAR)
    if path:
        merged = _merge(merged, _read_file(path, f"${ENV_VAR}"))
    if settings_arg:
        text = settings_arg.strip()
        doc = parse_settings_text(text, "--settings") if text.startswith("{") else _read_file(text, "--settings")
        merged = _merge(merged, doc)
    if settings_b64:
        try:
            text = base64.b64decode(settings_b64.encode("ascii"), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeError, ValueError):
            raise SettingsError("--settings-b64 is not valid base64 of UTF-8 JSON") from None
        merged = _merge(merged, parse_settings_text(text, "--settings-b64"))
    return settings_from_dict(merged)


def encode_settings(data: Mapping[str, Any]) -> str:
    """The ``--settings-b64`` value for a settings document (used by publish.py and the sandbox)."""
    return base64.b64encode(json.dumps(data, separators=(",", ":"), sort_keys=True).encode("utf-8")).decode("ascii")


def _read_file(path: str, origin: str) -> Dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            return parse_settings_text(fh.read(), f"{origin} ({path})")
    except OSError as exc:
        raise SettingsError(f"cannot read settings file {path} (from {origin}): {exc.strerror}") from None


def _merge(base: Dict[str, Any], top: Mapping[str, Any]) -> Dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out
