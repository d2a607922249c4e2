"""Plain records of what the product sees in Azure, independent of the SDK's classes."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Dict, Optional, Tuple


@dataclass(frozen=True)
class WorkspaceRef:
    """An Azure ML workspace, identified by subscription, resource group and name."""

    subscription_id: str
    resource_group: str
    name: str
    location: str = ""
    # The workspace's tags as listed (exemptions recorded for CIs that refuse tags: shared.tags).
    # Not part of identity: two refs of one workspace are equal whatever tags they were read with.
    tags: Dict[str, str] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def key(self) -> str:
        """``subscription/resourceGroup/workspace``: unique, and what Teams cards carry."""
        return f"{self.subscription_id}/{self.resource_group}/{self.name}"

    @property
    def arm_id(self) -> str:
        return f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}/providers/Microsoft.MachineLearningServices/workspaces/{self.name}"

    def same_as(self, other: WorkspaceRef) -> bool:
        """ARM names are case-insensitive."""
        return self.key.lower() == other.key.lower()


# lastOperation.operationTrigger values meaning "the platform did it by itself" (2023-08-01-preview spec).
TRIGGER_SCHEDULE = "Schedule"
TRIGGER_IDLE_SHUTDOWN = "IdleShutdown"
PLATFORM_TRIGGERS = (TRIGGER_SCHEDULE, TRIGGER_IDLE_SHUTDOWN)


@dataclass(frozen=True)
class CISchedule:
    """One of a CI's own start/stop schedules (ComputeStartStopSchedule), enough to tell when it fires.

    ``kind`` is ``cron`` (``expression``) or ``recurrence`` (``frequency``, ``interval``, ``hours``,
    ``minutes``, ``week_days``); ``time_zone`` as Azure stores it (IANA or Windows name).
    """

    action: str
    kind: str
    time_zone: str = "UTC"
    expression: str = ""
    frequency: str = ""
    interval: int = 1
    hours: Tuple[int, ...] = ()
    minutes: Tuple[int, ...] = ()
    week_days: Tuple[str, ...] = ()

    @property
    def text(self) -> str:
        if self.kind == "cron":
            return f"cron '{self.expression}' ({self.time_zone})"
        at = ", ".join(f"{h:02d}:{m:02d}" for h in self.hours for m in (self.minutes or (0,)))
        days = f" on {', '.join(self.week_days)}" if self.week_days else ""
        return f"every {self.interval} {self.frequency.lower()}{days}{' at ' + at if at else ''} ({self.time_zone})"


@dataclass(frozen=True)
class ComputeInstanceRecord:
    """A compute instance as listed: enough to decide what to do with it and to report it."""

    workspace: WorkspaceRef
    name: str
    state: str
    vm_size: str = ""
    location: str = ""
    tags: Dict[str, str] = field(default_factory=dict)
    assigned_user_object_id: Optional[str] = None
    assigned_user_tenant_id: Optional[str] = None
    idle_shutdown_minutes: Optional[int] = None
    last_operation: Optional[str] = None  # lastOperation.operationName: Start, Stop, Restart, Create, ...
    # lastOperation.operationTrigger (User, Schedule, IdleShutdown) and operationStatus (InProgress,
    # Succeeded, StopFailed, ...): who stopped a CI, the platform itself or a person/tool.
    last_operation_trigger: Optional[str] = None
    last_operation_status: Optional[str] = None
    # The CI's own enabled stop schedules (properties.schedules.computeStartStop, action Stop).
    stop_schedules: Tuple[CISchedule, ...] = ()
    created_on: Optional[str] = None  # ISO 8601 as the service reports it (orders racing creations)

    @property
    def key(self) -> str:
        return f"{self.workspace.key}/{self.name}"

    @property
    def arm_id(self) -> str:
        return f"{self.workspace.arm_id}/computes/{self.name}"


@dataclass(frozen=True)
class NewComputeInstance:
    """What the create runbook asks Azure ML to create: size, assigned user, idle shutdown and tags."""

    name: str
    size: str
    user_object_id: str
    user_tenant_id: str
    idle_minutes: int
    tags: Dict[str, str] = field(default_factory=dict)


# Subscription, tenant and Entra object ids are GUIDs: 8-4-4-4-12 hex digits.
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def is_guid(text: object) -> bool:
    """True when ``text`` is a GUID string (any letter case)."""
    return isinstance(text, str) and GUID.match(text) is not None


# Resource group: 1-90 letters, digits, underscores, hyphens, periods, parentheses; not ending in a
# period (Learn, azure-resource-manager/management/resource-name-rules, Microsoft.Resources).
RESOURCE_GROUP_NAME = re.compile(r"^[\w\-.()]{1,90}$", re.UNICODE)
# Azure ML workspace: 3-33 alphanumerics, hyphens, underscores, starting alphanumeric (same page).
WORKSPACE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,32}$")


def is_resource_group_name(text: object) -> bool:
    """True when ``text`` is a well-formed resource group name: nothing that could change an ARM
    URL's meaning (``/ ? # %``, spaces, NUL, a lone ``.`` or ``..``) gets through."""
    return isinstance(text, str) and RESOURCE_GROUP_NAME.match(text) is not None and not text.endswith(".")


def is_workspace_name(text: object) -> bool:
    """True when ``text`` is a well-formed Azure ML workspace name."""
    return isinstance(text, str) and WORKSPACE_NAME.match(text) is not None


# Outcomes: every CI in a report ends with exactly one of these.
STOPPED = "stopped"
WOULD_STOP = "would_stop"  # dry run
ALREADY_STOPPED = "already_stopped"
EXEMPT = "exempt"
SKIPPED = "skipped"
FAILED = "failed"
OUTCOMES = (STOPPED, WOULD_STOP, ALREADY_STOPPED, EXEMPT, SKIPPED, FAILED)
# The morning start's own words for the same ideas.
STARTED = "started"
WOULD_START = "would_start"  # dry run
ALREADY_RUNNING = "already_running"
RUNNING_STATES = ("Running", "JobRunning")
STOPPED_STATES = ("Stopped", "Stopping")
# Azure ML ComputeInstanceState values that mean "busy changing": never touched, reported.
TRANSITION_STATES = ("Creating", "Deleting", "Restarting", "Resizing", "SettingUp", "Starting", "UserSettingUp")
# States that mean something is wrong with the CI: never touched, reported for a human.
FAILED_STATES = ("CreateFailed", "SetupFailed", "UserSetupFailed", "Unusable", "Unknown")


@dataclass(frozen=True)
class Money:
    """An amount in one currency. Adding amounts in different currencies raises ValueError."""

    amount: float
    currency: str

    def __add__(self, other: object) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        if other.currency != self.currency:
            raise ValueError(f"cannot add {other.currency} to {self.currency}")
        return Money(self.amount + other.amount, self.currency)

    def __radd__(self, other: object) -> Money:
        # Lets sum() start from its default 0.
        if other == 0:
            return self
        return self.__add__(other)

    def format(self) -> str:
        """The amount for people, e.g. ``"USD 12.34"``."""
        return f"{self.currency} {self.amount:.2f}"


@dataclass(frozen=True)
class PriceQuote:
    """The Linux pay-as-you-go price of one VM size in one region."""

    vm_size: str
    region: str
    currency: str
    hourly: float
    meter: str
    effective_from: str


def estimate_cost(quote: Optional[PriceQuote], hours: float) -> Optional[Money]:
    """What ``hours`` of the quoted VM cost; None when the price is unknown."""
    if hours < 0 or math.isnan(hours):
        raise ValueError(f"hours must be >= 0, not {hours}")
    if quote is None:
        return None
    return Money(quote.hourly * hours, quote.currency)


def hours_until(now: datetime, until: datetime) -> float:
    """Hours from ``now`` to ``until``; 0 if ``until`` has passed."""
    return max(0.0, (until - now).total_seconds() / 3600.0)
