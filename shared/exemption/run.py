"""Handle one exemption request from Teams, end to end.

shared secret -> validate (pure) -> look up the workspace and the CI -> estimate the cost (list
price x hours until the end) -> decide (pure: record now, needs approval, reject) -> idempotency ->
write tags (merge; other tags untouched) -> answer card.

A request that needs approval is answered with the pending card, whose Approve / Reject buttons send
back what the answer flow needs to re-send the request with the approver's answer (the ``approval``
object); the runbook then verifies that answer (docs/admin.md, "Cost-aware approval").

Everything that can refuse a request does so BEFORE any write. Answers go back to the person who
asked (the Teams ``responder``: a chat with them, through ``settings.teams.workflow_url`` and the
routing contract of :mod:`shared.teams.routing`); the approval card goes to the approvers' place
(``teams.approvers_recipient`` or the flow's approvers channel) while the requester is told it waits.
Two voices: a request the runbook cannot use because of the wiring (unreadable body, no responder,
the Teams flow skipping a step, a wrong shared secret) gives the requester only "could not be
processed; your admin has been told", and the admins' channel and the job output get the full text.
Failing to post is logged and reported, and never undoes a write. The run ends with a report of one
CI and its outcome.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from shared.automation.webhook import SOURCE_DIRECT, InboundRequest
from shared.azure.discovery import discover
from shared.azure.errors import describe_error
from shared.azure.ml_gateway import MLGateway
from shared.azure.tag_writer import TagWriter
from shared.errors import GatewayError, NotFoundError, ServiceError, TagWriteError
from shared.exemption.policy import NEEDS_APPROVAL, REJECT, PolicyDecision, decide_exemption
from shared.exemption.request import ACTIONS, REQUEST, ExemptionRequest, Validation, describe_asked, validate_request
from shared.models import ComputeInstanceRecord, WorkspaceRef, hours_until
from shared.pricing.client import RetailPriceClient
from shared.pricing.cost import CICost, make_client
from shared.report import CIResult, RunReport
from shared.sections import ExemptionSection, PricingSection
from shared.settings import Settings, workspace_in_scope
from shared.stop.policy import exemption_undermined_by
from shared.tags import (
    PLACE_CI,
    PLACE_WORKSPACE,
    Exemption,
    TagNames,
    clean_text,
    exemption_tags,
    read_exemption_for,
    tag_value,
    validate_tag_value,
    workspace_exemption_tag,
    workspace_exemption_value,
)
from shared.teams.inbound import check_shared_secret, parse_approval
from shared.teams.post import post_card
from shared.teams.routing import CHANNEL, Address
from shared.times import load_zone

log = logging.getLogger(__name__)

RUNBOOK = "handle_exemption_request"

# Outcomes of an exemption run (one per run).
EXEMPTED = "exempted"
ALREADY_RECORDED = "already_recorded"
CANCELLED = "cancelled"
PENDING_APPROVAL = "pending_approval"
FORM_SENT = "form_sent"
REJECTED = "rejected"
FAILED = "failed"

# The "Try again" button of the rejection card (and "Keep another" of the confirmation) asks for the
# request form again, pre-filled with what its data carries (workspace, compute_instance, until_*, reason).
FORM_ACTION = "request_exemption_form"
# What a user reads when the wiring, not their request, is at fault (the full text goes to the admins).
ADMIN_TOLD = "Your request could not be processed; your admin has been told."
_SETTING_NAMES = re.compile(r"\s*\((?:scope|create|exemption|teams|pricing)\.[\w.]+\)")
# Field ids in validation messages, in the words the form uses.
_FIELD_WORDS = {
    "workspace": "Workspace",
    "compute_instance": "Compute instance",
    "until_date": "The date",
    "until_time": "The time",
    "time_zone": "The time zone",
    "reason": "Reason",
}
# What the pending card's Approve / Reject buttons send; the answer flow turns it into the request
# body plus "approval" before it reaches the runbook, so arriving here as-is means the flow skipped that.
APPROVAL_ACTION = "exemption_approval"

Decide = Callable[[ExemptionRequest, ComputeInstanceRecord, ExemptionSection, TagNames, Optional[CICost]], PolicyDecision]


@dataclass
class ExemptionReport(RunReport):
    """A run report whose exit code also says "refused": 0 done, 1 rejected or failed, 2 unusable input."""

    unusable_input: bool = False

    @property
    def exit_code(self) -> int:
        if self.unusable_input:
            return 2
        return 1 if self.failed or any(r.outcome == REJECTED for r in self.results) else 0


@dataclass
class _Outcome:
    """What happened, and the card that answers it (plus, for a wiring error, what the admins are told)."""

    outcome: str
    detail: str
    card: str
    context: Dict[str, Any]
    ci: Optional[ComputeInstanceRecord] = None
    extra: Dict[str, Any] = field(default_factory=dict)
    admin_problems: List[str] = field(default_factory=list)


def handle_request(
    inbound: InboundRequest,
    settings: Settings,
    section: ExemptionSection,
    gateway: MLGateway,
    tag_writer: TagWriter,
    *,
    now: Optional[datetime] = None,
    session: Any = None,
    prices: Optional[RetailPriceClient] = None,
    decide: Decide = decide_exemption,
) -> ExemptionReport:
    """Process one request and post the answer card; returns the run's report.

    ``prices`` looks up hourly prices (default: :func:`price_client` for these settings).
    """
    now = now or datetime.now(timezone.utc)
    report = ExemptionReport(RUNBOOK, False, started_at=now)
    data = inbound.body.get("data") if isinstance(inbound.body, Mapping) else None
    action = data.get("action") if isinstance(data, Mapping) else None
    report.extra["request"] = _request_summary(inbound)
    log.info("Exemption request via %s (%s): action %s", inbound.origin, inbound.source, clean_text(repr(action), 80))

    validation: Optional[Validation] = None
    requester = Address.responder(inbound.body.get("responder") if isinstance(inbound.body, Mapping) else None)
    secret_problem = (
        None if inbound.source == SOURCE_DIRECT else check_shared_secret(inbound.headers, section.require_shared_secret, settings.teams.shared_secret)
    )
    if secret_problem:
        # Whoever sent it does not hold the secret: tell nobody it names (that would let anyone post cards to anyone), only the admins.
        requester = CHANNEL
    wiring = [secret_problem] if secret_problem else wiring_problems(inbound.body)
    if wiring:
        result = _wiring(wiring, _asked_context(describe_asked(data)))
    elif action == FORM_ACTION:
        result = _Outcome(FORM_SENT, "sent the request form", "exemption_request", request_form_context(settings, section, gateway, now, data, inbound.body))
    else:
        validation = validate_request(inbound.body, now, section.rules())
        if not validation.ok:
            result = _rejected([user_words(r) for r in validation.reasons], _asked_context(validation.asked), detail=" ".join(validation.reasons))
        else:
            assert validation.request is not None
            prices = prices if prices is not None else price_client(settings, section)
            result = _process(validation.request, settings, section, gateway, tag_writer, now, decide, prices)
            requester = Address.responder(validation.request.responder)

    asked = validation.asked if validation else {}
    request = validation.request if validation else None
    report.results.append(_result_row(result, request, asked))
    report.extra.update(result.extra)
    # Always present, so the flow (or an operator) can branch on them without checking for keys.
    report.extra.setdefault("cost", None)
    report.extra["needs_approval"] = result.outcome == PENDING_APPROVAL
    report.extra["auto_approve_below"] = asdict(section.auto_approve_below) if section.auto_approve_below else None
    report.extra["answer_card"] = result.card
    if result.admin_problems and requester.is_channel:
        # Nobody to answer: the generic line would only reach the admins' channel, which gets the full text below.
        report.extra["answer_posted"] = False
    else:
        report.extra["answer_posted"] = post_answer(result.card, result.context, settings, to=requester, session=session)
    if result.outcome == PENDING_APPROVAL:
        approval_context = {**result.context, "for_approvers": True}
        approvers = Address.approvers(settings.teams.approvers_recipient)
        report.extra["approval_posted"] = post_answer(result.card, approval_context, settings, to=approvers, session=session)
    if result.admin_problems:
        report.extra["admin_problems"] = list(result.admin_problems)
        report.extra["admins_told"] = tell_admins("An exemption request could not be processed", result.admin_problems, settings, requester, session=session)
    log.info("Outcome: %s (%s)", result.outcome, result.detail)
    report.finish()
    return report


def tag_writer_for(credential: Any, gateway: MLGateway, section: ExemptionSection) -> TagWriter:
    """The tag writer the ``exemption`` section asks for (method and read-back timing)."""
    return TagWriter(
        credential, gateway, section.tag_write_method, readback_attempts=section.readback_attempts, readback_delay_seconds=section.readback_delay_seconds
    )


def wiring_problems(body: Any) -> List[str]:
    """What is wrong with the request's wiring (the Teams flow or whatever called the webhook), not with what
    the person asked: no object, no ``data``, no usable ``responder``, an action no card sends, an ``approval``
    the flow built wrongly, or the pending card's raw Approve/Reject (the flow skipped its Compose)."""
    if not isinstance(body, Mapping):
        return ["The request is not a JSON object."]
    problems = []
    data = body.get("data")
    if not isinstance(data, Mapping):
        problems.append("The request has no 'data' object with the card's inputs.")
    else:
        action = data.get("action")
        if action == APPROVAL_ACTION:
            problems.append(
                "This is the pending card's Approve/Reject answer as Teams sent it: the answer flow must turn it into the request "
                "with its 'approval' before calling the webhook (docs/admin.md, Cost-aware approval)."
            )
        elif action not in (*ACTIONS, FORM_ACTION):
            problems.append(f"Unknown action {clean_text(repr(action), 60)}: expected {', '.join((*ACTIONS, FORM_ACTION))}.")
    responder = body.get("responder")
    if not isinstance(responder, Mapping):
        problems.append("The request does not say who responded ('responder' is missing): the Teams flow must pass the card's responder.")
    elif Address.responder(responder).is_channel:
        problems.append("The request's 'responder' has no usable objectId or userPrincipalName: the Teams flow must pass the card's responder unchanged.")
    if "approval" in body:
        problems += [f"{p[:1].upper()}{p[1:]}." for p in parse_approval(body.get("approval"))[1]]
    return problems


def user_words(reason: str) -> str:
    """A reason in the requester's words: the form's labels for field ids (``'until_time' is missing.`` →
    ``The time is missing.``) and no settings names (``… (exemption.approvers)``: the job output keeps them)."""
    for key, words in _FIELD_WORDS.items():
        reason = reason.replace(f"'{key}' is missing", f"{words} is missing").replace(f"'{key}' is ", f"{words} is ")
    return _SETTING_NAMES.sub("", reason)


def tell_admins(title: str, problems: List[str], settings: Settings, requester: Address = CHANNEL, *, session: Any = None) -> bool:
    """Post the full text of a wiring or admin problem to the admins' channel (it is also in the job output)."""
    for problem in problems:
        log.error("For the admins: %s", problem)
    context = {
        "title": title,
        "what": "The requester was told only that it could not be processed. Fix the Teams flow or the settings, then ask them to try again.",
        "runbook": RUNBOOK,
        "details": list(problems),
        "requested_by": None if requester.is_channel else requester.label,
    }
    return post_card("admin_notice", context, settings.teams.workflow_url, CHANNEL, session=session).ok


def reject_unreadable(message: str, settings: Settings, *, now: Optional[datetime] = None, session: Any = None) -> ExemptionReport:
    """Report (exit code 2) a request that could not even be read (bad JSON, no request): nobody to answer is
    known, so only the admins' channel is told, in full."""
    now = now or datetime.now(timezone.utc)
    report = ExemptionReport(RUNBOOK, False, started_at=now, unusable_input=True)
    log.error("Unusable request: %s", message)
    problem = f"The request could not be read: {message}."
    report.results.append(CIResult("", "", "-", "-", "", REJECTED, problem))  # "-": nothing could be read
    report.extra.update({"cost": None, "needs_approval": False, "admin_problems": [problem]})
    report.extra["answer_card"] = None
    report.extra["answer_posted"] = False
    report.extra["admins_told"] = tell_admins("An exemption request could not be read", [problem], settings, session=session)
    report.finish()
    return report


def post_answer(card_name: str, context: Mapping[str, Any], settings: Settings, *, to: Address = CHANNEL, session: Any = None) -> bool:
    """Render and post an answer card to ``to``; False (logged) when it is not configured, not renderable or refused."""
    return post_card(card_name, context, settings.teams.workflow_url, to, session=session).ok


def price_client(settings: Settings, section: ExemptionSection, session: Any = None) -> RetailPriceClient:
    """The Retail Prices client for exemption estimates.

    In the cost rule's currency, so estimate and limit compare; without a rule, in ``pricing.currency``
    (what the nightly report uses). Raises SettingsError for a bad ``pricing`` section.
    """
    pricing = settings.section("pricing", PricingSection)
    if section.auto_approve_below is not None:
        pricing = replace(pricing, currency=section.auto_approve_below.currency)
    return make_client(pricing, session)


def estimate_exemption_cost(request: ExemptionRequest, ci: ComputeInstanceRecord, prices: RetailPriceClient, now: datetime) -> CICost:
    """The list-price cost of ``ci`` running from ``now`` until the request's end; never raises (unknown instead)."""
    assert request.until is not None
    size, region = ci.vm_size or "", ci.location or ""
    quote, reason = None, ""
    missing = [what for what, value in (("VM size", size), ("region", region)) if not value]
    if missing:
        reason = f"the compute instance does not report its {' or '.join(missing)}"
    else:
        try:
            quote = prices.hourly_price(size, region)
        except Exception as exc:  # noqa: BLE001 - hourly_price promises not to raise; a cost must never crash the run
            reason = f"the price lookup failed: {describe_error(exc)}"
        if quote is None and not reason:
            # The client logs the exact cause (HTTP error, no Linux pay-as-you-go item) in the job output.
            reason = f"no list price for {size} in {region} (the lookup failed or the size has no Linux pay-as-you-go price; see the job log)"
    cost = CICost(ci.key, size, region, hours_until(now, request.until), quote, request.until, prices.currency, reason)
    log.info("Estimated cost of %s: %s", ci.key, cost.estimate_text)
    return cost


def approval_card_data(request: ExemptionRequest) -> Dict[str, Any]:
    """What the pending card's Approve / Reject buttons carry: the request's inputs as the request card
    sent them, its requester and message id, so the answer flow can re-send the request with the answer."""
    assert request.until is not None
    local = request.until.astimezone(load_zone(request.time_zone))
    who = request.responder
    return {
        "request": {
            "action": REQUEST,
            "workspace": request.workspace.key,
            "compute_instance": request.compute_instance,
            "until_date": local.strftime("%Y-%m-%d"),
            "until_time": local.strftime("%H:%M" if local.second == 0 else "%H:%M:%S"),
            "time_zone": request.time_zone,
            "reason": request.reason,
        },
        "requester": {
            "objectId": who.object_id,
            "tenantId": who.tenant_id,
            "email": who.email,
            "userPrincipalName": who.user_principal_name,
            "displayName": who.display_name,
        },
        "request_message_id": request.message_id,
    }


def workspace_label(ws: WorkspaceRef) -> str:
    """How a workspace is shown to people: ``mlw-vision (rg-ml-research)``; the key stays in card data."""
    return f"{ws.name} ({ws.resource_group})"


def form_context(section: ExemptionSection, now: datetime, **prefill: Any) -> Dict[str, Any]:
    """Context of the ``exemption_request`` form card (no workspace list: a text box)."""
    zone = load_zone(section.default_time_zone)
    return {
        "workspaces": [],
        "compute_instances": [],
        "time_zones": list(section.time_zones),
        "default_time_zone": section.default_time_zone,
        "max_hours": int(section.max_hours),
        "min_date": now.astimezone(zone).strftime("%Y-%m-%d"),
        "max_date": (now + timedelta(hours=section.max_hours)).astimezone(zone).strftime("%Y-%m-%d"),
        **{k: v for k, v in prefill.items() if v},
    }


def request_form_context(settings: Settings, section: ExemptionSection, gateway: Any, now: datetime, data: Any, body: Any) -> Dict[str, Any]:
    """The request form again, pre-filled with what ``data`` carries (the rejected or granted request), the
    workspaces of the scope as a choice list (names, not GUID paths) and, where the runbook can list
    them, the requester's own compute instances as a choice list."""
    asked = describe_asked(data)
    prefill = {k: asked.get(k) for k in ("workspace", "compute_instance", "until_date", "until_time", "time_zone", "reason")}
    context = form_context(section, now, **prefill)
    responder = body.get("responder") if isinstance(body, Mapping) else None
    oid = str(responder.get("objectId") or "").lower() if isinstance(responder, Mapping) else ""
    try:
        inventory = discover(gateway, settings.scope)
    except Exception as exc:  # noqa: BLE001 - without the lists the form still works with text boxes
        log.warning("Could not list the workspaces for the request form: %s", describe_error(exc))
        return context
    workspaces = sorted(inventory.workspaces, key=lambda w: (w.name.lower(), w.resource_group.lower()))
    context["workspaces"] = [{"title": workspace_label(w), "value": w.key} for w in workspaces]
    mine = [ci for ci in inventory.instances if oid and (ci.assigned_user_object_id or "").lower() == oid]
    context["compute_instances"] = [
        {"title": f"{ci.name} ({ci.workspace.name})", "value": ci.name} for ci in sorted(mine, key=lambda c: (c.name.lower(), c.workspace.name.lower()))
    ]
    if len({ci.workspace.key.lower() for ci in mine}) == 1 and not context.get("workspace"):
        context["workspace"] = mine[0].workspace.key
    return context


# -- the steps ----------------------------------------------------------------------------


def _process(
    request: ExemptionRequest,
    settings: Settings,
    section: ExemptionSection,
    gateway: MLGateway,
    writer: TagWriter,
    now: datetime,
    decide: Decide,
    prices: RetailPriceClient,
) -> _Outcome:
    asked = _request_context(request)
    found, problem, failed = _lookup(request, settings, gateway)
    if found is None:
        return _failed(problem, asked) if failed else _rejected([problem], asked)
    ci = found
    cost = None if request.is_cancel else estimate_exemption_cost(request, ci, prices, now)
    result = _decided(request, ci, decide(request, ci, section, settings.tags, cost), section, settings.tags, writer, now, cost)
    if cost is not None:
        result.extra["cost"] = cost.to_dict()
    if request.approval is not None:
        approval = request.approval
        result.extra["approval"] = {"approver": approval.who, "outcome": approval.outcome, "comments": approval.comments}
    return result


def _decided(
    request: ExemptionRequest,
    ci: ComputeInstanceRecord,
    decision: PolicyDecision,
    section: ExemptionSection,
    names: TagNames,
    writer: TagWriter,
    now: datetime,
    cost: Optional[CICost],
) -> _Outcome:
    asked = {**_request_context(request), **({"cost_text": cost.estimate_text} if cost else {})}
    if decision.verdict == REJECT:
        return _rejected([user_words(r) for r in decision.reasons], asked, ci, detail=" ".join(decision.reasons))
    if decision.verdict == NEEDS_APPROVAL:
        context = {**asked, "approvers": list(section.approvers), "approval_request": approval_card_data(request)}
        return _Outcome(PENDING_APPROVAL, "; ".join(decision.reasons) or "waiting for an approver", "exemption_pending_approval", context, ci)
    log.info("%s may act on %s as %s", request.responder.who, ci.key, decision.basis)
    if request.is_cancel:
        return _cancel(request, ci, names, writer)
    return _record(request, ci, names, writer, now, asked, decision.approved_by)


def _lookup(request: ExemptionRequest, settings: Settings, gateway: MLGateway) -> Tuple[Optional[ComputeInstanceRecord], str, bool]:
    """``(ci, problem, failed)``: the CI, or why not and whether that is our failure (not the request's)."""
    ws = request.workspace
    scope = settings.scope
    if scope.subscriptions and (ws.subscription_id.lower() not in {s.lower() for s in scope.subscriptions} or not workspace_in_scope(ws, scope)):
        return None, f"Workspace {ws.key} is not managed by CI governance.", False
    try:
        found = [w for w in gateway.list_workspaces(ws.subscription_id, ws.resource_group) if w.same_as(ws)]
    except ServiceError as exc:
        if isinstance(exc, NotFoundError) or exc.status in (403, 404):
            return None, f"Workspace {ws.key} was not found (or this automation cannot see it).", False
        return None, f"Could not look up workspace {ws.key}: {describe_error(exc)}", True
    except Exception as exc:  # noqa: BLE001 - network and SDK failures are ours, not the requester's
        return None, f"Could not look up workspace {ws.key}: {describe_error(exc)}", True
    if not found:
        return None, f"Workspace {ws.key} was not found.", False
    workspace = found[0]
    try:
        return gateway.get_compute_instance(workspace, request.compute_instance), "", False
    except NotFoundError:
        return None, f"Compute instance {request.compute_instance} was not found in workspace {workspace.name}.", False
    except GatewayError as exc:
        return None, str(exc), False
    except Exception as exc:  # noqa: BLE001
        return None, f"Could not read compute instance {request.compute_instance}: {describe_error(exc)}", True


def _record(
    request: ExemptionRequest, ci: ComputeInstanceRecord, names: TagNames, writer: TagWriter, now: datetime, context: Dict[str, Any], approved_by: str
) -> _Outcome:
    """Record on the CI's own tags (the writer's chain: Tags API, then a full PUT, each read back);
    where the CI refuses or ignores them, on its workspace (one tag per CI, read back)."""
    assert request.until is not None
    context = {**context, "approved_by": approved_by or None}
    early = exemption_undermined_by(ci, now, request.until)
    if early:
        # Our tags bind the sweep, not the platform: say so on the card (docs/data-scientist.md).
        context["ends_early"] = "It may stop before then anyway: " + "; ".join(early) + "."
    ws_tags = ci.workspace.tags
    ws_tag = workspace_exemption_tag(ci.name, names)
    found = read_exemption_for(ci.tags, ws_tags, ci.name, now, names)
    current = found.exemption
    # "Already recorded" only when what is recorded protects the CI: a malformed exemption with the
    # same request id (exempt-by emptied, say) would otherwise be left as it is, and the CI stopped.
    if request.message_id and found.protects and current is not None and current.request_id == request.message_id and current.until == request.until:
        context["recorded_on"] = _place_text(found.place, ci)
        where = "workspace" if found.place == PLACE_WORKSPACE else "compute_instance"
        return _Outcome(
            ALREADY_RECORDED,
            f"already recorded: exempt until {request.until_text} (message {request.message_id}; on the {found.place})",
            "exemption_approved",
            context,
            ci,
            {"recorded_on": where},
        )
    exemption = Exemption(until=request.until, by=request.responder.who, reason=request.reason, request_id=request.message_id)
    tags = exemption_tags(exemption, names)
    if approved_by or tag_value(ci.tags, names.exempt_approved_by) is not None:
        # Emptied rather than left: a new exemption must not inherit an earlier one's approver.
        tags[names.exempt_approved_by] = validate_tag_value(clean_text(approved_by))
    if not request.message_id and tag_value(ci.tags, names.exempt_request) is not None:
        # Emptied too: an earlier request's id would make a later repeat of THAT request look recorded.
        tags[names.exempt_request] = ""
    place, fallback_note = PLACE_CI, ""
    try:
        written = writer.merge(ci.workspace, ci.name, tags, current=ci.tags)
        how = f"{written.method}, after falling back" if written.fell_back else written.method
    except Exception as exc:  # noqa: BLE001 - TagWriteError or an Azure error: try the workspace
        fallback_note = _write_problem(exc)
        log.warning("The compute instance did not take the exemption tags (%s); recording it on workspace %s", fallback_note, ci.workspace.name)
        try:
            written = writer.merge_workspace(ci.workspace, {ws_tag: workspace_exemption_value(exemption, approved_by)}, current=ws_tags)
        except Exception as ws_exc:  # noqa: BLE001
            problem = f"on the compute instance: {fallback_note}; on its workspace: {_write_problem(ws_exc)}"
            return _failed(f"The exemption could not be recorded: {problem}", context, ci)
        place, how = PLACE_WORKSPACE, f"workspace tag {ws_tag}"
    if place == PLACE_CI and tag_value(ws_tags, ws_tag) is not None:
        _remove_quietly(lambda: writer.delete_workspace(ci.workspace, [ws_tag], current=ws_tags), f"the older workspace record {ws_tag}")
    approval = f", approved by {approved_by}" if approved_by else ""
    detail = f"exempt until {request.until_text} by {request.responder.who}{approval} (recorded on the {place}: {how})"
    context["recorded_on"] = _place_text(place, ci)
    extra = {
        "undermined_by": early,
        "tag_write_method": written.method,
        "tag_write_fell_back": written.fell_back or place == PLACE_WORKSPACE,
        "approved_by": approved_by or None,
        "recorded_on": "workspace" if place == PLACE_WORKSPACE else "compute_instance",
    }
    if place == PLACE_WORKSPACE:
        extra["workspace_tag"] = ws_tag
        extra["compute_instance_refused"] = fallback_note
    return _Outcome(EXEMPTED, detail, "exemption_approved", context, ci, extra)


def _cancel(request: ExemptionRequest, ci: ComputeInstanceRecord, names: TagNames, writer: TagWriter) -> _Outcome:
    """Remove the exemption from both places it may be recorded (the CI's tags and its workspace's)."""
    ours = [k for k in ci.tags if k.lower() in {n.lower() for n in names.exemption_keys}]
    ws_tag = workspace_exemption_tag(ci.name, names)
    on_ws = tag_value(ci.workspace.tags, ws_tag) is not None
    until = tag_value(ci.tags, names.exempt_until)
    if until is None and on_ws:
        until = tag_value(ci.workspace.tags, ws_tag)
    context: Dict[str, Any] = {
        "workspace": request.workspace.key,
        "workspace_label": workspace_label(request.workspace),
        "compute_instance": ci.name,
        "cancelled_by": _person(request.responder),
        "until_utc": until,
    }
    if not ours and not on_ws:
        return _Outcome(CANCELLED, "had no exemption: nothing to remove", "exemption_cancelled", context, ci)
    removed: List[str] = []
    problems: List[str] = []
    method = ""
    fell_back = False
    if ours:
        try:
            written = writer.delete(ci.workspace, ci.name, names.exemption_keys, current=ci.tags)
            method, fell_back = written.method, written.fell_back
            removed.append("compute instance tags")
        except Exception as exc:  # noqa: BLE001
            problems.append(f"on the compute instance: {_write_problem(exc)}")
    if on_ws:
        try:
            written = writer.delete_workspace(ci.workspace, [ws_tag], current=ci.workspace.tags)
            method = method or written.method
            removed.append(f"workspace tag {ws_tag}")
        except Exception as exc:  # noqa: BLE001
            problems.append(f"on the workspace: {_write_problem(exc)}")
    if problems:  # a record left in either place still protects the CI: the cancellation failed
        return _failed(f"The exemption could not be removed: {'; '.join(problems)}", _request_context(request), ci)
    return _Outcome(
        CANCELLED,
        f"exemption removed by {request.responder.who} (was until {until or 'unknown'}; removed from {' and '.join(removed)})",
        "exemption_cancelled",
        context,
        ci,
        {"tag_write_method": method, "tag_write_fell_back": fell_back, "removed_from": removed},
    )


def _remove_quietly(action: Callable[[], Any], what: str) -> None:
    try:
        action()
    except Exception as exc:  # noqa: BLE001 - best effort: the new record takes precedence anyway (shared.tags)
        log.warning("Could not remove %s: %s", what, _write_problem(exc))


def _place_text(place: str, ci: ComputeInstanceRecord) -> str:
    if place == PLACE_WORKSPACE:
        # The card's words: where, and why; the tag's name is for admins (job output: workspace_tag).
        return f"workspace {ci.workspace.name}, because this compute instance does not accept tag changes"
    return "the compute instance itself"


# -- helpers ------------------------------------------------------------------------------


def _rejected(reasons: List[str], asked: Dict[str, Any], ci: Optional[ComputeInstanceRecord] = None, detail: str = "") -> _Outcome:
    return _Outcome(REJECTED, detail or " ".join(reasons), "exemption_rejected", {"reasons": reasons, **asked}, ci)


def _wiring(problems: List[str], asked: Dict[str, Any]) -> _Outcome:
    """A request the wiring broke: the requester reads only :data:`ADMIN_TOLD`; the admins get ``problems``."""
    return _Outcome(REJECTED, " ".join(problems), "exemption_rejected", {"reasons": [ADMIN_TOLD], "admin_told": True, **asked}, admin_problems=problems)


def _failed(problem: str, asked: Dict[str, Any], ci: Optional[ComputeInstanceRecord] = None) -> _Outcome:
    # Our failure, not the request's: the requester is told it did not work; the admins get the cause.
    log.error("%s", problem)
    told = "It could not be done because of a problem on our side; your admin has been told. Nothing was changed."
    context = {"reasons": [told], "admin_told": True, **asked}
    return _Outcome(FAILED, problem, "exemption_rejected", context, ci, admin_problems=[problem])


def _write_problem(exc: BaseException) -> str:
    # TagWriteError messages are written for people already; Azure errors get one tidy line.
    return str(exc) if isinstance(exc, TagWriteError) else describe_error(exc)


def _person(responder: Any) -> str:
    """A person as a card names them: ``Ada Lovelace (ada@contoso.com)``, else the UPN, else the object id."""
    name, who = getattr(responder, "display_name", ""), responder.who
    return f"{name} ({who})" if name and name != who else who


def _request_context(request: ExemptionRequest) -> Dict[str, Any]:
    """What the answer cards echo of a valid request."""
    context: Dict[str, Any] = {
        "workspace": request.workspace.key,
        "workspace_label": workspace_label(request.workspace),
        "compute_instance": request.compute_instance,
        "requested_by": _person(request.responder),
    }
    if request.until is not None:
        context.update({"until_utc": request.until_text, "until_local": request.until_local, "reason": request.reason, "asked": _asked_form_data(request)})
    return context


def _asked_form_data(request: ExemptionRequest) -> Dict[str, Any]:
    """What "Try again" / "Keep another" send back: the request, to pre-fill the form."""
    data = approval_card_data(request)["request"] if request.until is not None else {"workspace": request.workspace.key}
    return {**data, "action": FORM_ACTION}


def _asked_context(asked: Mapping[str, str]) -> Dict[str, Any]:
    """What the rejection card echoes of an invalid request (already cleaned and cut)."""
    out: Dict[str, Any] = {k: asked[k] for k in ("workspace", "compute_instance", "reason") if k in asked}
    when = " ".join(asked[k] for k in ("until_date", "until_time", "time_zone") if k in asked)
    if when:
        out["until_local"] = when
    if "workspace" in asked:
        ws = _workspace_guess(asked["workspace"])
        out["workspace_label"] = workspace_label(ws) if ws.resource_group else asked["workspace"]
    out["asked"] = {**{k: v for k, v in asked.items() if k != "action"}, "action": FORM_ACTION}
    return out


def _result_row(result: _Outcome, request: Optional[ExemptionRequest], asked: Mapping[str, str]) -> CIResult:
    ci = result.ci
    if ci is not None:
        ws: WorkspaceRef = ci.workspace
        name, state, size, location = ci.name, ci.state, ci.vm_size, ci.location
    else:
        ws = request.workspace if request else _workspace_guess(asked.get("workspace", ""))
        name = request.compute_instance if request else asked.get("compute_instance", "-")
        state, size, location = "", "", ""
    exempt_until = request.until_text if request and result.outcome in (EXEMPTED, ALREADY_RECORDED) else None
    exempt_by = request.responder.who if request and result.outcome in (EXEMPTED, ALREADY_RECORDED) else None
    return CIResult(ws.subscription_id, ws.resource_group, ws.name, name, state, result.outcome, result.detail, size, location, exempt_until, exempt_by)


def _workspace_guess(key: str) -> WorkspaceRef:
    parts = key.split("/") if key.count("/") == 2 else ["", "", key or "-"]
    return WorkspaceRef(parts[0], parts[1], parts[2])


def _request_summary(inbound: InboundRequest) -> Dict[str, Any]:
    body = inbound.body if isinstance(inbound.body, Mapping) else {}
    raw_responder = body.get("responder")
    responder: Mapping[str, Any] = raw_responder if isinstance(raw_responder, Mapping) else {}
    message_id = body.get("messageId")
    who = responder.get("userPrincipalName") or responder.get("email") or responder.get("objectId")
    return {
        "source": inbound.source,
        "origin": inbound.origin,
        "webhook": inbound.webhook_name,
        "message_id": message_id if isinstance(message_id, str) else None,
        "responder": who if isinstance(who, str) else None,
    }
