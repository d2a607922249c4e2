"""One translation of azure-core errors: a readable line, and whether one more try is worth it."""

from __future__ import annotations

# HTTP statuses after which the same request may well succeed (401: the token expired meanwhile).
TRANSIENT_STATUSES = (401, 408, 429, 500, 502, 503, 504)


def describe_error(exc: BaseException) -> str:
    """One line for an Azure error: status, code and message, without a stack trace."""
    status = getattr(exc, "status_code", None)
    err = getattr(exc, "error", None)
    code = getattr(err, "code", None)
    message = getattr(err, "message", None) or str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    parts = [p for p in (f"HTTP {status}" if status else None, code) if p]
    return f"{' '.join(parts)}: {message}" if parts else f"{type(exc).__name__}: {message}"


def is_transient(exc: BaseException) -> bool:
    """True for failures worth one more try: a transient HTTP status or a connection problem."""
    from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return True  # connection refused/reset, read timeout
    return isinstance(exc, HttpResponseError) and exc.status_code in TRANSIENT_STATUSES
