"""One translation of azure-core errors into :mod:`shared.errors` types, a readable line, and
whether one more try is worth it. Only the ``shared.azure`` port sees azure-core's exceptions."""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar, cast

from shared.errors import AuthError, ConflictError, NotFoundError, OperationFailedError, ServiceError

F = TypeVar("F", bound=Callable[..., Any])

# HTTP statuses after which the same request may well succeed (401: the token expired meanwhile).
TRANSIENT_STATUSES = (401, 408, 429, 500, 502, 503, 504)


def describe_error(exc: BaseException) -> str:
    """One line for an Azure error: status, code and message, without a stack trace."""
    if isinstance(exc, ServiceError):
        return exc.describe()
    status = getattr(exc, "status_code", None)
    err = getattr(exc, "error", None)
    code = getattr(err, "code", None)
    message = getattr(err, "message", None) or str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    parts = [p for p in (f"HTTP {status}" if status else None, code) if p]
    return f"{' '.join(parts)}: {message}" if parts else f"{type(exc).__name__}: {message}"


def is_transient(exc: BaseException) -> bool:
    """True for failures worth one more try: a transient HTTP status or a connection problem."""
    if isinstance(exc, ServiceError):
        return exc.transient
    from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return True  # connection refused/reset, read timeout
    return isinstance(exc, HttpResponseError) and exc.status_code in TRANSIENT_STATUSES


def translate(exc: BaseException, *, operation: bool = False) -> ServiceError:
    """The :mod:`shared.errors` type for an azure-core exception (``operation``: it came from a
    long-running operation's result rather than the request itself)."""
    if isinstance(exc, ServiceError):
        return exc
    from azure.core.exceptions import ClientAuthenticationError, ResourceExistsError, ResourceNotFoundError

    status = getattr(exc, "status_code", None)
    err = getattr(exc, "error", None)
    code = getattr(err, "code", None)
    text = str(exc).strip()
    message = getattr(err, "message", None) or (text.splitlines()[0] if text else type(exc).__name__)
    cls: type = ServiceError
    if operation:
        cls = OperationFailedError
    elif isinstance(exc, ResourceNotFoundError) or status == 404:
        cls = NotFoundError
    elif isinstance(exc, ResourceExistsError) or status == 409:
        cls = ConflictError
    elif isinstance(exc, ClientAuthenticationError):
        cls = AuthError
    out = cls(str(message), status=status, code=code, transient=is_transient(exc))
    out.earlier_statuses = list(getattr(exc, "earlier_statuses", []) or [])
    return out


def translated(func: F) -> F:
    """Decorate a port method so that any azure-core exception leaves it as a :class:`ServiceError`."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ServiceError:
            raise
        except Exception as exc:
            from azure.core.exceptions import AzureError

            if isinstance(exc, AzureError):
                raise translate(exc) from exc
            raise

    return cast(F, wrapper)
