"""Who may create which compute instance: pure rules, no I/O.

:func:`decide_create` maps a :class:`CreateRequest` (what was asked, and by whom) and the settings
section ``create`` to a :class:`CreateDecision`: ``approve``, ``needs_approval`` or ``reject`` with
every reason at once, so a requester fixes all mistakes in one go. Called twice by
``shared.create.run``: first without Azure facts (everything that can be refused before any
call), then with the number of compute instances the user already has in the workspace.

Name rules are the documented ones (Learn, azure/machine-learning/how-to-create-compute-instance,
"Compute name"; MicrosoftDocs/azure-docs articles/machine-learning/how-to-create-compute-instance.md):
3 to 24 characters; letters, digits and ``-``; starts with a letter; a ``-`` must be followed by at
least one letter later in the name; unique across all existing computes within an Azure region.
Regional uniqueness cannot be checked from here (other workspaces and tenants count too): the
service refuses a taken name and that message is reported as it is.

Idle shutdown bounds are the documented ones (same page, "Configure idle shutdown"): at least 15
minutes, at most three days.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from shared.errors import TagFormatError
from shared.models import GUID as _GUID
from shared.models import WorkspaceRef
from shared.sections import IDLE_MIN_MINUTES, NAME_MAX, NAME_MIN, CreateSection
from shared.settings import Scope, workspace_in_scope
from shared.tags import MAX_TAGS_PER_RESOURCE, TagNames, clean_text, validate_tag_name, validate_tag_value
from shared.teams.inbound import Approval, listed

APPROVE = "approve"
NEEDS_APPROVAL = "needs_approval"
REJECT = "reject"


# The same rules as name_problems, as one regex for the request card (no look-arounds: Teams
# clients' regex engines differ). Length 3-24: the card also sets maxLength 24; the minimum is
# built in (a letter plus two characters, or a letter, a hyphen and a letter).
NAME_CARD_REGEX = r"^[A-Za-z](?:[A-Za-z0-9-]*-[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*|[A-Za-z0-9]{2,})$"

_NAME_CHARS = re.compile(r"^[A-Za-z0-9-]*$")




@dataclass(frozen=True)
class CreateRequest:
    """A request for a compute instance. ``requester`` and the user ids come from a trusted
    identity (the Teams responder, or the operator who started the runbook), never card inputs."""

    workspace: WorkspaceRef
    name: str
    size: str
    user_object_id: str
    user_tenant_id: str
    requester: str
    requester_email: str = ""  # the responder's mail: only to refuse self-approval by mail
    owner: str = ""  # owner tag; the requester when empty
    cost_center: str = ""
    idle_minutes: Optional[int] = None  # None: the configured default
    approval: Optional[Approval] = None
    request_id: str = ""  # Teams messageId, for the report

    @property
    def effective_owner(self) -> str:
        return self.owner or self.requester


@dataclass(frozen=True)
class CreateDecision:
    """``verdict`` is approve / needs_approval / reject; ``reasons`` explain every refusal."""

    verdict: str
    reasons: Tuple[str, ...] = ()
    size: str = ""  # the size to create, spelled as configured
    idle_minutes: int = 0
    tags: Dict[str, str] = field(default_factory=dict)
    approved_by: str = ""

    @property
    def summary(self) -> str:
        return "; ".join(self.reasons)


def approved_by_tag(names: TagNames) -> str:
    """Tag recording who approved a size that needs approval."""
    return f"{names.prefix}.approved-by"


def name_problems(name: str) -> List[str]:
    """Why ``name`` is not a valid compute instance name (empty list: it is valid)."""
    problems = []
    if not NAME_MIN <= len(name) <= NAME_MAX:
        problems.append(f"name '{name}' is {len(name)} characters; compute instance names are {NAME_MIN} to {NAME_MAX}")
    if name and not (name[0].isascii() and name[0].isalpha()):
        problems.append(f"name '{name}' must start with a letter")
    if not _NAME_CHARS.match(name):
        bad = "".join(sorted({c for c in name if not (c.isascii() and (c.isalnum() or c == "-"))}))
        problems.append(f"name '{name}' may contain only letters, digits and '-' (found {bad!r})")
    elif "-" in name and not any(c.isalpha() for c in name[name.rindex("-") + 1 :]):
        problems.append(f"name '{name}': a '-' must be followed by at least one letter later in the name")
    return problems


def match_size(size: str, patterns: Tuple[str, ...]) -> Optional[str]:
    """The first pattern in ``patterns`` that ``size`` matches (case-insensitive), or None."""
    wanted = size.strip().lower()
    for pattern in patterns:
        if fnmatch.fnmatchcase(wanted, pattern.lower()):
            return pattern
    return None


def _canonical_size(size: str, section: CreateSection) -> str:
    # Send the size as the admin spelled it in allowed_sizes, when listed by name.
    for s in section.choice_sizes():
        if s.lower() == size.strip().lower():
            return s
    return size.strip()


def _identity_problems(request: CreateRequest) -> List[str]:
    problems = []
    if not _GUID.match(request.user_object_id or ""):
        problems.append(f"user object id {request.user_object_id!r} is not a GUID")
    if not _GUID.match(request.user_tenant_id or ""):
        problems.append(f"user tenant id {request.user_tenant_id!r} is not a GUID")
    if not clean_text(request.requester):
        problems.append("the requester is unknown (a request must say who asked)")
    return problems


def _approval_problems(request: CreateRequest, section: CreateSection) -> List[str]:
    approval = request.approval
    if approval is None:
        return []
    if not approval.approved:
        return [f"the request was declined by {approval.who} (approval outcome '{approval.outcome}')"]
    ids = (approval.approver_upn, approval.approver_object_id)
    if not listed(ids, section.approvers):
        return [f"{approval.who} is not a configured approver (create.approvers)"]
    # Self-approval is refused when ANY identifier matches: an approver whose UPN (or mail) is the
    # requester's UPN or mail is the requester, whatever object id the approval reports.
    if listed((*ids, approval.approver_email), [i for i in (request.requester, request.requester_email, request.user_object_id) if i]):
        return [f"{approval.who} cannot approve their own request"]
    return []


def _tags(request: CreateRequest, section: CreateSection, names: TagNames, approved_by: str) -> Tuple[Dict[str, str], List[str]]:
    tags: Dict[str, str] = dict(section.fixed_tags)
    tags[names.owner] = clean_text(request.effective_owner)
    cost_center = clean_text(request.cost_center)
    if cost_center:
        tags[section.cost_center_tag] = cost_center
    if approved_by:
        tags[approved_by_tag(names)] = clean_text(approved_by)
    problems = []
    if section.require_cost_center and not cost_center:
        problems.append("a cost centre is required")
    if not tags[names.owner]:
        problems.append("the owner is unknown")
    if len(tags) > MAX_TAGS_PER_RESOURCE:
        problems.append(f"{len(tags)} tags; Azure allows {MAX_TAGS_PER_RESOURCE}")
    try:
        for key, value in tags.items():
            validate_tag_name(key)
            validate_tag_value(value)
    except TagFormatError as exc:
        problems.append(str(exc))
    return tags, problems


def decide_create(
    request: CreateRequest,
    section: CreateSection,
    scope: Scope,
    names: TagNames = TagNames(),
    *,
    user_instances: Optional[int] = None,
) -> CreateDecision:
    """Decide on ``request``. ``user_instances`` is how many compute instances the user already has
    in the workspace (None: not known yet, so the per-user limit is not judged)."""
    reasons: List[str] = []
    if not scope.subscriptions or request.workspace.subscription_id.lower() not in {s.lower() for s in scope.subscriptions}:
        reasons.append(f"subscription {request.workspace.subscription_id} is not managed here (scope.subscriptions)")
    elif not workspace_in_scope(request.workspace, scope):
        reasons.append(f"workspace {request.workspace.resource_group}/{request.workspace.name} is outside the managed scope")
    reasons += name_problems(request.name)
    size_allowed = match_size(request.size, section.allowed_sizes)
    if not request.size.strip():
        reasons.append("a VM size is required")
    elif size_allowed is None:
        reasons.append(f"size {request.size} is not allowed; allowed: {', '.join(section.allowed_sizes)}")
    idle = section.default_idle_minutes if request.idle_minutes is None else request.idle_minutes
    if not IDLE_MIN_MINUTES <= idle <= section.max_idle_minutes:
        reasons.append(f"idle shutdown of {idle} minutes is outside {IDLE_MIN_MINUTES} to {section.max_idle_minutes} minutes")
    reasons += _identity_problems(request)
    approval_problems = _approval_problems(request, section)
    reasons += approval_problems
    gated = size_allowed is not None and match_size(request.size, section.sizes_needing_approval) is not None
    # An approval is recorded only where it is needed, and only if it holds.
    approved_by = request.approval.who if gated and request.approval and not approval_problems else ""
    tags, tag_problems = _tags(request, section, names, approved_by)
    reasons += tag_problems
    if user_instances is not None and user_instances >= section.max_per_user:
        reasons.append(f"the user already has {user_instances} compute instance(s) in workspace {request.workspace.name}; the limit is {section.max_per_user}")
    size = _canonical_size(request.size, section)
    if gated and not section.approvers:
        reasons.append(f"size {size} needs approval but no approver is configured (create.approvers)")
    if reasons:
        return CreateDecision(REJECT, tuple(reasons), size, idle, tags)
    if gated and not approved_by:
        return CreateDecision(NEEDS_APPROVAL, (f"size {size} needs approval by one of: {', '.join(section.approvers)}",), size, idle, tags)
    return CreateDecision(APPROVE, (), size, idle, tags, approved_by)
