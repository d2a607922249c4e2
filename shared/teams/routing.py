"""Where a card goes: the addressee in URL query parameters of the workflow URL (pure, no I/O).

The routing contract with the Teams workflow (docs/admin.md, "Routing contract"): every card is
POSTed to the workflow URL with the Teams message envelope as the body; who gets it travels in query
parameters **appended** to the signed URL (the signed ``sp``/``sv``/``sig`` are never re-encoded):

- ``recipient=<UPN or Entra object id>`` and ``recipient_type=upn|object_id``: a chat with that
  person; both absent: the configured channel (the admins' place);
- ``audience=approvers``: an approval card, for the configured approvers' place (with a
  ``recipient`` when ``teams.approvers_recipient`` names one person);
- ``wait=true`` only when the card expects an answer (it has an ``Action.Submit``): the flow then
  posts it with "wait for a response"; every other card is posted without waiting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, Iterator, Mapping, Optional, Tuple
from urllib.parse import urlencode, urlsplit, urlunsplit

from shared.models import GUID

UPN = "upn"
OBJECT_ID = "object_id"
APPROVERS = "approvers"
# A UPN or e-mail address: one @, no spaces; Teams resolves it, we only route on it.
_UPN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def recipient_kind(address: str) -> Optional[str]:
    """``upn`` or ``object_id`` for an address a flow can post to, else None."""
    text = (address or "").strip()
    if not text.isprintable() or any("\ud800" <= ch <= "\udfff" for ch in text):
        return None  # no sign-in name has control characters or lone surrogates: never address one
    if _UPN.match(text):
        return UPN
    if GUID.match(text):
        return OBJECT_ID
    return None


@dataclass(frozen=True)
class Address:
    """Who a card is for: a person (``recipient`` + ``recipient_type``), the configured channel
    (both empty), optionally for the approvers (``audience``)."""

    recipient: str = ""
    recipient_type: str = ""
    audience: str = ""
    name: str = ""  # how to name them in the job output (display name or UPN); never sent

    @classmethod
    def person(cls, address: str, name: str = "") -> Address:
        """A chat with ``address`` (UPN or object id); the channel when it is neither."""
        kind = recipient_kind(address)
        if kind is None:
            return cls()
        text = address.strip()
        return cls(text if kind == UPN else text.lower(), kind, "", name)

    @classmethod
    def responder(cls, responder: Any) -> Address:
        """The person who pressed a button, from Teams' ``responder`` object (a mapping or an object
        with ``user_principal_name`` / ``object_id``): their UPN, else their object id, else the channel."""
        if isinstance(responder, Mapping):
            upn, oid, name = responder.get("userPrincipalName"), responder.get("objectId"), responder.get("displayName")
        else:
            upn, oid, name = (getattr(responder, a, None) for a in ("user_principal_name", "object_id", "display_name"))
        if isinstance(name, str) and not name.isprintable():
            name = ""
        for candidate in (upn, oid):
            if isinstance(candidate, str) and recipient_kind(candidate):
                return cls.person(candidate, name if isinstance(name, str) else "")
        return cls()

    @classmethod
    def approvers(cls, approvers_recipient: Optional[str] = None) -> Address:
        """The approvers' place: ``teams.approvers_recipient`` when set, else the flow's approvers channel."""
        person = cls.person(approvers_recipient or "")
        return cls(person.recipient, person.recipient_type, APPROVERS, "the approvers")

    @property
    def is_channel(self) -> bool:
        return not self.recipient

    @property
    def label(self) -> str:
        """For log lines: ``ada@contoso.com``, ``user <object id>``, ``the approvers`` or ``the channel``."""
        if self.audience == APPROVERS:
            return "the approvers" + (f" ({self.recipient})" if self.recipient else "")
        if self.name and self.recipient:
            return f"{self.name} ({self.recipient})" if self.name != self.recipient else self.recipient
        if self.recipient_type == OBJECT_ID:
            return f"user {self.recipient}"
        return self.recipient or "the channel"

    def query(self, wait: bool = False) -> Tuple[Tuple[str, str], ...]:
        """The query parameters this address adds (in this order)."""
        pairs = []
        if self.recipient:
            pairs += [("recipient", self.recipient), ("recipient_type", self.recipient_type)]
        if self.audience:
            pairs.append(("audience", self.audience))
        if wait:
            pairs.append(("wait", "true"))
        return tuple(pairs)

    def to_dict(self) -> Dict[str, str]:
        return {"recipient": self.recipient, "recipient_type": self.recipient_type, "audience": self.audience, "label": self.label}


CHANNEL = Address()


def expects_answer(card: Mapping[str, Any]) -> bool:
    """True when the card has an ``Action.Submit`` anywhere (body, actions, show cards): its answer matters."""
    return any(e.get("type") == "Action.Submit" for e in iter_elements(card))


def address_url(workflow_url: str, address: Address, wait: bool = False) -> str:
    """``workflow_url`` with the address's query parameters appended, never re-encoding the signed ones."""
    pairs = address.query(wait)
    if not pairs:
        return workflow_url
    parts = urlsplit(workflow_url)
    extra = urlencode(pairs)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def iter_elements(card: Any) -> Iterator[Dict[str, Any]]:
    """Every JSON object in a card (elements, inputs, actions, their data), depth-first in document order."""
    if isinstance(card, dict):
        yield card
        for value in card.values():
            yield from iter_elements(value)
    elif isinstance(card, list):
        for item in card:
            yield from iter_elements(item)
