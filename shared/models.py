"""Plain records of what the product sees in Azure, independent of the SDK's classes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional


@dataclass(frozen=True)
class WorkspaceRef:
    """An Azure ML workspace, identified by subscription, resource group and name."""

    subscription_id: str
    resource_group: str
    name: str
    location: str = ""

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
    last_operation: Optional[str] = None

    @property
    def key(self) -> str:
        return f"{self.workspace.key}/{self.name}"

    @property
    def arm_id(self) -> str:
        return f"{self.workspace.arm_id}/computes/{self.name}"
