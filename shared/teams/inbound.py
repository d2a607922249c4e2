"""The one reader of a Teams response body (pure; shared by the create and exemption runbooks).

The body is the output of Power Automate's "Post adaptive card and wait for a response", passed on
as-is (docs/platform.md, "Microsoft Teams and Adaptive Cards")::

    {"data": {<the card's inputs>}, "responder": {"objectId", "tenantId", "email",
     "userPrincipalName", "displayName"}, "responseTime": "...", "messageId": "...",
     "submitActionId": "...", "approval": {...}}

:func:`read_teams_response` reads the envelope (``data``, ``responder``, ``messageId``, ``approval``);
:func:`read_text` reads one text field of it. Who asked comes from ``responder`` (filled in by Teams),
never from card inputs. Problems are phrased as clauses ("'name' is missing"); :func:`as_sentence`
makes a sentence of one.

An approver's answer, as the approval step of a Teams flow reports it:

The flow adds it to the request body it sends on to the runbook::

    "approval": {"outcome": "Approve" | "Reject",
                 "approver": {"objectId", "tenantId", "userPrincipalName", "displayName"},
                 "comments": "...", "responseTime": "..."}

``outcome`` uses the Approvals connector's words ("Approve" / "Reject"; matched here without regard
to case). The approver must come from the identity the approval step itself reports (the responder
of an approval card, or the Approvals connector's responder), never from anything typed in.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from typing import Any, Iterable, List, Mapping, Optional, Tuple

from shared.models import GUID as _GUID
from shared.tags import clean_text

MAX_FIELD_CHARS = 1024  # anything longer is refused before it is looked at
APPROVE_OUTCOME = "approve"  # the Teams/Power Automate approval outcome that means yes
REJECT_OUTCOME = "reject"
MAX_COMMENT_CHARS = 200  # shown on the answer card and in the job log


@dataclass(frozen=True)
class Approval:
    """An approver's answer, from the approval step of the Teams flow or an operator's ``--approver``."""

    approver_upn: str = ""
    approver_object_id: str = ""
    outcome: str = "Approve"
    comments: str = ""
    approver_email: str = ""  # only to refuse self-approval by mail: never grants anything

    @property
    def approved(self) -> bool:
        return self.outcome.strip().lower() == APPROVE_OUTCOME

    @property
    def rejected(self) -> bool:
        return self.outcome.strip().lower() == REJECT_OUTCOME

    @property
    def who(self) -> str:
        return self.approver_upn or self.approver_object_id or "unknown approver"


def parse_approval(value: Any) -> Tuple[Optional[Approval], List[str]]:
    """Read the body's ``approval`` object: ``(approval, problems)``; ``(None, [])`` when there is none.

    Problems are phrased as clauses ("'outcome' is missing"); callers add their own punctuation.
    """
    if value is None:
        return None, []
    if not isinstance(value, Mapping) or not isinstance(value.get("approver"), Mapping):
        return None, ["'approval' must be an object with 'approver' and 'outcome'"]
    problems: List[str] = []
    approver = value["approver"]
    outcome = read_text(value, "outcome", problems, required=True) or ""
    upn = read_text(approver, "userPrincipalName", problems) or ""
    oid = read_text(approver, "objectId", problems) or ""
    mail = read_text(approver, "email", problems) or read_text(approver, "mail", problems) or ""
    comments = read_text(value, "comments", problems) or ""
    if not (upn or oid):
        problems.append("the approval does not say who approved (approver.userPrincipalName or approver.objectId)")
    if oid and not _GUID.match(oid):
        problems.append(f"approval.approver.objectId '{clean_text(oid, 60)}' is not an Entra object id (a GUID)")
    for key, name in (("userPrincipalName", upn), ("email", mail)):
        # Compared as they are: cleaning "boss\u200b@x" into "boss@x" would make it someone else.
        if name and clean_text(name) != name:
            problems.append(f"approval.approver.{key} '{clean_text(name, 60)}' contains characters no sign-in name has")
    if problems:
        return None, problems
    return Approval(clean_text(upn), oid.lower(), clean_text(outcome, 40), clean_text(comments, MAX_COMMENT_CHARS), clean_text(mail)), []


def read_text(data: Mapping[str, Any], key: str, problems: List[str], *, required: bool = False) -> Optional[str]:
    """``data[key]`` stripped, or None (absent or blank); a wrong type or an absurd length is a problem."""
    value = data.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            problems.append(f"'{key}' is missing")
        return None
    if not isinstance(value, str):
        problems.append(f"'{key}' must be text, not {type(value).__name__}")
        return None
    if len(value) > MAX_FIELD_CHARS:
        problems.append(f"'{key}' is {len(value)} characters long; that is far more than any valid value")
        return None
    return value.strip()


def as_sentence(clause: str) -> str:
    """A problem clause as a sentence: capitalised (unless it starts with a field path such as
    ``responder.objectId``) and ending with a full stop."""
    text = clause.strip()
    if text and not _FIELD_PATH.match(text):
        text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


_FIELD_PATH = re.compile(r"^[a-z]+\.[A-Za-z]")


@dataclass(frozen=True)
class Responder:
    """The Teams user who submitted the card, as Teams reports them."""

    object_id: str
    tenant_id: str = ""
    email: str = ""
    user_principal_name: str = ""
    display_name: str = ""

    @property
    def who(self) -> str:
        """How the requester is named in tags and cards: UPN, else e-mail, else object id."""
        return self.user_principal_name or self.email or self.object_id


def read_responder(value: Any, problems: List[str], *, require_tenant: bool = False, require_name: bool = False) -> Optional[Responder]:
    """The body's ``responder``; None (with the problems) when it is missing or unusable.

    ``require_tenant``: the tenant id must be given (the create runbook assigns the CI to it);
    ``require_name``: a UPN or e-mail must be given (the create runbook's owner tag).
    """
    if not isinstance(value, Mapping):
        problems.append("the request does not say who responded ('responder' is missing): the Teams flow must pass the card's responder")
        return None
    before = len(problems)
    oid = read_text(value, "objectId", problems, required=True)
    tid = read_text(value, "tenantId", problems, required=require_tenant)
    fields = {k: read_text(value, k, problems) or "" for k in ("email", "userPrincipalName", "displayName")}
    if oid and not _GUID.match(oid):
        problems.append(f"responder.objectId '{clean_text(oid, 60)}' is not an Entra object id (a GUID)")
    if tid and not _GUID.match(tid):
        problems.append(f"responder.tenantId '{clean_text(tid, 60)}' is not an Entra tenant id (a GUID)")
    for key in ("email", "userPrincipalName"):
        # Identities are compared as they are: cleaning "lead\u200b@x" into "lead@x" would make it someone else.
        if fields[key] and clean_text(fields[key]) != fields[key]:
            problems.append(f"responder.{key} '{clean_text(fields[key], 60)}' contains characters no sign-in name has")
    if require_name and oid and not (fields["userPrincipalName"] or fields["email"]):
        problems.append("the responder has neither userPrincipalName nor email: the owner tag needs one")
    if len(problems) > before or oid is None:
        return None
    return Responder(
        object_id=oid.lower(),
        tenant_id=(tid or "").lower(),
        email=clean_text(fields["email"]),
        user_principal_name=clean_text(fields["userPrincipalName"]),
        display_name=clean_text(fields["displayName"]),
    )


@dataclass(frozen=True)
class TeamsResponse:
    """What every Teams response carries besides the card's own inputs (``data``)."""

    data: Mapping[str, Any]
    responder: Optional[Responder]
    message_id: str = ""
    approval: Optional[Approval] = None


def read_teams_response(body: Any, problems: List[str], *, require_tenant: bool = False, require_name: bool = False) -> Optional[TeamsResponse]:
    """Read the response envelope. Returns None, with exactly one problem, when the body is not an
    object or has no ``data``; otherwise a :class:`TeamsResponse` whose unusable parts are None,
    with every problem found appended to ``problems``."""
    if not isinstance(body, Mapping):
        problems.append("the request is not a JSON object")
        return None
    data = body.get("data")
    if not isinstance(data, Mapping):
        problems.append("the request has no 'data' object with the card's inputs")
        return None
    responder = read_responder(body.get("responder"), problems, require_tenant=require_tenant, require_name=require_name)
    message_id = read_text(body, "messageId", problems) or ""
    approval, approval_problems = parse_approval(body.get("approval"))
    problems.extend(approval_problems)
    return TeamsResponse(data, responder, message_id, approval)


def listed(identities: Iterable[Optional[str]], entries: Iterable[str]) -> bool:
    """True if any of a person's ``identities`` (UPN, object id) is in ``entries`` (an approvers
    list of UPNs or object ids), case-insensitively. Empty identities never match."""
    wanted = {e.strip().lower() for e in entries} - {""}
    return any(i and i.strip().lower() in wanted for i in identities)


def check_shared_secret(headers: Mapping[str, str], header_name: Optional[str], expected: Optional[str]) -> Optional[str]:
    """None if the request may proceed, else the reason to refuse it (the header named in
    ``exemption.require_shared_secret`` / ``create.require_shared_secret`` against ``teams.shared_secret``).

    What it protects, and what it cannot: docs/admin.md, "The shared secret". It keeps out someone
    who learnt only the webhook URL; it does not keep out anyone who can read the job's input in the
    Automation account (Azure Automation logs every webhook input, headers included, with the job).

    With ``header_name`` unset there is nothing to check. The comparison is constant-time
    (``hmac.compare_digest``) so the secret cannot be guessed from response timing.
    """
    if not header_name:
        return None
    if not expected:
        # Settings validation refuses this combination; stay closed if it slips through.
        return "The shared secret is not configured (teams.shared_secret), so no request can be trusted."
    supplied = next((v for k, v in (headers or {}).items() if k.lower() == header_name.lower()), None)
    if supplied is None:
        return f"The request did not carry the {header_name} header."
    if not isinstance(supplied, str) or not hmac.compare_digest(supplied.encode("utf-8"), expected.encode("utf-8")):
        return f"The {header_name} header does not match the configured shared secret."
    return None
