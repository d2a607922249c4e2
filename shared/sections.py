"""Every settings section of the product as data (Cloud Custodian's "policy as data"): one frozen
dataclass per section, validated when it is read, and one registry of them.

Each runbook reads the whole document through :func:`check_settings_document` before any call, so
a mistyped ``stop`` section fails the exemption runbook at once too, and publish.py checks a
document with exactly the runbooks' rules before deploying it. Capabilities import their section
from here; nothing here does I/O.
"""

from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Dict, FrozenSet, List, Optional, Tuple

from shared.errors import SettingsError
from shared.models import ComputeInstanceRecord, Money
from shared.settings import Settings, settings_from_dict
from shared.tags import MAX_TAG_VALUE, validate_tag_name, validate_tag_value
from shared.times import load_zone


@dataclass(frozen=True)
class BulkSettings:
    """Concurrency and pacing (settings section of the runbook that uses it).

    ``confirm_timeout_seconds`` counts from each CI's own request. ``send_attempts`` is how many
    times one CI's request is sent in all when it fails transiently (each attempt already
    includes azure-core's own retries); ``retry_delay_seconds`` is the wait before the second
    attempt, doubled for each further one (None: 2 s, or the confirm interval when that is
    shorter). Short on purpose: one stray 502 must not add seconds to the whole sweep's tail,
    and azure-core has already spent ~5 s retrying a 500/503/504 before the sweep sees it.
    """

    concurrency: int = 16
    writes_per_second: float = 9.0  # ARM refills 10/s per subscription: stay just under
    write_burst: int = 180  # ARM's bucket holds 200
    confirm_timeout_seconds: float = 1200.0
    confirm_interval_seconds: float = 15.0
    send_attempts: int = 3
    retry_delay_seconds: Optional[float] = None

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.concurrency > 64:
            raise ValueError("concurrency must be between 1 and 64")
        if self.confirm_timeout_seconds <= 0 or self.confirm_interval_seconds <= 0:
            raise ValueError("confirm_timeout_seconds and confirm_interval_seconds must be positive")
        if self.writes_per_second <= 0 or self.write_burst < 1:
            raise ValueError("writes_per_second must be positive and write_burst at least 1")
        if self.send_attempts < 1 or (self.retry_delay_seconds is not None and self.retry_delay_seconds < 0):
            raise ValueError("send_attempts must be at least 1 and retry_delay_seconds not negative")


@dataclass(frozen=True)
class StopPolicy:
    """The stop sweep's rules, as data (settings section ``stop``).

    ``exclude`` holds case-insensitive glob patterns matched against the CI name and against
    ``workspace/ci`` and ``subscription/resourceGroup/workspace/ci``.
    """

    stop_job_running: bool = False
    exclude: Tuple[str, ...] = ()

    def excludes(self, ci: ComputeInstanceRecord) -> Optional[str]:
        """The exclusion pattern that matches ``ci``, or None."""
        candidates = (ci.name, f"{ci.workspace.name}/{ci.name}", ci.key)
        for pattern in self.exclude:
            if any(fnmatch.fnmatchcase(c.lower(), pattern.lower()) for c in candidates):
                return pattern
        return None


@dataclass(frozen=True)
class BulkKnobs:
    """The pacing settings every bulk section (``stop``, ``start``) has, defined once: requests at
    once, ARM write pacing per subscription, and how long and how often to confirm by listing."""

    concurrency: int = 16
    writes_per_second: float = 9.0
    write_burst: int = 180
    confirm_timeout_seconds: float = 1200.0
    confirm_interval_seconds: float = 15.0

    def __post_init__(self) -> None:
        self.bulk()  # validates concurrency and timings now, so a bad setting fails before any work

    def bulk(self) -> BulkSettings:
        """These knobs as the bulk engine's settings."""
        return BulkSettings(
            concurrency=self.concurrency,
            writes_per_second=self.writes_per_second,
            write_burst=self.write_burst,
            confirm_timeout_seconds=self.confirm_timeout_seconds,
            confirm_interval_seconds=self.confirm_interval_seconds,
        )


@dataclass(frozen=True)
class StopSection(BulkKnobs):
    """Settings section ``stop`` (with the bulk knobs of :class:`BulkKnobs`)."""

    stop_job_running: bool = False
    exclude: Tuple[str, ...] = ()
    expiring_window_hours: float = 24.0

    def policy(self) -> StopPolicy:
        """What decide_stop needs of this section."""
        return StopPolicy(stop_job_running=self.stop_job_running, exclude=self.exclude)


DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = date.weekday()


FULL_DAY_NAMES = {"monday": "mon", "tuesday": "tue", "wednesday": "wed", "thursday": "thu", "friday": "fri", "saturday": "sat", "sunday": "sun"}


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class StartSection(BulkKnobs):
    """Settings section ``start`` (with the bulk knobs of :class:`BulkKnobs`)."""

    days: Tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri")
    holidays: Tuple[str, ...] = ()  # YYYY-MM-DD, in time_zone
    time_zone: str = "UTC"

    def __post_init__(self) -> None:
        unknown = [d for d in self.days if d.strip().lower() not in DAYS]
        if unknown:
            raise ValueError(f"days: {', '.join(unknown)} not among {', '.join(DAYS)}")
        for day in self.holidays:
            parse_date(day)
        _zone("time_zone", self.time_zone)
        super().__post_init__()

    def start_days(self) -> FrozenSet[int]:
        return frozenset(DAYS.index(d.strip().lower()) for d in self.days)

    def holiday_dates(self) -> FrozenSet[date]:
        return frozenset(parse_date(d) for d in self.holidays)


def parse_date(text: str) -> date:
    """``YYYY-MM-DD`` → date; ValueError with the offending text otherwise."""
    if not _DATE.match(text or ""):
        raise ValueError(f"holiday '{text}' is not a date such as 2026-12-25")
    try:
        return datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        raise ValueError(f"holiday '{text}' is not a real date") from None


@dataclass(frozen=True)
class RequestRules:
    """The limits a request is checked against (from the ``exemption`` settings section)."""

    max_hours: float = 72.0
    max_reason_length: int = 200


TAGS_API = "tags_api"


FULL_PUT = "full_put"


AUTO = "auto"


TAG_WRITE_METHODS = (TAGS_API, FULL_PUT, AUTO)


_CURRENCY = re.compile(r"^[A-Z]{3}$")


DEFAULT_TIME_ZONES = ("UTC", "Europe/London", "Europe/Berlin", "America/New_York", "America/Los_Angeles", "Asia/Kolkata", "Asia/Tokyo", "Australia/Sydney")


@dataclass(frozen=True)
class CostLimit:
    """``exemption.auto_approve_below``: an amount in a currency (ISO 4217 code, as the Retail Prices API takes it)."""

    amount: float
    currency: str

    def __post_init__(self) -> None:
        if not math.isfinite(self.amount) or self.amount < 0:
            raise ValueError(f"auto_approve_below.amount must be a number of at least 0, not {self.amount}")
        if not _CURRENCY.match(self.currency):
            raise ValueError(f"auto_approve_below.currency must be a three-letter code in capitals such as USD or EUR, not {self.currency!r}")

    @property
    def money(self) -> Money:
        return Money(self.amount, self.currency)


@dataclass(frozen=True)
class ExemptionSection:
    """Settings section ``exemption``.

    - ``max_hours``: how far ahead an exemption may run (from the moment it is asked for);
    - ``approvers``: UPNs or Entra object ids who may exempt any CI in scope;
    - ``allow_assigned_user``: the CI's assigned user may exempt their own CI;
    - ``require_shared_secret``: name of a request header that must carry ``teams.shared_secret``
      (checked on webhook requests; None = no check);
    - ``time_zones`` / ``default_time_zone``: the choices the request card offers;
    - ``tag_write_method``: ``auto`` (default: Tags API, falling back to the full PUT when the Tags API
      is refused or ignored), ``tags_api`` (ARM Tags API) or ``full_put`` (GET + PUT of the compute);
      where the CI takes neither, the exemption goes on its workspace whatever the method;
    - ``readback_attempts`` / ``readback_delay_seconds``: how long to wait for written tags to show;
    - ``auto_approve_below``: the cost rule's limit (:class:`CostLimit`), or None for no cost rule.
    """

    max_hours: float = 72.0
    approvers: Tuple[str, ...] = ()
    allow_assigned_user: bool = True
    require_shared_secret: Optional[str] = None
    time_zones: Tuple[str, ...] = DEFAULT_TIME_ZONES
    default_time_zone: str = "UTC"
    max_reason_length: int = 200  # what the request card allows
    tag_write_method: str = AUTO
    readback_attempts: int = 3
    readback_delay_seconds: float = 2.0
    auto_approve_below: Optional[CostLimit] = None

    def __post_init__(self) -> None:
        # Raised as ValueError; Settings.section turns it into a SettingsError naming the section.
        if not 0 < self.max_hours <= 24 * 31:
            raise ValueError(f"max_hours must be more than 0 and at most 744 (31 days), not {self.max_hours}")
        if not 1 <= self.max_reason_length <= MAX_TAG_VALUE:
            raise ValueError(f"max_reason_length must be 1 to {MAX_TAG_VALUE} (an Azure tag value holds {MAX_TAG_VALUE} characters)")
        if self.tag_write_method not in TAG_WRITE_METHODS:
            raise ValueError(f"tag_write_method must be one of {', '.join(TAG_WRITE_METHODS)}, not {self.tag_write_method!r}")
        if not self.allow_assigned_user and not self.approvers:
            raise ValueError("allow_assigned_user is false and approvers is empty: nobody could ask for an exemption")
        if self.require_shared_secret is not None and not self.require_shared_secret.strip():
            raise ValueError("require_shared_secret must be a header name such as X-CI-Governance-Secret, or null")
        if self.readback_attempts < 1 or self.readback_delay_seconds < 0:
            raise ValueError("readback_attempts must be at least 1 and readback_delay_seconds not negative")
        for zone in (*self.time_zones, self.default_time_zone):
            _zone("time_zones", zone)
        if self.default_time_zone not in self.time_zones:
            raise ValueError(f"default_time_zone {self.default_time_zone!r} must be one of time_zones")
        if self.auto_approve_below is not None and not self.approvers:
            raise ValueError("auto_approve_below is set but approvers is empty: nobody could approve a costlier exemption")

    def rules(self) -> RequestRules:
        """The validation limits for :func:`shared.exemption.request.validate_request`."""
        return RequestRules(max_hours=self.max_hours, max_reason_length=self.max_reason_length)


NAME_MIN, NAME_MAX = 3, 24


IDLE_MIN_MINUTES, IDLE_MAX_MINUTES = 15, 3 * 24 * 60


_GLOB = set("*?[")


@dataclass(frozen=True)
class CreateSection:
    """Settings section ``create``.

    ``allowed_sizes`` and ``sizes_needing_approval`` hold VM size names or case-insensitive glob
    patterns (``STANDARD_NC*``); Azure VM size names are case-insensitive. ``approvers`` holds
    UPNs or Entra object ids. ``fixed_tags`` are set on every new CI. ``require_shared_secret``
    works as in the ``exemption`` section: a request that came through the webhook must carry
    ``teams.shared_secret`` in that header.
    """

    allowed_sizes: Tuple[str, ...] = ("Standard_DS11_v2", "Standard_DS3_v2", "Standard_E4ds_v4", "Standard_NC6s_v3")
    sizes_needing_approval: Tuple[str, ...] = ("STANDARD_NC*", "STANDARD_ND*", "STANDARD_NV*")
    approvers: Tuple[str, ...] = ()
    max_per_user: int = 1
    default_idle_minutes: int = 60
    max_idle_minutes: int = IDLE_MAX_MINUTES
    cost_center_tag: str = "cost-center"
    require_cost_center: bool = True
    fixed_tags: Dict[str, str] = field(default_factory=dict)
    require_shared_secret: Optional[str] = None  # header that must carry teams.shared_secret on webhook requests
    timeout_seconds: float = 1800.0  # creating a CI takes minutes; the runbook waits this long
    polling_interval_seconds: float = 30.0  # azure-core's ARM default; the service's Retry-After wins

    def __post_init__(self) -> None:
        if self.max_per_user < 1:
            raise ValueError("max_per_user must be at least 1")
        if not IDLE_MIN_MINUTES <= self.max_idle_minutes <= IDLE_MAX_MINUTES:
            raise ValueError(f"max_idle_minutes must be between {IDLE_MIN_MINUTES} and {IDLE_MAX_MINUTES} (Azure ML's idle shutdown bounds)")
        if not IDLE_MIN_MINUTES <= self.default_idle_minutes <= self.max_idle_minutes:
            raise ValueError(f"default_idle_minutes must be between {IDLE_MIN_MINUTES} and max_idle_minutes ({self.max_idle_minutes})")
        if self.timeout_seconds <= 0 or self.polling_interval_seconds <= 0:
            raise ValueError("timeout_seconds and polling_interval_seconds must be positive")
        if self.require_shared_secret is not None and not self.require_shared_secret.strip():
            raise ValueError("require_shared_secret must be a header name such as X-CI-Governance-Secret, or null")
        if not self.allowed_sizes:
            raise ValueError("allowed_sizes must list at least one VM size")
        for name in (self.cost_center_tag, *self.fixed_tags):
            validate_tag_name(name)
        for value in self.fixed_tags.values():
            validate_tag_value(value)

    def choice_sizes(self) -> List[str]:
        """The allowed sizes that are plain names (not patterns): what a request card offers."""
        return [s for s in self.allowed_sizes if not _GLOB & set(s)]


_HH_MM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class WarningSection:
    """Settings section ``warning`` (see the module docstring)."""

    minutes_before: int = 30
    stop_time: Optional[str] = None
    time_zone: str = "UTC"
    workflow_url: Optional[str] = None
    max_cis_per_card: int = 4  # few per card: short on a phone (issue 13)

    def __post_init__(self) -> None:
        if not 1 <= self.minutes_before <= 12 * 60:
            raise ValueError(f"minutes_before must be 1 to 720, not {self.minutes_before}")
        if self.stop_time is not None and not _HH_MM.match(self.stop_time):
            raise ValueError(f"stop_time must be a 24-hour time such as 19:00, or null, not {self.stop_time!r}")
        _zone("time_zone", self.time_zone)
        if self.workflow_url is not None and not self.workflow_url.startswith("https://"):
            raise ValueError("workflow_url must be an https:// URL, or null")
        if not 1 <= self.max_cis_per_card <= 20:
            raise ValueError(f"max_cis_per_card must be 1 to 20, not {self.max_cis_per_card}")


@dataclass(frozen=True)
class PricingSection:
    """Settings section ``pricing`` (see the module docstring)."""

    enabled: bool = True
    currency: str = "USD"
    morning_time: str = "08:00"
    time_zone: str = "UTC"
    weekdays_only: bool = True
    horizon_hours: Optional[float] = None
    lookup_timeout_seconds: float = 20.0

    def __post_init__(self) -> None:
        # ValueError here becomes a SettingsError naming the section (Settings.section).
        if not _CURRENCY.match(self.currency):
            raise ValueError(f"currency must be a three-letter code in capitals such as USD or EUR, not {self.currency!r}")
        if not _HH_MM.match(self.morning_time):
            raise ValueError(f"morning_time must be a 24-hour time such as 08:00, not {self.morning_time!r}")
        _zone("time_zone", self.time_zone)
        if self.horizon_hours is not None and not 0 < self.horizon_hours <= 24 * 31:
            raise ValueError(f"horizon_hours must be more than 0 and at most 744, or null, not {self.horizon_hours}")
        if not 0 < self.lookup_timeout_seconds <= 600:
            raise ValueError(f"lookup_timeout_seconds must be more than 0 and at most 600, not {self.lookup_timeout_seconds}")

    @property
    def morning(self) -> Tuple[int, int]:
        """``morning_time`` as (hour, minute)."""
        hour, minute = self.morning_time.split(":")
        return int(hour), int(minute)


def _zone(key: str, name: str) -> None:
    """Check that ``name`` is a known IANA zone; the error names the setting ``key``."""
    try:
        load_zone(name)
    except ValueError as exc:
        raise ValueError(f"{key}: {exc}") from None


# Settings that are secrets: publish.py stores them in Key Vault and leaves them out of job inputs;
# the runbooks read them back with their managed identity (shared/automation/secrets.py).
# Setting path -> Key Vault secret name (names: 1-127 of 0-9, a-z, A-Z, "-").
SECRET_SETTINGS: Dict[str, str] = {
    "teams.workflow_url": "ci-governance-teams-workflow-url",
    "teams.shared_secret": "ci-governance-teams-shared-secret",
    "warning.workflow_url": "ci-governance-warning-workflow-url",
}


@dataclass(frozen=True)
class SecretsSection:
    """Settings section ``secrets``: where the secret settings live when they are not in the document.

    ``key_vault``: the vault URI (``https://<name>.vault.azure.net``); ``stored``: which of
    :data:`SECRET_SETTINGS` the runbooks read from it (publish.py fills this in; a value present in
    the document itself wins, so a full settings file still works on an admin's machine)."""

    key_vault: Optional[str] = None
    stored: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.key_vault is not None and not re.match(r"^https://[A-Za-z0-9.-]+/?$", self.key_vault):
            raise ValueError(f"key_vault must be a vault URI such as https://kv-governance.vault.azure.net, not {self.key_vault!r}")
        unknown = [s for s in self.stored if s not in SECRET_SETTINGS]
        if unknown:
            raise ValueError(f"stored: unknown secret setting(s) {', '.join(unknown)}; known: {', '.join(SECRET_SETTINGS)}")
        if self.stored and not self.key_vault:
            raise ValueError("stored names secrets but key_vault is not set")


# -- the registry ------------------------------------------------------------------------------

SECTIONS: Dict[str, type] = {
    "stop": StopSection,
    "start": StartSection,
    "exemption": ExemptionSection,
    "create": CreateSection,
    "warning": WarningSection,
    "pricing": PricingSection,
    "secrets": SecretsSection,
}


@dataclass(frozen=True)
class Sections:
    """Every feature section of one settings document, read and checked together."""

    stop: StopSection
    start: StartSection
    exemption: ExemptionSection
    create: CreateSection
    warning: WarningSection
    pricing: PricingSection
    secrets: SecretsSection


def read_sections(settings: Settings) -> Sections:
    """Read and check every feature section of ``settings``, and the rules that span sections;
    raises SettingsError naming the setting."""
    sections = Sections(**{name: settings.section(name, cls) for name, cls in SECTIONS.items()})
    for name in ("exemption", "create"):
        header = getattr(sections, name).require_shared_secret
        if header and not settings.teams.shared_secret:
            raise SettingsError(f"{name}.require_shared_secret names header {header} but teams.shared_secret is not set")
    return sections


def check_settings_document(doc: dict) -> Settings:
    """Validate the core sections and every feature section (what publish.py checks before deploying)."""
    settings = settings_from_dict(doc)
    read_sections(settings)
    settings.require_scope()
    return settings
