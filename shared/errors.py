"""Every error the product raises on purpose: the foundation's input errors and the ports' translations of
what an external system said, so capabilities catch these and never an SDK's own types."""

from __future__ import annotations


class SettingsError(ValueError):
    """The settings are missing something or hold a value that cannot work."""


class UsageError(ValueError):
    """The runbook was given parameters it cannot use."""


class TagFormatError(ValueError):
    """A tag name or value that Azure would refuse, or that this module cannot read."""
