"""A fake Teams Workflows webhook trigger ("When a Teams webhook request is received").

It answers like the Logic Apps trigger behind it: 202 for an accepted message, 401 for a wrong
``sig``. Checks the real trigger does later, inside the flow run (the message envelope, Teams'
28 KB limit), are answered here synchronously (400, 413) so that tests can see them.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

from fake_azure.server import FakeArmServer, FakeRequest, FakeResponse

DEFAULT_URL = (
    "https://prod-00.westeurope.logic.azure.com/workflows/0000/triggers/manual/paths/invoke"
    "?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=fake-signature"
)
MAX_MESSAGE_BYTES = 28 * 1024
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"


def _error(status: int, code: str, message: str) -> FakeResponse:
    return FakeResponse(status, {"error": {"code": code, "message": message}})


def envelope_problem(body: Any) -> Optional[str]:
    """Why ``body`` is not a Teams message envelope carrying Adaptive Cards, or None when it is."""
    if not isinstance(body, dict) or body.get("type") != "message":
        return 'the body must be an object with "type": "message"'
    attachments = body.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        return '"attachments" must be a non-empty list'
    for i, attachment in enumerate(attachments):
        if not isinstance(attachment, dict) or attachment.get("contentType") != CARD_CONTENT_TYPE:
            return f"attachments[{i}].contentType must be {CARD_CONTENT_TYPE}"
        content = attachment.get("content")
        if not isinstance(content, dict) or content.get("type") != "AdaptiveCard":
            return f"attachments[{i}].content must be an AdaptiveCard object"
    return None


class FakeTeamsWorkflow:
    """Registers the workflow's trigger URL on ``server`` and records every message it accepts."""

    def __init__(self, server: FakeArmServer, url: str = DEFAULT_URL):
        parts = urlsplit(url)
        self.url = url
        self.signature = parse_qs(parts.query).get("sig", [""])[-1]
        self.messages: List[Dict[str, Any]] = []
        # (query, message) of every accepted post: the addressee travels in the query (docs/admin.md, "Routing contract").
        self.deliveries: List[Tuple[Dict[str, str], Dict[str, Any]]] = []
        self.rejected: List[Tuple[int, str]] = []  # (status, reason) of every refused post
        self._lock = threading.Lock()
        server.route("POST", re.escape(parts.path), self._handle, host=f"{parts.scheme}://{parts.hostname}", authenticated=False)

    @property
    def addressed_cards(self) -> List[Tuple[Dict[str, str], Dict[str, Any]]]:
        """(routing query, card) of every accepted post, in order: ``recipient``, ``recipient_type``, ``audience``, ``wait``."""
        with self._lock:
            return [(q, a["content"]) for q, m in self.deliveries for a in m["attachments"]]

    @property
    def cards(self) -> List[Dict[str, Any]]:
        """The Adaptive Card of every attachment of every accepted message, in order."""
        with self._lock:
            return [a["content"] for m in self.messages for a in m["attachments"]]

    def _reject(self, status: int, code: str, message: str) -> FakeResponse:
        with self._lock:
            self.rejected.append((status, message))
        return _error(status, code, message)

    def _handle(self, request: FakeRequest) -> FakeResponse:
        if request.query.get("sig") != self.signature:
            return self._reject(401, "DirectApiInvalidAuthorizationSignature", "The provided authorization signature is not valid.")
        body = request.body if isinstance(request.body, bytes) else str(request.body or "").encode("utf-8")
        if len(body) > MAX_MESSAGE_BYTES:
            return self._reject(413, "MessageTooLarge", f"The message is {len(body)} bytes; Teams accepts at most {MAX_MESSAGE_BYTES}.")
        try:
            message = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return self._reject(400, "InvalidRequestContent", "The request body is not valid JSON.")
        problem = envelope_problem(message)
        if problem:
            return self._reject(400, "InvalidTeamsMessage", problem)
        with self._lock:
            self.messages.append(message)
            self.deliveries.append(({k: v for k, v in request.query.items() if k not in ("sig", "sp", "sv", "api-version")}, message))
        return FakeResponse(202, None)
