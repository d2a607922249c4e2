"""Every error the product raises on purpose: the foundation's input errors and the ports' translations of
what an external system said, so capabilities catch these and never an SDK's own types."""

from __future__ import annotations

from typing import List, Optional


class SettingsError(ValueError):
    """The settings are missing something or hold a value that cannot work."""


class UsageError(ValueError):
    """The runbook was given parameters it cannot use."""


class TagFormatError(ValueError):
    """A tag name or value that Azure would refuse, or that this module cannot read."""


class ServiceError(Exception):
    """An external service (Azure) refused or failed a call.

    ``status`` is the HTTP status (None when no answer came), ``code`` and ``message`` the service's
    own; ``transient`` says whether one more try may help; ``earlier_statuses`` what earlier attempts
    of the same request got (azure-core retries some on its own: a 5xx then a 409 means the first
    attempt may have been carried out). Ports translate SDK errors into these, so capabilities
    never see an SDK's own exception types.
    """

    def __init__(self, message: str, *, status: Optional[int] = None, code: Optional[str] = None, transient: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.transient = transient
        self.earlier_statuses: List[int] = []

    @property
    def status_code(self) -> Optional[int]:
        """The HTTP status under azure-core's name for it."""
        return self.status

    def service_message(self) -> str:
        """The service's own ``code: message`` (not the HTTP status of a poll)."""
        return f"{self.code}: {self.message}" if self.code else self.message

    def describe(self) -> str:
        """One line: status, code and message, without a stack trace."""
        parts = [p for p in (f"HTTP {self.status}" if self.status else None, self.code) if p]
        return f"{' '.join(parts)}: {self.message}" if parts else self.message


class NotFoundError(ServiceError):
    """The resource does not exist (HTTP 404)."""


class ConflictError(ServiceError):
    """Another operation holds the resource, or it already exists (HTTP 409)."""


class AuthError(ServiceError):
    """No token could be had, or the service refused it (HTTP 401)."""


class OperationFailedError(ServiceError):
    """A long-running operation was accepted and then failed; the message is the operation's."""


class GatewayError(ServiceError):
    """Azure ML answered, but not with what was asked for (e.g. the name is another kind of compute)."""


class TagWriteError(RuntimeError):
    """The tags could not be written, or were written but did not show on the resource."""
