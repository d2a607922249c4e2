"""Who may exempt a compute instance, and the one decision "record now / needs approval / reject".

Settings section ``exemption`` (read with ``settings.section("exemption", ExemptionSection)``)::

    {"max_hours": 72, "approvers": ["lead@contoso.com", "<object id>"], "allow_assigned_user": true,
     "require_shared_secret": "X-CI-Governance-Secret", "time_zones": ["UTC", "Europe/Berlin"],
     "default_time_zone": "UTC", "max_reason_length": 200, "tag_write_method": "auto",
     "auto_approve_below": {"amount": 20, "currency": "USD"}}

Cost rule: an exemption's estimated cost (list price of the CI's VM size x hours until it ends) below
``auto_approve_below`` is recorded at once; at or above it, or when the cost is unknown, it needs an
approver from ``approvers`` who is not the requester. ``null`` turns the rule off.

Everything here is pure: no I/O (the price is looked up by the caller), so the runbook and the
tests share one rule book.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional, Tuple

from shared.exemption.request import ExemptionRequest
from shared.models import ComputeInstanceRecord
from shared.pricing.cost import CICost
from shared.sections import CostLimit, ExemptionSection, read_sections
from shared.settings import Settings
from shared.tags import TagNames, read_exemption_for
from shared.teams.inbound import Approval, Responder, listed

# Verdicts of decide_exemption.
RECORD = "record"
NEEDS_APPROVAL = "needs_approval"
REJECT = "reject"

# Any instant serves to read who recorded an exemption; a fixed one keeps decide_exemption clock-free.
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)








def load_section(settings: Settings) -> ExemptionSection:
    """Read and check the ``exemption`` section, including what it needs from ``teams`` (the registry's
    cross-section rules, :func:`shared.sections.read_sections`)."""
    return read_sections(settings).exemption


@dataclass(frozen=True)
class PolicyDecision:
    """``verdict`` is RECORD, NEEDS_APPROVAL or REJECT; ``basis`` says why the requester may act."""

    verdict: str
    reasons: Tuple[str, ...] = ()
    basis: str = ""
    approved_by: str = ""  # the approver whose answer let it through, if one was given


def cost_gate(cost: Optional[CICost], limit: Optional[CostLimit]) -> Optional[str]:
    """None when the cost rule lets a request through at once; else why it needs an approver.

    An unknown cost is never "below": a price we could not look up must not let a GPU run all weekend.
    """
    if limit is None:
        return None
    who = "an approver who is not the requester must approve it"
    money = cost.amount if cost is not None else None
    if cost is None or money is None:
        reason = cost.unknown_reason if cost is not None and cost.unknown_reason else "no price"
        return f"The estimated cost is unknown ({reason}), so {who}."
    if money.currency != limit.currency:
        return f"The estimated cost is in {money.currency}, the limit in {limit.currency}: they cannot be compared, so {who}."
    if money.amount < limit.amount:
        return None
    return f"The estimated cost {money.format()} is not below the auto-approval limit {limit.money.format()}, so {who}."


def is_approver(responder: Responder, section: ExemptionSection) -> bool:
    """True if the responder's object id or UPN is in ``approvers`` (case-insensitive).

    E-mail is not matched: the mail attribute is not guaranteed unique in a tenant, the UPN is.
    """
    return listed((responder.object_id, responder.user_principal_name), section.approvers)


def is_assigned_user(responder: Responder, ci: ComputeInstanceRecord) -> bool:
    """True if the responder is the CI's assigned user: object id **and** tenant, both known and equal.

    An object id is unique only within its tenant, so a responder whose tenant is missing or blank
    (or a CI that does not say its user's tenant) is not matched on the object id alone.
    """
    if not ci.assigned_user_object_id or ci.assigned_user_object_id.lower() != responder.object_id.lower():
        return False
    tenant = (ci.assigned_user_tenant_id or "").strip().lower()
    return bool(tenant) and tenant == (responder.tenant_id or "").strip().lower()


def is_same_person(a: Responder, b: Responder) -> bool:
    """True if ``a`` and ``b`` may be one person: ANY identifier in common (object id, or a UPN or
    mail of one equal to a UPN or mail of the other; case-insensitive).

    Used to refuse self-approval, so it errs towards "same": an approver whose UPN is the
    requester's mail is refused even when the object ids differ (a second account of one person).
    """
    if a.object_id and b.object_id and a.object_id.lower() == b.object_id.lower():
        return True
    names_a = {a.user_principal_name.strip().lower(), a.email.strip().lower()} - {""}
    names_b = {b.user_principal_name.strip().lower(), b.email.strip().lower()} - {""}
    return bool(names_a & names_b)


def approval_problems(approval: Approval, requester: Responder, section: ExemptionSection) -> Tuple[str, ...]:
    """Why ``approval`` does not let the request through (empty: it is a valid "Approve").

    Self-approval is checked first, so a requester who presses Approve is told exactly that.
    """
    approver = Responder(object_id=approval.approver_object_id, user_principal_name=approval.approver_upn, email=approval.approver_email)
    if is_same_person(approver, requester):
        return (f"{approval.who}, you cannot approve your own request: another approver must.",)
    if not is_approver(approver, section):
        return (f"{approval.who} is not an approver (exemption.approvers), so their answer does not count.",)
    if approval.rejected:
        return (f"{approval.who} rejected the request: {approval.comments or '(no comment)'}",)
    if not approval.approved:
        return (f"The approval outcome '{approval.outcome}' is neither Approve nor Reject.",)
    return ()


def decide_exemption(
    request: ExemptionRequest,
    ci: ComputeInstanceRecord,
    section: ExemptionSection,
    names: TagNames = TagNames(),
    cost: Optional[CICost] = None,
) -> PolicyDecision:
    """Record now, needs approval, or reject: the single place that decides (pure).

    Who may act: the CI's assigned user (if allowed) or an approver; a cancellation may also come
    from whoever recorded the current exemption. Then, for a request (not a cancellation): an
    approval in the body must hold (an approver, not the requester, answering Approve); without
    one, the cost rule decides (:func:`cost_gate`): below the limit it is recorded, else it needs
    approval. ``cost`` None means "not estimated", which the cost rule treats as unknown.
    """
    basis = _basis(request, ci, section, names)
    if not basis:
        who = request.responder
        allowed = "an approver" if not section.allow_assigned_user else "the compute instance's assigned user or an approver"
        if section.allow_assigned_user and not ci.assigned_user_object_id:
            allowed = "an approver (this compute instance has no assigned user)"
        return PolicyDecision(REJECT, (f"{who.who} may not {'cancel' if request.is_cancel else 'request'} an exemption for {ci.name}: only {allowed} may.",))
    if request.is_cancel:
        return PolicyDecision(RECORD, basis=basis)
    if request.approval is not None:
        # An answer that was given always counts, even if the cost no longer needs it: a "Reject" is never overridden.
        problems = approval_problems(request.approval, request.responder, section)
        if problems:
            return PolicyDecision(REJECT, problems, basis)
        return PolicyDecision(RECORD, basis=basis, approved_by=request.approval.who)
    why = cost_gate(cost, section.auto_approve_below)
    if why:
        return PolicyDecision(NEEDS_APPROVAL, (why,), basis)
    return PolicyDecision(RECORD, basis=basis)


def _basis(request: ExemptionRequest, ci: ComputeInstanceRecord, section: ExemptionSection, names: TagNames) -> str:
    """Why the responder may act on ``ci`` at all ("" if they may not)."""
    who = request.responder
    if is_approver(who, section):
        return "approver"
    if section.allow_assigned_user and is_assigned_user(who, ci):
        return "assigned user"
    if request.is_cancel:
        # The status carries the exemption even when expired or partly malformed; on the CI or its workspace.
        # The recorder is matched by UPN or object id only: the mail attribute is not unique in a
        # tenant (anyone whose mail equals someone's UPN could otherwise cancel their exemption).
        current = read_exemption_for(ci.tags, ci.workspace.tags, ci.name, _EPOCH, names).exemption
        if current is not None and current.by and current.by.strip().lower() in {who.user_principal_name.lower(), who.object_id.lower()} - {""}:
            return "requester of the current exemption"
    return ""
