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
import fnmatch
import json
import math
import os
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple, Type, TypeVar

from shared.errors import SettingsError, TagFormatError
from shared.models import GUID as _GUID
from shared.models import WorkspaceRef
from shared.tags import TagNames, validate_tag_name

T = TypeVar("T")
_UPN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
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
    # Where approval cards go (with audience=approvers): one person's UPN or object id; None = the flow's approvers channel.
    approvers_recipient: Optional[str] = None


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
        return build_dataclass(cls, _section_data(self.raw, name), name)

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
        # NaN compares false with every bound, so it would slip past each range check below it
        # (a NaN confirm timeout never times out); infinity is no setting anyone means either.
        if not math.isfinite(value):
            raise SettingsError(f"{path} must be a finite number, not {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise SettingsError(f"{path} must be a string, not {value!r}")
        return value
    if dataclasses.is_dataclass(hint):
        return build_dataclass(typing.cast(type, hint), value, path)
    return value


def settings_from_dict(data: Mapping[str, Any]) -> Settings:
    """Validate a settings document and build :class:`Settings`."""
    if not isinstance(data, Mapping):
        raise SettingsError("settings must be a JSON object")
    unknown = sorted(set(data) - set(KNOWN_SECTIONS))
    if unknown:
        raise SettingsError(f"unknown settings section(s) {', '.join(unknown)}; known: {', '.join(KNOWN_SECTIONS)}")
    for name in data:
        # A section that is not an object (``"exemption": false``) must not quietly become the
        # defaults: that could switch off a check the admin configured elsewhere.
        _section_data(data, name)
    scope = _dedupe_scope(build_dataclass(Scope, _section_data(data, "scope"), "scope"))
    for i, sub in enumerate(scope.subscriptions):
        if not _GUID.match(sub):
            raise SettingsError(f"scope.subscriptions[{i}] = {sub!r} is not a subscription id (a GUID)")
    identity = build_dataclass(Identity, _section_data(data, "identity"), "identity")
    tags = build_dataclass(TagNames, _section_data(data, "tags"), "tags")
    _check_tag_names(tags)
    teams = build_dataclass(TeamsSettings, _section_data(data, "teams"), "teams")
    if teams.workflow_url and not teams.workflow_url.startswith("https://"):
        raise SettingsError("teams.workflow_url must be an https:// URL")
    if teams.approvers_recipient is not None and not (_UPN.match(teams.approvers_recipient) or _GUID.match(teams.approvers_recipient)):
        raise SettingsError(f"teams.approvers_recipient must be a UPN or an Entra object id, not {teams.approvers_recipient!r}")
    return Settings(scope=scope, identity=identity, tags=tags, teams=teams, raw=dict(data))


def _section_data(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """Section ``name`` of a settings document: {} when absent, else it must be a JSON object."""
    if name not in data:
        return {}
    value = data[name]
    if not isinstance(value, Mapping):
        kind = "null" if value is None else type(value).__name__
        raise SettingsError(f"settings section '{name}' must be a JSON object, not {kind}")
    return value


def _dedupe_scope(scope: Scope) -> Scope:
    """The scope with blank entries refused and repeats (any letter case) removed, first spelling kept.

    ARM names are case-insensitive: a subscription or resource group named twice would be listed
    twice, every CI in it stopped twice and reported twice. A blank entry would match nothing and
    quietly stop nothing.
    """
    fields = {}
    for name in ("subscriptions", "resource_groups", "include_workspaces", "exclude_workspaces"):
        seen: Dict[str, str] = {}
        for i, entry in enumerate(getattr(scope, name)):
            if not entry.strip():
                raise SettingsError(f"scope.{name}[{i}] is empty")
            seen.setdefault(entry.strip().lower(), entry.strip())
        fields[name] = tuple(seen.values())
    return dataclasses.replace(scope, **fields)


def _check_tag_names(names: TagNames) -> None:
    """Every tag name derived from ``tags.prefix`` must be one Azure accepts (512 characters at most)."""
    # The create runbook's approver tag is "<prefix>.approved-by"; the rest are TagNames properties.
    for name in (*names.exemption_keys, names.auto_start, names.owner, f"{names.prefix}.approved-by"):
        try:
            validate_tag_name(name)
        except TagFormatError as exc:
            raise SettingsError(f"tags.prefix makes a tag name Azure refuses: {str(exc)[:200]}") from None


def _no_constant(name: str) -> Any:
    raise SettingsError(f"{name} is not a number the settings accept")


def parse_settings_text(text: str, origin: str) -> Dict[str, Any]:
    """Parse JSON settings text; the error names where it came from and where it broke."""
    try:
        # Python's json accepts NaN and Infinity, which are not JSON and no setting can mean.
        data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"settings from {origin} are not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except SettingsError as exc:
        raise SettingsError(f"settings from {origin}: {exc}") from None
    except RecursionError:
        raise SettingsError(f"settings from {origin} are nested too deeply to be settings") from None
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
    # An empty value is a mistake (a schedule whose parameter lost its value), not "no settings":
    # running on the defaults and the environment alone would be a different run than the one meant.
    if settings_arg is not None and not settings_arg.strip():
        raise SettingsError("--settings is empty")
    if settings_b64 is not None and not settings_b64.strip():
        raise SettingsError("--settings-b64 is empty")
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
            text = fh.read()
    except OSError as exc:
        raise SettingsError(f"cannot read settings file {path} (from {origin}): {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SettingsError(f"settings file {path} (from {origin}) is not UTF-8 text") from None
    return parse_settings_text(text, f"{origin} ({path})")


def _merge(base: Dict[str, Any], top: Mapping[str, Any]) -> Dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def workspace_in_scope(workspace: WorkspaceRef, scope: Scope) -> bool:
    """Apply the resource-group list and the workspace allow/deny patterns (case-insensitive).

    Patterns match the workspace name or ``resourceGroup/workspace``. Deny wins over allow.
    """
    if scope.resource_groups and workspace.resource_group.lower() not in {rg.lower() for rg in scope.resource_groups}:
        return False
    names = (workspace.name.lower(), f"{workspace.resource_group}/{workspace.name}".lower())

    def hit(patterns: Tuple[str, ...]) -> bool:
        return any(fnmatch.fnmatchcase(n, p.lower()) for p in patterns for n in names)

    if hit(scope.exclude_workspaces):
        return False
    return not scope.include_workspaces or hit(scope.include_workspaces)
