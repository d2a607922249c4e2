"""Post Adaptive Cards to a Teams Workflows webhook ("When a Teams webhook request is received").

The webhook URL carries a secret (``sig=``): it is never logged, only :func:`redact_url`'s form.
Posting never raises on HTTP or transport errors: a card is a notification about work already
done, and failing to post it must not undo or hide that work. Note that the trigger answers 202
once the flow run is queued: a card the flow then fails to post (too big, bad card) shows up only
in the flow's run history, so an ``ok`` result means "accepted by the workflow", not "seen in Teams".
"""

from __future__ import annotations

import email.utils
import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Optional
from urllib.parse import urlsplit

import requests

from shared.teams.cards import MAX_MESSAGE_BYTES, message_bytes

log = logging.getLogger(__name__)

MAX_WAIT_SECONDS = 30.0
_SIG = re.compile(r"(sig=)[^&\s'\"]+", re.IGNORECASE)


@dataclass
class PostResult:
    """What happened to one post: ``ok`` when the workflow accepted it (2xx)."""

    ok: bool
    status: Optional[int]
    attempts: int
    error: Optional[str]


def is_retryable(status: int) -> bool:
    """Transient answers worth another try: request timeout, throttling, server errors."""
    return status in (408, 429) or 500 <= status <= 599


def redact_url(url: str) -> str:
    """The URL without its path and query (which hold the workflow id and the ``sig`` secret): ``https://host/…``."""
    try:
        parts = urlsplit(url or "")
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid URL>"
    if not parts.scheme or not host:
        return "<invalid URL>"
    return f"{parts.scheme}://{host}{port}/\u2026"


def retry_after_seconds(value: Optional[str], now: Optional[datetime] = None) -> Optional[float]:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max((when - (now or datetime.now(timezone.utc))).total_seconds(), 0.0)


class _RedactSignature(logging.Filter):
    """Scrubs ``sig=`` tokens from records: urllib3 logs each request line (query included) at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg, record.args = record.getMessage(), None
        if isinstance(record.msg, str):
            record.msg = _SIG.sub(r"\1***", record.msg)
        return True


def install_log_redaction() -> None:
    """Redact ``sig=`` in urllib3's own log records, in case a runbook turns on DEBUG logging (idempotent)."""
    logger = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, _RedactSignature) for f in logger.filters):
        logger.addFilter(_RedactSignature())


class TeamsWorkflowClient:
    """Posts cards to one Teams Workflows webhook URL, retrying transient failures."""

    def __init__(
        self,
        url: str,
        *,
        session: Optional[requests.Session] = None,
        max_attempts: int = 4,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = 10,
        backoff_seconds: float = 1.0,
    ):
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._url = url
        install_log_redaction()
        self._session = session or requests.Session()
        self.max_attempts = max_attempts
        self._sleep = sleep
        self.timeout = timeout
        self.backoff_seconds = backoff_seconds

    @property
    def redacted_url(self) -> str:
        """The URL as it may appear in logs."""
        return redact_url(self._url)

    def _scrub(self, text: str) -> str:
        # Exceptions from requests/urllib3 quote the URL (path and query included): remove it before logging.
        parts = urlsplit(self._url)
        for secret in (self._url, parts.path + ("?" + parts.query if parts.query else ""), parts.query):
            if secret:
                text = text.replace(secret, "\u2026")
        return _SIG.sub(r"\1***", text)

    def _wait(self, attempt: int, retry_after: Optional[float]) -> float:
        wait = retry_after if retry_after is not None else self.backoff_seconds * (2 ** (attempt - 1))
        return min(wait, MAX_WAIT_SECONDS)

    def post_card(self, card: Dict[str, Any]) -> PostResult:
        """Post ``card`` in the Teams message envelope. Never raises for HTTP or transport errors."""
        target = self.redacted_url
        if target == "<invalid URL>" or urlsplit(self._url).scheme != "https":
            # Also refuses http://: the sig token would cross the network in clear text.
            return PostResult(False, None, 0, "no valid https:// Teams workflow URL is configured")
        try:
            body = message_bytes(card)
        except (TypeError, ValueError) as exc:
            return PostResult(False, None, 0, f"the card is not JSON-serialisable: {exc}")
        if len(body) > MAX_MESSAGE_BYTES:
            return PostResult(False, None, 0, f"the message is {len(body)} bytes; Teams accepts at most {MAX_MESSAGE_BYTES}")
        headers = {"Content-Type": "application/json; charset=utf-8"}
        status: Optional[int] = None
        error = "not attempted"
        for attempt in range(1, self.max_attempts + 1):
            retry_after: Optional[float] = None
            try:
                response = self._session.post(self._url, data=body, headers=headers, timeout=self.timeout)
            except requests.RequestException as exc:
                status, error = None, f"{type(exc).__name__}: {self._scrub(str(exc))}"
                retryable = True
            else:
                status = response.status_code
                if 200 <= status < 300:
                    log.info("Posted a card to the Teams workflow %s (HTTP %d, attempt %d)", target, status, attempt)
                    return PostResult(True, status, attempt, None)
                error = f"HTTP {status}: {self._scrub(_snippet(response))}"
                retryable = is_retryable(status)
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            if not retryable:
                log.error("The Teams workflow %s refused the card: %s (not retried)", target, error)
                return PostResult(False, status, attempt, error)
            if attempt < self.max_attempts:
                wait = self._wait(attempt, retry_after)
                log.warning("Posting to the Teams workflow %s failed (%s); retry %d/%d in %.1f s", target, error, attempt, self.max_attempts - 1, wait)
                self._sleep(wait)
        log.error("Gave up posting to the Teams workflow %s after %d attempts: %s", target, self.max_attempts, error)
        return PostResult(False, status, self.max_attempts, f"gave up after {self.max_attempts} attempts: {error}")


def _snippet(response: requests.Response) -> str:
    try:
        text = response.text or ""
    except Exception:  # an undecodable body must not turn a failed post into a crash
        return "<unreadable body>"
    text = " ".join(text.split())
    return text[:300] + ("\u2026" if len(text) > 300 else "") if text else response.reason or "no body"
