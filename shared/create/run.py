"""Create one compute instance on request: check (pure policy), look, create, wait, report.

Order matters, and each step is the cheapest that can still say no:

1. everything :func:`shared.create.policy.decide_create` can judge without Azure (name, size,
   idle time, identity, approval, scope): a refusal here makes no call at all;
2. one GET of the name: if a compute instance of that name exists for the same user, say so and
   change nothing (a repeated Teams post or a retried job is harmless); if it belongs to someone
   else, or is another kind of compute, refuse;
3. one list of the workspace to count the user's compute instances (``max_per_user``);
4. the PUT (azure-ai-ml ``begin_create_or_update``), then wait for the long-running operation up
   to ``create.timeout_seconds`` and report the final state or the service's own error message;
5. one more list to count again: two requests at the same moment both pass step 3. When the user
   now has more than ``max_per_user``, the newer creations (by the service's creation time, then
   name) are over the limit: the run that made one reports ``failed`` and names it to delete. Both
   runs see the same list, so exactly the surplus is reported; nothing is deleted automatically
   (a compute instance may already hold the user's work). README, "Creating compute instances".

Every run ends with exactly one outcome: created, would_create (dry run), already_exists,
needs_approval, rejected or failed. Only ``failed`` (Azure refused or did not finish) makes the
exit code 1: a rejection is the policy working, reported with its reasons.

A request from Teams is answered in Teams (``answer=True``), to the person who asked: created (with
the link to the CI in Azure ML studio and its idle shutdown), refused (every reason, in their words),
waiting for approval (and the approval card, with Approve / Reject answered back to this runbook, goes
to the approvers' place), or failed (quota and other service errors in their words; the service's own
message goes to the job output and, when it is not theirs to fix, to the admins' channel).
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timezone
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from shared.automation.webhook import SOURCE_DIRECT, extract_request
from shared.azure.ml_gateway import MLGateway
from shared.create.policy import APPROVE, NEEDS_APPROVAL, REJECT, CreateDecision, CreateRequest, decide_create
from shared.create.request import ACTION, APPROVAL_ACTION, FIELD_FLAGS, RequestError, approval_from_parameter, parse_workspace_key, request_from_teams
from shared.errors import GatewayError, NotFoundError, OperationFailedError, ServiceError, UsageError
from shared.models import FAILED, ComputeInstanceRecord, NewComputeInstance, WorkspaceRef
from shared.report import CIResult, RunReport
from shared.sections import CreateSection
from shared.settings import Settings
from shared.teams.inbound import check_shared_secret
from shared.teams.post import Posted, post_card
from shared.teams.routing import CHANNEL, Address

log = logging.getLogger(__name__)

RUNBOOK = "create_compute_instance"
CREATED = "created"
WOULD_CREATE = "would_create"  # dry run
ALREADY_EXISTS = "already_exists"
NEEDS_APPROVAL_OUTCOME = "needs_approval"
REJECTED = "rejected"
OUTCOMES = (CREATED, WOULD_CREATE, ALREADY_EXISTS, NEEDS_APPROVAL_OUTCOME, REJECTED, FAILED)


def new_compute_instance(request: CreateRequest, decision: CreateDecision) -> NewComputeInstance:
    """What to create: the approved size, the requester as assigned user, idle shutdown and tags."""
    return NewComputeInstance(
        name=request.name,
        size=decision.size,
        user_object_id=request.user_object_id,
        user_tenant_id=request.user_tenant_id,
        idle_minutes=decision.idle_minutes,
        tags=dict(decision.tags),
    )


def service_message(exc: BaseException) -> str:
    """The service's own ``code: message`` for a failed call (any other error: its first line)."""
    if isinstance(exc, ServiceError):
        return exc.service_message()
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def run_create(
    gateway: MLGateway,
    request: CreateRequest,
    settings: Settings,
    *,
    now: Optional[datetime] = None,
    dry_run: bool = False,
    answer: bool = False,
    session: Any = None,
) -> RunReport:
    """Handle one creation request and return its report (one result row); with ``answer``, answer in Teams."""
    now = now or datetime.now(timezone.utc)
    section = settings.section("create", CreateSection)
    report = RunReport(RUNBOOK, dry_run, started_at=now)
    outcome, detail, state, decision = _handle(gateway, request, settings, section, dry_run)
    report.results.append(_row(request, outcome, detail, state, decision))
    report.extra["request_id"] = request.request_id or None
    if answer:
        posted = answer_in_teams(request, outcome, detail, decision, settings, section, session=session)
        report.extra["answers"] = [p.to_dict() for p in posted]
    report.finish()
    log.info("Create %s/%s: %s (%s)", request.workspace.name, request.name, outcome, detail)
    return report


def _handle(  # noqa: C901 - the steps of the module docstring, in order
    gateway: MLGateway, request: CreateRequest, settings: Settings, section: CreateSection, dry_run: bool
) -> Tuple[str, str, str, CreateDecision]:
    decision = decide_create(request, section, settings.scope, settings.tags)
    if decision.verdict == REJECT:
        return REJECTED, f"rejected before contacting Azure: {decision.summary}", "", decision

    try:
        existing = _existing(gateway, request)
    except GatewayError as exc:
        return REJECTED, f"the name is taken: {exc}", "", decision
    except Exception as exc:  # noqa: BLE001 - any read failure ends this request, reported
        return FAILED, f"cannot read workspace {request.workspace.key}: {service_message(exc)}", "", decision
    if existing is not None:
        where = f"state {existing.state}, size {existing.vm_size}"
        if (existing.assigned_user_object_id or "").lower() == request.user_object_id.lower():
            return ALREADY_EXISTS, f"already exists for this user ({where}); nothing changed", existing.state, decision
        return REJECTED, f"the name is taken by a compute instance assigned to someone else ({where}); choose another name", existing.state, decision

    try:
        mine = [ci for ci in gateway.list_compute_instances(request.workspace) if _same_user(ci, request)]
    except Exception as exc:  # noqa: BLE001
        return FAILED, f"cannot list compute instances in {request.workspace.key}: {service_message(exc)}", "", decision
    decision = decide_create(request, section, settings.scope, settings.tags, user_instances=len(mine))
    if decision.verdict == REJECT:
        return REJECTED, decision.summary, "", decision
    if decision.verdict == NEEDS_APPROVAL:
        return NEEDS_APPROVAL_OUTCOME, f"{decision.summary}; nothing created", "", decision
    assert decision.verdict == APPROVE
    if dry_run:
        return WOULD_CREATE, f"would create {decision.size} with idle shutdown after {decision.idle_minutes} min", "", decision
    outcome, detail, state = _create(gateway, request, decision, section)
    if outcome == CREATED:
        surplus = _over_limit(gateway, request, section)
        if surplus:
            return FAILED, surplus, state, decision
    return outcome, detail, state, decision


def _over_limit(gateway: Any, request: CreateRequest, section: CreateSection) -> str:
    """Why the CI just created breaks ``max_per_user`` after all (a request that raced this one), or ""."""
    try:
        mine = [ci for ci in gateway.list_compute_instances(request.workspace) if _same_user(ci, request)]
    except Exception as exc:  # noqa: BLE001 - the CI exists; say the limit could not be re-checked
        log.warning("Created %s, but could not count the user's compute instances again: %s", request.name, service_message(exc))
        return ""
    if len(mine) <= section.max_per_user:
        return ""
    # Oldest first; every racing run sorts the same list the same way, so they agree on the surplus.
    ordered = sorted(mine, key=lambda ci: (_created(ci), ci.name.lower()))
    kept = {ci.name.lower() for ci in ordered[: section.max_per_user]}
    others = ", ".join(ci.name for ci in ordered if ci.name.lower() != request.name.lower())
    if request.name.lower() in kept:
        log.warning("%s raced another request (%s): that one is over the limit and its run reports it", request.name, others)
        return ""
    return (
        f"created, but another request for the same user was created at the same time ({others}): the user now has "
        f"{len(mine)} compute instance(s) in {request.workspace.name}, over the limit of {section.max_per_user}, and this one "
        f"is the newer; delete {request.name} (nothing was deleted automatically)"
    )


def _created(ci: ComputeInstanceRecord) -> datetime:
    """The creation instant, to the microsecond (two racing creations are often within one second);
    the earliest possible when unknown."""
    from shared.errors import TagFormatError
    from shared.times import parse_instant

    try:
        return parse_instant(ci.created_on or "")
    except TagFormatError:
        return datetime.min.replace(tzinfo=timezone.utc)


def _existing(gateway: MLGateway, request: CreateRequest) -> Optional[ComputeInstanceRecord]:
    try:
        return gateway.get_compute_instance(request.workspace, request.name)
    except NotFoundError:
        return None


def _same_user(ci: ComputeInstanceRecord, request: CreateRequest) -> bool:
    return (ci.assigned_user_object_id or "").lower() == request.user_object_id.lower()


def _create(gateway: MLGateway, request: CreateRequest, decision: CreateDecision, section: CreateSection) -> Tuple[str, str, str]:
    spec = new_compute_instance(request, decision)
    log.info(
        "Creating %s in %s: size %s, idle %d min, for user %s",
        request.name,
        request.workspace.key,
        decision.size,
        decision.idle_minutes,
        request.user_object_id,
    )
    try:
        record = gateway.create_compute_instance(request.workspace, spec, section.timeout_seconds)
    except OperationFailedError as exc:  # accepted, then failed: report the service's message
        return FAILED, f"creation failed: {exc.service_message()}", _last_state(gateway, request)
    except Exception as exc:  # noqa: BLE001 - the service refused the PUT: its message is the answer
        return FAILED, f"Azure refused the creation: {service_message(exc)}", ""
    if record is None:
        last = _last_state(gateway, request)
        return (
            FAILED,
            f"creation not finished within {section.timeout_seconds:g} s (last seen {last}); Azure goes on creating it: repeat the request later to see it",
            last,
        )
    state = record.state
    if state != "Running":
        return FAILED, f"creation ended in state {state}", state
    return CREATED, f"created {decision.size}, assigned to {request.user_object_id}, idle shutdown after {decision.idle_minutes} min", state


def _last_state(gateway: MLGateway, request: CreateRequest) -> str:
    try:
        return gateway.get_compute_instance(request.workspace, request.name).state
    except Exception as exc:  # noqa: BLE001 - only used to enrich a message
        log.warning("Could not read %s after the creation attempt: %s", request.name, service_message(exc))
        return "Unknown"


def _row(request: CreateRequest, outcome: str, detail: str, state: str, decision: CreateDecision) -> CIResult:
    extra: Dict[str, Any] = {
        "requester": request.requester,
        "owner": request.effective_owner,
        "user_object_id": request.user_object_id,
        "idle_minutes": decision.idle_minutes,
        "verdict": decision.verdict,
        "reasons": list(decision.reasons),
    }
    if decision.approved_by:
        extra["approved_by"] = decision.approved_by
    if outcome in (CREATED, WOULD_CREATE):
        extra["tags"] = dict(decision.tags)
    return CIResult(
        subscription_id=request.workspace.subscription_id,
        resource_group=request.workspace.resource_group,
        workspace=request.workspace.name,
        compute_instance=request.name,
        state=state or "-",
        outcome=outcome,
        detail=detail,
        vm_size=decision.size or request.size,
        location=request.workspace.location,
        extra=extra,
    )


# -- the request, from the runbook's parameters or a Teams body -----------------------------------


def request_from_args(args: Any, loose: Sequence[Tuple[str, str]], settings: Settings, section: CreateSection) -> CreateRequest:
    """The request the runbook's parameters describe; raises UsageError, RequestError or
    shared.automation.webhook.WebhookInputError.

    ``loose`` holds what :func:`shared.automation.webhook.split_argv` set apart (the webhook's envelope
    or a WebhookData JSON value). A request that came through the webhook must carry the shared secret
    (anyone holding the webhook URL can post); one started through the authenticated job API need not.
    """
    if loose or args.request is not None or args.request_b64 is not None or args.webhook_data is not None:
        given = [f"--{f.replace('_', '-')}" for f in FIELD_FLAGS if getattr(args, f) is not None]
        if given:
            raise UsageError(f"a Teams request carries the whole request; do not combine it with {', '.join(given)}")
        inbound = extract_request(loose, webhook_data=args.webhook_data, request=args.request, request_b64=args.request_b64)
        if inbound.source != SOURCE_DIRECT:
            problem = check_shared_secret(inbound.headers, section.require_shared_secret, settings.teams.shared_secret)
            if problem:
                raise RequestError([problem])
        log.info("Request from %s (%s)", inbound.origin, inbound.source)
        return request_from_teams(inbound.body)
    missing = [f"--{f.replace('_', '-')}" for f in ("name", "size", "user_object_id", "user_tenant_id", "requester") if not getattr(args, f)]
    if missing:
        raise UsageError(f"missing {', '.join(missing)} (or pass the Teams body with --request-b64)")
    return CreateRequest(
        workspace=_workspace_from_args(args),
        name=args.name.strip(),
        size=args.size.strip(),
        user_object_id=args.user_object_id.strip().lower(),
        user_tenant_id=args.user_tenant_id.strip().lower(),
        requester=args.requester.strip(),
        owner=(args.owner or "").strip(),
        cost_center=(args.cost_center or "").strip(),
        idle_minutes=args.idle_minutes,
        approval=approval_from_parameter(args.approver),
    )


def _workspace_from_args(args: Any) -> WorkspaceRef:
    if args.workspace_key:
        if args.workspace_name:
            raise UsageError("give the workspace once: --workspace-key or --workspace-name with --subscription/--resource-group")
        try:
            return parse_workspace_key(args.workspace_key)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    subs, rgs = args.subscription or [], args.resource_group or []
    if not args.workspace_name or len(subs) != 1 or len(rgs) != 1:
        raise UsageError("name the workspace: --workspace-key SUB/RG/WS, or --subscription, --resource-group and --workspace-name once each")
    return parse_workspace_key(f"{subs[0]}/{rgs[0]}/{args.workspace_name}")


# -- answers in Teams -------------------------------------------------------------------------

_SETTING_NAMES = re.compile(r"\s*\((?:scope|create|exemption|teams)\.[\w.]+\)")


def studio_url(request: CreateRequest) -> str:
    """The compute instance's page in Azure ML studio: ``https://ml.azure.com/compute/<name>/details?wsid=<workspace ARM id>&tid=<tenant>``."""
    tenant = f"&tid={request.user_tenant_id}" if request.user_tenant_id else ""
    return f"https://ml.azure.com/compute/{request.name}/details?wsid={request.workspace.arm_id}{tenant}"


def user_reason(reason: str) -> str:
    """A policy reason as the requester reads it: no settings names, a capital and a full stop."""
    text = _SETTING_NAMES.sub("", reason).strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def failure_words(detail: str, request: CreateRequest, size: str) -> Tuple[str, bool]:
    """``(what the requester reads, whether the admins must be told)`` for a failed creation."""
    if "quota" in detail.lower():
        return (
            f"Azure has no quota left for {size} in this region right now. Try a smaller size, or ask your admin to raise the quota, then ask again.",
            False,
        )
    if "NameNotAvailable" in detail or "already in use" in detail:
        return f"The name {request.name} is already taken in this region (names are unique across workspaces). Choose another name and ask again.", False
    if "not finished within" in detail:
        return "Azure is still creating it. It appears in Azure ML studio when it is ready; ask again later to get its link.", False
    return "Azure could not create it because of a problem on our side; your admin has been told. Nothing was created.", True


def _requester_address(request: CreateRequest) -> Address:
    for candidate in (request.requester, request.user_object_id):
        address = Address.person(candidate or "")
        if not address.is_channel:
            return address
    return CHANNEL


def answer_context(request: CreateRequest, outcome: str, detail: str, decision: CreateDecision, section: CreateSection) -> Dict[str, Any]:
    """Context of the ``compute_result`` card for one outcome."""
    size = decision.size or request.size
    context: Dict[str, Any] = {
        "status": outcome,
        "name": request.name,
        "workspace_label": f"{request.workspace.name} ({request.workspace.resource_group})",
        "size": size,
        "idle_minutes": decision.idle_minutes or None,
        "requested_by": request.requester or request.user_object_id,
        "approved_by": decision.approved_by or None,
        "reasons": [],
        "approvers": list(section.approvers),
        "link": None,
        "admin_told": False,
    }
    if outcome in (CREATED, ALREADY_EXISTS):
        context["link"] = studio_url(request)
    if outcome == REJECTED:
        context["reasons"] = [user_reason(r) for r in decision.reasons] if decision.verdict == REJECT else [user_reason(detail)]
    if outcome == FAILED:
        words, admins = failure_words(detail, request, size)
        context["reasons"], context["admin_told"] = [words], admins
    return context


def approval_context(request: CreateRequest, decision: CreateDecision, section: CreateSection) -> Dict[str, Any]:
    """Context of the ``compute_approval`` card: what is asked, and what its buttons send back to this runbook."""
    data = {
        "action": ACTION,
        "workspace": request.workspace.key,
        "name": request.name,
        "size": decision.size or request.size,
        "idle_minutes": str(decision.idle_minutes),
        "cost_center": request.cost_center,
    }
    requester = {"objectId": request.user_object_id, "tenantId": request.user_tenant_id, "userPrincipalName": request.requester}
    return {
        "name": request.name,
        "workspace_label": f"{request.workspace.name} ({request.workspace.resource_group})",
        "size": decision.size or request.size,
        "idle_minutes": decision.idle_minutes,
        "cost_center": request.cost_center or None,
        "requested_by": request.requester or request.user_object_id,
        "approvers": list(section.approvers),
        "approval_request": {"action": APPROVAL_ACTION, "request": data, "requester": requester, "request_message_id": request.request_id},
    }


def answer_in_teams(
    request: CreateRequest, outcome: str, detail: str, decision: CreateDecision, settings: Settings, section: CreateSection, *, session: Any = None
) -> List[Posted]:
    """Post the answer to the requester (and the approval card to the approvers, the detail to the admins)."""
    url = settings.teams.workflow_url
    posted = [post_card("compute_result", answer_context(request, outcome, detail, decision, section), url, _requester_address(request), session=session)]
    if outcome == NEEDS_APPROVAL_OUTCOME:
        to = Address.approvers(settings.teams.approvers_recipient)
        posted.append(post_card("compute_approval", approval_context(request, decision, section), url, to, session=session))
    if outcome == FAILED and failure_words(detail, request, decision.size or request.size)[1]:
        notice = {
            "title": "A compute instance could not be created",
            "what": f"Creating {request.name} in {request.workspace.name} for {request.requester} failed; they were told your admin has been told.",
            "runbook": RUNBOOK,
            "details": [detail],
            "requested_by": request.requester,
        }
        posted.append(post_card("admin_notice", notice, url, CHANNEL, session=session))
    return posted


def answer_unusable(responder: Any, problems: List[str], settings: Settings, *, session: Any = None) -> List[Posted]:
    """A Teams request that could not be used (unreadable, wiring, wrong secret): the full text to the admins'
    channel (and the job output); "could not be processed; your admin has been told" to the person who asked, if known."""
    for problem in problems:
        log.error("For the admins: %s", problem)
    url = settings.teams.workflow_url
    notice = {
        "title": "A compute instance request could not be processed",
        "what": "The requester was told only that it could not be processed. Fix the Teams flow or the settings, then ask them to try again.",
        "runbook": RUNBOOK,
        "details": list(problems),
    }
    to = Address.responder(responder)
    posted = [post_card("admin_notice", {**notice, "requested_by": None if to.is_channel else to.label}, url, CHANNEL, session=session)]
    if not to.is_channel:
        context: Dict[str, Any] = {
            "status": "unusable",
            "name": "",
            "workspace_label": "",
            "size": "",
            "reasons": [],
            "approvers": [],
            "link": None,
            "admin_told": True,
        }
        posted.append(post_card("compute_result", {**context, "requested_by": to.label}, url, to, session=session))
    return posted


def answer_unusable_request(args: Any, loose: Sequence[Tuple[str, str]], settings: Settings, section: CreateSection, exc: Exception, session: Any) -> None:
    """Two voices for a Teams request the runbook cannot use: the admins get the full text; the person who
    asked (when known, and only when the request carried the shared secret) reads "could not be processed"."""
    body, secret_ok = None, False
    try:
        inbound = extract_request(loose, webhook_data=args.webhook_data, request=args.request, request_b64=args.request_b64)
        body = inbound.body
        secret_ok = inbound.source == SOURCE_DIRECT or not check_shared_secret(inbound.headers, section.require_shared_secret, settings.teams.shared_secret)
    except Exception:  # noqa: BLE001 - unreadable: nobody to answer
        pass
    responder = body.get("responder") if isinstance(body, Mapping) and secret_ok else None
    answer_unusable(responder, [str(exc)], settings, session=session)
