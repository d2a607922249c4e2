"""The create policy, pure: names, sizes, idle time, identity, approval, tags, scope, per-user limit."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from shared.create.policy import APPROVE, NAME_CARD_REGEX, NEEDS_APPROVAL, REJECT, CreateRequest, approved_by_tag, decide_create, match_size, name_problems
from shared.errors import SettingsError
from shared.models import WorkspaceRef
from shared.sections import CreateSection
from shared.settings import Scope, settings_from_dict
from shared.tags import TagNames
from shared.teams.inbound import Approval

SUB = "11111111-1111-4111-8111-111111111111"
OTHER_SUB = "22222222-2222-4222-8222-222222222222"
TENANT = "99999999-9999-4999-8999-999999999999"
ADA = "00000000-0000-4000-8000-000000000001"
BOSS = "00000000-0000-4000-8000-0000000000b0"
N = TagNames()
WS = WorkspaceRef(SUB, "rg-ml", "mlw-one")
SCOPE = Scope(subscriptions=(SUB,))
SECTION = CreateSection(
    allowed_sizes=("Standard_DS3_v2", "Standard_E4ds_v4", "Standard_NC6s_v3", "Standard_F*s_v2"),
    sizes_needing_approval=("STANDARD_NC*",),
    approvers=("boss@contoso.com", BOSS),
    max_per_user=2,
    fixed_tags={"managed-by": "ci-governance"},
)


def request(**overrides) -> CreateRequest:
    base = CreateRequest(
        workspace=WS,
        name="ci-ada",
        size="Standard_DS3_v2",
        user_object_id=ADA,
        user_tenant_id=TENANT,
        requester="ada@contoso.com",
        cost_center="CC-4711",
    )
    return replace(base, **overrides)


def card_accepts(name: str) -> bool:
    """What the request card lets through: its regex plus maxLength 24."""
    return len(name) <= 24 and re.match(NAME_CARD_REGEX, name) is not None


def decide(req=None, section=SECTION, scope=SCOPE, **kw):
    return decide_create(req or request(), section, scope, N, **kw)


# -- names --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["abc", "ci-ada", "CI-Ada-2b", "a" * 24, "ci-1a", "x-y", "nb01", "ci-gpu-a100x", "A1b"])
def test_valid_names(name):
    assert name_problems(name) == []
    assert card_accepts(name), "the card must accept what the policy accepts"


@pytest.mark.parametrize(
    "name, fragment",
    [
        ("", "0 characters"),
        ("ab", "2 characters"),
        ("a" * 25, "25 characters"),
        ("1abc", "must start with a letter"),
        ("-abc", "must start with a letter"),
        ("ci_ada", "only letters, digits and '-' (found '_')"),
        ("ci.ada", "found '.'"),
        ("ci ada", "found ' '"),
        ("cï-ada", "found 'ï'"),
        ("ébc", "must start with a letter"),
        ("cpu-cluster-1", "'-' must be followed by at least one letter"),
        ("ci-", "'-' must be followed by at least one letter"),
        ("ci-42", "'-' must be followed by at least one letter"),
        ("ci--", "'-' must be followed by at least one letter"),
    ],
)
def test_invalid_names(name, fragment):
    problems = name_problems(name)
    assert problems and any(fragment in p for p in problems), problems
    assert not card_accepts(name), "the card must refuse what the policy refuses"


def test_card_regex_agrees_with_policy_on_every_short_name():
    # Exhaustive over a small alphabet that hits every rule (letter, digit, hyphen, bad character).
    import itertools

    alphabet = "a1-_"
    for length in range(0, 6):
        for chars in itertools.product(alphabet, repeat=length):
            name = "".join(chars)
            assert (name_problems(name) == []) == card_accepts(name), name


def test_all_name_problems_reported_at_once():
    problems = name_problems("1_")
    assert len(problems) == 3  # length, first character, bad character


# -- sizes --------------------------------------------------------------------------------


def test_size_matching_is_case_insensitive_and_supports_patterns():
    assert match_size("standard_ds3_V2", SECTION.allowed_sizes) == "Standard_DS3_v2"
    assert match_size("Standard_F8s_v2", SECTION.allowed_sizes) == "Standard_F*s_v2"
    assert match_size("Standard_D64_v5", SECTION.allowed_sizes) is None


def test_allowed_size_is_sent_as_configured():
    d = decide(request(size="STANDARD_DS3_V2"))
    assert d.verdict == APPROVE and d.size == "Standard_DS3_v2"


def test_pattern_size_is_sent_as_asked():
    d = decide(request(size="Standard_F8s_v2"))
    assert d.verdict == APPROVE and d.size == "Standard_F8s_v2"


def test_size_not_allowed():
    d = decide(request(size="Standard_ND96asr_v4"))
    assert d.verdict == REJECT and "size Standard_ND96asr_v4 is not allowed" in d.summary


def test_size_missing():
    d = decide(request(size="  "))
    assert d.verdict == REJECT and "a VM size is required" in d.summary


def test_choice_sizes_leave_out_patterns():
    assert SECTION.choice_sizes() == ["Standard_DS3_v2", "Standard_E4ds_v4", "Standard_NC6s_v3"]


# -- approval -----------------------------------------------------------------------------


def test_gpu_size_needs_approval():
    d = decide(request(size="Standard_NC6s_v3"))
    assert d.verdict == NEEDS_APPROVAL and "boss@contoso.com" in d.summary
    assert approved_by_tag(N) not in d.tags


@pytest.mark.parametrize(
    "approval", [Approval(approver_upn="Boss@Contoso.com"), Approval(approver_object_id=BOSS), Approval("boss@contoso.com", BOSS, "approve")]
)
def test_configured_approver_approves_and_is_recorded(approval):
    d = decide(request(size="Standard_NC6s_v3", approval=approval))
    assert d.verdict == APPROVE and d.approved_by == approval.who
    assert d.tags[approved_by_tag(N)] == approval.who


def test_approval_by_someone_else_is_refused():
    d = decide(request(size="Standard_NC6s_v3", approval=Approval(approver_upn="mallory@contoso.com")))
    assert d.verdict == REJECT and "mallory@contoso.com is not a configured approver" in d.summary


def test_declined_approval_rejects_even_for_an_ungated_size():
    d = decide(request(approval=Approval(approver_upn="boss@contoso.com", outcome="Reject")))
    assert d.verdict == REJECT and "declined by boss@contoso.com" in d.summary


def test_no_self_approval():
    section = replace(SECTION, approvers=("ada@contoso.com",))
    d = decide(request(size="Standard_NC6s_v3", approval=Approval(approver_upn="ada@contoso.com")), section=section)
    assert d.verdict == REJECT and "cannot approve their own request" in d.summary
    d = decide(request(size="Standard_NC6s_v3", approval=Approval(approver_object_id=ADA)), section=replace(SECTION, approvers=(ADA,)))
    assert d.verdict == REJECT and "cannot approve their own request" in d.summary


def test_gated_size_without_any_approver_configured_is_rejected():
    d = decide(request(size="Standard_NC6s_v3"), section=replace(SECTION, approvers=()))
    assert d.verdict == REJECT and "no approver is configured" in d.summary


def test_approval_for_an_ungated_size_is_not_recorded():
    d = decide(request(approval=Approval(approver_upn="boss@contoso.com")))
    assert d.verdict == APPROVE and d.approved_by == "" and approved_by_tag(N) not in d.tags


# -- per-user limit -----------------------------------------------------------------------


def test_limit_not_judged_without_the_count():
    assert decide(user_instances=None).verdict == APPROVE


@pytest.mark.parametrize("count, verdict", [(0, APPROVE), (1, APPROVE), (2, REJECT), (5, REJECT)])
def test_per_user_limit(count, verdict):
    d = decide(user_instances=count)
    assert d.verdict == verdict
    if verdict == REJECT:
        assert f"already has {count} compute instance(s) in workspace mlw-one; the limit is 2" in d.summary


def test_limit_wins_over_needs_approval():
    # No approver should be asked for a request that cannot be granted anyway.
    d = decide(request(size="Standard_NC6s_v3"), user_instances=2)
    assert d.verdict == REJECT


def test_default_limit_is_one():
    assert CreateSection().max_per_user == 1
    assert decide(section=replace(SECTION, max_per_user=1), user_instances=1).verdict == REJECT


# -- idle time ----------------------------------------------------------------------------


def test_default_idle_time():
    assert decide().idle_minutes == 60 and CreateSection().default_idle_minutes == 60


@pytest.mark.parametrize("minutes, ok", [(15, True), (14, False), (0, False), (-5, False), (4320, True), (4321, False), (90, True)])
def test_idle_bounds(minutes, ok):
    d = decide(request(idle_minutes=minutes))
    assert (d.verdict == APPROVE) is ok
    if not ok:
        assert f"idle shutdown of {minutes} minutes is outside 15 to 4320 minutes" in d.summary


def test_idle_bound_from_settings():
    d = decide(request(idle_minutes=300), section=replace(SECTION, max_idle_minutes=240))
    assert d.verdict == REJECT and "outside 15 to 240" in d.summary


# -- identity, tags, scope ----------------------------------------------------------------


def test_tags_owner_cost_centre_and_fixed():
    d = decide()
    assert d.tags == {N.owner: "ada@contoso.com", "cost-center": "CC-4711", "managed-by": "ci-governance"}


def test_owner_may_differ_from_requester():
    assert decide(request(owner="team-lead@contoso.com")).tags[N.owner] == "team-lead@contoso.com"


def test_cost_centre_required_by_default_and_optional_by_setting():
    assert "a cost centre is required" in decide(request(cost_center="  ")).summary
    d = decide(request(cost_center=""), section=replace(SECTION, require_cost_center=False))
    assert d.verdict == APPROVE and "cost-center" not in d.tags


def test_cost_centre_is_cleaned():
    assert decide(request(cost_center="CC\n4711\x00")).tags["cost-center"] == "CC 4711"


def test_tag_prefix_follows_settings():
    names = TagNames("acme")
    d = decide_create(request(size="Standard_NC6s_v3", approval=Approval("boss@contoso.com")), SECTION, SCOPE, names)
    assert d.tags["acme.owner"] == "ada@contoso.com" and d.tags["acme.approved-by"] == "boss@contoso.com"


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"user_object_id": "ada"}, "user object id 'ada' is not a GUID"),
        ({"user_tenant_id": ""}, "user tenant id '' is not a GUID"),
        ({"requester": " "}, "the requester is unknown"),
    ],
)
def test_identity_problems(overrides, fragment):
    d = decide(request(**overrides))
    assert d.verdict == REJECT and fragment in d.summary


def test_subscription_outside_scope():
    d = decide(request(workspace=WorkspaceRef(OTHER_SUB, "rg-ml", "mlw-one")))
    assert d.verdict == REJECT and f"subscription {OTHER_SUB} is not managed here" in d.summary


def test_empty_scope_refuses_everything():
    assert decide(scope=Scope()).verdict == REJECT


def test_workspace_excluded_by_scope():
    d = decide(scope=Scope(subscriptions=(SUB.upper(),), exclude_workspaces=("mlw-*",)))
    assert d.verdict == REJECT and "workspace rg-ml/mlw-one is outside the managed scope" in d.summary
    assert decide(scope=Scope(subscriptions=(SUB,), resource_groups=("RG-ML",))).verdict == APPROVE


def test_every_reason_reported_together():
    d = decide(request(name="1", size="Standard_M128", idle_minutes=5, cost_center="", user_object_id="x"), user_instances=9)
    assert d.verdict == REJECT and len(d.reasons) >= 7


# -- settings section ---------------------------------------------------------------------


def test_section_from_settings_document():
    s = settings_from_dict({"create": {"allowed_sizes": ["Standard_DS3_v2"], "max_per_user": 2, "approvers": ["a@b.c"], "fixed_tags": {"x": "y"}}})
    section = s.section("create", CreateSection)
    assert section.allowed_sizes == ("Standard_DS3_v2",) and section.max_per_user == 2 and section.fixed_tags == {"x": "y"}


@pytest.mark.parametrize(
    "doc, fragment",
    [
        ({"max_per_user": 0}, "max_per_user must be at least 1"),
        ({"default_idle_minutes": 10}, "default_idle_minutes must be between 15"),
        ({"max_idle_minutes": 5000}, "max_idle_minutes must be between 15 and 4320"),
        ({"allowed_sizes": []}, "allowed_sizes must list at least one"),
        ({"timeout_seconds": 0}, "must be positive"),
        ({"cost_center_tag": "a/b"}, "contains characters Azure does not allow"),
        ({"require_shared_secret": " "}, "require_shared_secret must be a header name"),
        ({"allowed_size": ["x"]}, "unknown setting(s) allowed_size"),
    ],
)
def test_bad_section(doc, fragment):
    with pytest.raises(SettingsError) as err:
        settings_from_dict({"create": doc}).section("create", CreateSection)
    assert fragment in str(err.value)
