"""An approver's answer, as the approval step of a Teams flow reports it (pure; shared by the create
and exemption runbooks).

The flow adds it to the request body it sends on to the runbook::

    "approval": {"outcome": "Approve" | "Reject",
                 "approver": {"objectId", "tenantId", "userPrincipalName", "displayName"},
                 "comments": "...", "responseTime": "..."}

``outcome`` uses the Approvals connector's words ("Approve" / "Reject"; matched here without regard
to case). The approver must come from the identity the approval step itself reports (the responder
of an approval card, or the Approvals connector's responder), never from anything typed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, List, Mapping, Optional, Tuple

from shared.models import GUID as _GUID
from shared.tags import clean_text

APPROVE_OUTCOME = "approve"  # the Teams/Power Automate approval outcome that means yes
REJECT_OUTCOME = "reject"
MAX_COMMENT_CHARS = 200  # shown on the answer card and in the job log
_MAX_FIELD_CHARS = 1024  # anything longer is refused before it is looked at


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
    outcome = _text(value, "outcome", problems, required=True) or ""
    upn = _text(approver, "userPrincipalName", problems) or ""
    oid = _text(approver, "objectId", problems) or ""
    mail = _text(approver, "email", problems) or _text(approver, "mail", problems) or ""
    comments = _text(value, "comments", problems) or ""
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


def _text(data: Mapping[str, Any], key: str, problems: List[str], *, required: bool = False) -> Optional[str]:
    value = data.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            problems.append(f"'{key}' is missing")
        return None
    if not isinstance(value, str):
        problems.append(f"'{key}' must be text, not {type(value).__name__}")
        return None
    if len(value) > _MAX_FIELD_CHARS:
        problems.append(f"'{key}' is {len(value)} characters long; far more than any valid value")
        return None
    return value.strip()


def listed(identities: Iterable[Optional[str]], entries: Iterable[str]) -> bool:
    """True if any of a person's ``identities`` (UPN, object id) is in ``entries`` (an approvers
    list of UPNs or object ids), case-insensitively. Empty identities never match."""
    wanted = {e.strip().lower() for e in entries} - {""}
    return any(i and i.strip().lower() in wanted for i in identities)
