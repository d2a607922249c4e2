"""Data shared by the planning and applying steps: desired state, observed state, actions."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Dict, List, Optional, Tuple

NAME_PREFIX = "ci-governance"
MANAGED_BY_TAG = ("managed-by", NAME_PREFIX)
# Runbook tag holding the SHA-256 of the published content; written only after a successful publish,
# so an interrupted run is redone next time instead of being mistaken for "unchanged".
CONTENT_TAG = "ci-governance-content-sha256"


class PublishError(Exception):
    """A failure with a message meant for the operator (no stack trace needed)."""


class ApplyError(PublishError):
    """A step failed while changing Azure (exit code 1; earlier steps stay done)."""


def short_hash(value: object, length: int = 12) -> str:
    """A stable short SHA-256 of a JSON-serialisable value."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode("utf-8")).hexdigest()[:length]


@dataclass(frozen=True)
class PackageSpec:
    """One wheel to import into the runtime environment.

    ``url`` is what Automation downloads; None means a locally built wheel (``local_data``) that must be
    uploaded first. A URL may carry a SAS token: print :meth:`display_url`, never ``url``.
    """

    name: str
    version: str
    filename: str
    sha256: str
    url: Optional[str] = None
    local_data: Optional[bytes] = field(default=None, repr=False, compare=False)
    size: Optional[int] = field(default=None, compare=False)  # bytes, when known (for the plan)

    def display_url(self) -> str:
        """The URL without its query string (which may be a SAS token)."""
        return self.url.split("?", 1)[0] if self.url else "built locally, uploaded to the SAS container"


@dataclass(frozen=True)
class DesiredEnvironment:
    """A content-addressed runtime environment: its name ends with a hash of runtime + packages."""

    name: str
    language: str
    version: str
    packages: Tuple[PackageSpec, ...]


@dataclass(frozen=True)
class DesiredRunbook:
    name: str
    filename: str
    content: str
    sha256: str
    runbook_type: str
    runtime_environment: str
    description: str


@dataclass(frozen=True)
class DesiredSchedule:
    """A recurring schedule; ``fingerprint`` covers everything that defines when it fires."""

    name: str
    frequency: str  # "Day" or "Week"
    time_of_day: str  # "HH:MM" in time_zone
    time_zone: str
    week_days: Tuple[str, ...] = ()
    summary: str = ""

    @property
    def fingerprint(self) -> str:
        return short_hash([self.frequency, 1, self.time_of_day, self.time_zone, list(self.week_days)])

    @property
    def description(self) -> str:
        return f"{self.summary} [spec {self.fingerprint}]"


@dataclass
class DesiredLink:
    """A job schedule: run ``runbook`` on ``schedule`` with ``parameters``."""

    schedule: str
    runbook: str
    parameters: Dict[str, str]


@dataclass
class DesiredWebhook:
    """``name`` is the base name: a rotation creates ``<name>-<UTC timestamp>`` before deleting the old one."""

    name: str
    runbook: str
    parameters: Dict[str, str]
    expiry_days: int


@dataclass(frozen=True)
class DesiredSecret:
    """A secret setting stored in Key Vault; ``value`` is never printed."""

    name: str  # Key Vault secret name
    setting: str  # e.g. teams.workflow_url
    value: str = field(repr=False)


@dataclass
class SelfCheck:
    """One self-check job: ``runbook`` started with ``parameters``; a temporary copy when the runbook changes."""

    runbook: DesiredRunbook
    parameters: Dict[str, str]
    temporary: bool


@dataclass
class Desired:
    environment: DesiredEnvironment
    environment_prefix: str
    runbooks: List[DesiredRunbook]
    schedules: List[DesiredSchedule]
    links: List[DesiredLink]
    webhooks: List[DesiredWebhook]
    secrets: List[DesiredSecret] = field(default_factory=list)
    key_vault: Optional[str] = None
    check_parameters: Dict[str, Dict[str, str]] = field(default_factory=dict)  # runbook -> self-check job parameters


@dataclass
class AccountInfo:
    name: str
    location: str
    identity_type: Optional[str]
    principal_ids: List[Tuple[str, str]]  # (label, object id)


@dataclass
class ObservedPackage:
    name: str
    version: Optional[str]
    state: str
    error: Optional[str] = None


@dataclass
class ObservedEnvironment:
    name: str
    language: Optional[str]
    version: Optional[str]
    tags: Dict[str, str]
    packages: Dict[str, ObservedPackage]  # lower-case name -> package


@dataclass
class ObservedRunbook:
    name: str
    runbook_type: Optional[str]
    runtime_environment: Optional[str]
    state: Optional[str]
    tags: Dict[str, str]


@dataclass
class ObservedSchedule:
    name: str
    description: str
    is_enabled: bool


@dataclass
class ObservedJobSchedule:
    job_schedule_id: str
    schedule: str
    runbook: str
    parameters: Dict[str, str]


@dataclass
class ObservedWebhook:
    name: str
    runbook: str
    expiry_time: Optional[datetime]
    is_enabled: bool
    parameters: Dict[str, str]


@dataclass
class Observed:
    account: AccountInfo
    environments: Dict[str, ObservedEnvironment] = field(default_factory=dict)
    runbooks: Dict[str, ObservedRunbook] = field(default_factory=dict)
    schedules: Dict[str, ObservedSchedule] = field(default_factory=dict)
    job_schedules: List[ObservedJobSchedule] = field(default_factory=list)
    webhooks: Dict[str, ObservedWebhook] = field(default_factory=dict)
    secrets: Dict[str, Optional[str]] = field(default_factory=dict)  # Key Vault secret name -> current value (None: absent)


# kind -> (symbol, label, writes to Azure?)
ACTION_KINDS: Dict[str, Tuple[str, str, bool]] = {
    "upload_wheel": ("+", "upload wheel", False),
    "create_environment": ("+", "create runtime environment", True),
    "import_packages": ("+", "import packages into", True),
    "wait_packages": (".", "wait for package imports in", False),
    "set_secret": ("~", "store in Key Vault the secret", True),
    "self_check": ("?", "self-check", False),
    "delete_runbook": ("-", "delete leftover runbook", True),
    "upsert_runbook": ("~", "upload and publish runbook", True),
    "delete_job_schedule": ("-", "delete job schedule", True),
    "delete_schedule": ("-", "delete schedule", True),
    "create_schedule": ("+", "create schedule", True),
    "create_job_schedule": ("+", "link", True),
    "delete_webhook": ("-", "delete webhook", True),
    "create_webhook": ("+", "create webhook", True),
    "update_webhook": ("~", "update webhook parameters of", True),
    "delete_environment": ("-", "delete unused runtime environment", True),
}


@dataclass
class Action:
    """One step of a plan. ``data`` is the desired object (or identifier) the step needs."""

    kind: str
    target: str
    reason: str
    data: object = None
    details: List[str] = field(default_factory=list)  # printed with --verbose only

    def describe(self) -> str:
        symbol, label, _ = ACTION_KINDS[self.kind]
        return f"{symbol} {label} {self.target}" + (f" ({self.reason})" if self.reason else "")

    @property
    def writes(self) -> bool:
        return ACTION_KINDS[self.kind][2]


@dataclass
class Plan:
    actions: List[Action] = field(default_factory=list)
    unchanged: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)

    @property
    def changes(self) -> int:
        """How many steps change something in Azure (uploads and waits excluded)."""
        return sum(1 for a in self.actions if a.writes)
