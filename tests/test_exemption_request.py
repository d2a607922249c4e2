"""Pure validation of exemption requests (time zones, DST, limits, hostile input) and the pure
policy around them (shared secret, who may exempt, the settings section)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Dict, Optional

import pytest

from shared.errors import SettingsError
from shared.exemption.policy import RECORD, REJECT, decide_exemption, is_approver, load_section
from shared.exemption.request import CANCEL, REQUEST, validate_request
from shared.models import ComputeInstanceRecord, WorkspaceRef
from shared.sections import ExemptionSection, RequestRules
from shared.settings import settings_from_dict
from shared.tags import TagNames
from shared.teams.inbound import Responder, check_shared_secret
from shared.times import local_to_utc

SUB = "11111111-1111-4111-8111-111111111111"
TENANT = "99999999-9999-4999-8999-999999999999"
OID = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
OTHER = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"
NOW = datetime(2026, 11, 23, 19, 0, tzinfo=timezone.utc)
N = TagNames()


def body(**data: Any) -> Dict[str, Any]:
    fields: Dict[str, Any] = {
        "action": REQUEST,
        "workspace": f"{SUB}/rg-a/mlw-one",
        "compute_instance": "ci-ada",
        "until_date": "2026-11-24",
        "until_time": "08:00",
        "time_zone": "UTC",
        "reason": "training",
    }
    fields.update(data)
    return {
        "data": {k: v for k, v in fields.items() if v is not None},
        "responder": {"objectId": OID, "tenantId": TENANT, "email": "ada@contoso.com", "userPrincipalName": "ada@contoso.com", "displayName": "Ada"},
        "messageId": "msg-1",
    }


def reasons(payload: Any, now: datetime = NOW, rules: Optional[RequestRules] = None) -> str:
    v = validate_request(payload, now, rules or RequestRules())
    assert not v.ok and v.request is None
    return " | ".join(v.reasons)


def until_of(**data: Any) -> datetime:
    v = validate_request(body(**data), NOW)
    assert v.ok, v.reasons
    assert v.request is not None and v.request.until is not None
    return v.request.until


# -- the happy path --------------------------------------------------------------------------


def test_a_valid_request_is_fully_described():
    v = validate_request(body(time_zone="Europe/Berlin", reason="  keep\nit  running "), NOW)
    assert v.ok and v.reasons == ()
    r = v.request
    assert r is not None
    assert r.action == REQUEST and not r.is_cancel
    assert r.workspace == WorkspaceRef(SUB, "rg-a", "mlw-one") and r.compute_instance == "ci-ada"
    assert r.until == datetime(2026, 11, 24, 7, 0, tzinfo=timezone.utc) and r.until_text == "2026-11-24T07:00:00Z"
    assert r.until_local == "2026-11-24 08:00 Europe/Berlin" and r.time_zone == "Europe/Berlin"
    assert r.reason == "keep it running" and r.message_id == "msg-1"
    assert r.responder == Responder(OID, TENANT, "ada@contoso.com", "ada@contoso.com", "Ada") and r.responder.who == "ada@contoso.com"


def test_a_cancel_needs_no_time_or_reason():
    v = validate_request(body(action=CANCEL, until_date=None, until_time=None, time_zone=None, reason=None), NOW)
    assert v.ok and v.request is not None and v.request.is_cancel and v.request.until is None and v.request.until_text == ""


def test_subscription_id_case_is_normalised_and_message_id_is_optional():
    payload = body(workspace=f"{SUB.upper()}/rg-a/mlw-one")
    del payload["messageId"]
    v = validate_request(payload, NOW)
    assert v.ok and v.request is not None and v.request.workspace.subscription_id == SUB and v.request.message_id == ""


def test_responder_name_falls_back_to_email_then_object_id():
    payload = body()
    payload["responder"] = {"objectId": OID.upper(), "email": "ada@contoso.com"}
    v = validate_request(payload, NOW)
    assert v.request is not None and v.request.responder.who == "ada@contoso.com" and v.request.responder.object_id == OID
    payload["responder"] = {"objectId": OID}
    assert validate_request(payload, NOW).request.responder.who == OID  # type: ignore[union-attr]


# -- time zones and DST ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "day, clock, zone, expected",
    [
        ("2026-11-24", "08:00", "UTC", "2026-11-24T08:00:00+00:00"),
        ("2026-07-01", "08:00", "Europe/Berlin", "2026-07-01T06:00:00+00:00"),  # CEST, UTC+2
        ("2026-11-24", "08:00", "Europe/Berlin", "2026-11-24T07:00:00+00:00"),  # CET, UTC+1
        ("2026-11-24", "08:00", "Asia/Kolkata", "2026-11-24T02:30:00+00:00"),  # half-hour offset
        ("2026-11-24", "08:00", "Asia/Kathmandu", "2026-11-24T02:15:00+00:00"),  # quarter-hour offset
        ("2026-11-24", "08:00", "America/Los_Angeles", "2026-11-24T16:00:00+00:00"),
        ("2026-11-24", "23:30", "Pacific/Auckland", "2026-11-24T10:30:00+00:00"),  # NZDT, UTC+13
        ("2026-11-24", "08:00:30", "UTC", "2026-11-24T08:00:30+00:00"),  # seconds accepted
        # Berlin, spring forward on 2026-03-29 at 02:00 -> 03:00: both sides of the gap
        ("2026-03-29", "01:59", "Europe/Berlin", "2026-03-29T00:59:00+00:00"),
        ("2026-03-29", "03:00", "Europe/Berlin", "2026-03-29T01:00:00+00:00"),
        # Berlin, fall back on 2026-10-25 at 03:00 -> 02:00: 02:30 happens twice, the first is used
        ("2026-10-25", "02:30", "Europe/Berlin", "2026-10-25T00:30:00+00:00"),
        ("2026-10-25", "03:00", "Europe/Berlin", "2026-10-25T02:00:00+00:00"),
        # New York, fall back on 2026-11-01 at 02:00 -> 01:00: 01:30 EDT (the first)
        ("2026-11-01", "01:30", "America/New_York", "2026-11-01T05:30:00+00:00"),
        ("2026-11-01", "02:00", "America/New_York", "2026-11-01T07:00:00+00:00"),
    ],
)
def test_local_wall_time_to_utc(day, clock, zone, expected):
    utc, local = local_to_utc(day, clock, zone)
    assert utc.isoformat() == expected and utc.tzinfo == timezone.utc
    assert local.endswith(zone) and local.startswith(f"{day} {clock[:5]}")


@pytest.mark.parametrize(
    "day, clock, zone",
    [
        ("2026-03-29", "02:00", "Europe/Berlin"),
        ("2026-03-29", "02:30", "Europe/Berlin"),
        ("2026-03-29", "02:59", "Europe/Berlin"),
        ("2026-03-08", "02:30", "America/New_York"),
        ("2026-10-04", "02:15", "Australia/Sydney"),  # southern hemisphere spring forward
    ],
)
def test_a_wall_time_skipped_by_dst_is_refused(day, clock, zone):
    with pytest.raises(ValueError, match="does not exist .* clocks go forward"):
        local_to_utc(day, clock, zone)


def test_a_skipped_wall_time_is_a_rejection_reason():
    now = datetime(2026, 3, 28, 12, 0, tzinfo=timezone.utc)
    assert "does not exist in Europe/Berlin" in reasons(body(until_date="2026-03-29", until_time="02:30", time_zone="Europe/Berlin"), now)


@pytest.mark.parametrize(
    "day, clock, message",
    [
        ("2026-02-30", "08:00", "not a real date and time"),
        ("2026-13-01", "08:00", "not a real date and time"),
        ("2026-11-24", "24:00", "not a real date and time"),
        ("2026-11-24", "07:60", "not a real date and time"),
        ("24.11.2026", "08:00", "is not a date such as"),
        ("2026-11-24", "8am", "is not a time such as"),
        ("2026-11-24T08:00", "08:00", "is not a date such as"),
    ],
)
def test_impossible_dates_and_times(day, clock, message):
    assert message in reasons(body(until_date=day, until_time=clock))


@pytest.mark.parametrize(
    "zone", ["Mars/Olympus", "../../etc/passwd", "/etc/localtime", "Europe/Berlin\x00", "Europe", "x" * 100, "Europe/../UTC", "Europe Berlin"]
)
def test_unknown_or_hostile_time_zones(zone):
    text = reasons(body(time_zone=zone))
    assert "time zone" in text
    assert "\x00" not in text and len(text) < 400


# -- past and limit boundaries ----------------------------------------------------------------


def test_until_must_be_strictly_in_the_future():
    assert "is not in the future" in reasons(body(until_date="2026-11-23", until_time="19:00"))
    assert "is not in the future" in reasons(body(until_date="2026-11-22", until_time="08:00"))
    assert until_of(until_date="2026-11-23", until_time="19:01") == NOW + timedelta(minutes=1)


def test_until_may_reach_exactly_the_limit_and_not_a_minute_more():
    assert until_of(until_date="2026-11-26", until_time="19:00") == NOW + timedelta(hours=72)
    text = reasons(body(until_date="2026-11-26", until_time="19:01"))
    assert "more than 72 hours ahead" in text and "2026-11-26T19:00:00Z" in text


def test_the_limit_is_configurable():
    rules = RequestRules(max_hours=1.5)
    assert validate_request(body(until_date="2026-11-23", until_time="20:30"), NOW, rules).ok
    assert "more than 1.5 hours ahead" in reasons(body(until_date="2026-11-23", until_time="20:31"), NOW, rules)


def test_the_limit_counts_real_hours_across_a_dst_change():
    # 72 h after 2026-10-23 12:00Z is 2026-10-26 12:00Z = 13:00 CET (the clocks went back in between).
    now = datetime(2026, 10, 23, 12, 0, tzinfo=timezone.utc)
    assert validate_request(body(until_date="2026-10-26", until_time="13:00", time_zone="Europe/Berlin"), now).ok
    assert "more than 72 hours" in reasons(body(until_date="2026-10-26", until_time="13:01", time_zone="Europe/Berlin"), now)


def test_now_must_be_aware():
    with pytest.raises(ValueError):
        validate_request(body(), datetime(2026, 11, 23, 19, 0))


# -- the reason ---------------------------------------------------------------------------------


def test_reason_must_say_something():
    assert "'reason' is missing" in reasons(body(reason=None))
    assert "'reason' is missing" in reasons(body(reason="   \n\t "))
    assert "empty once control characters are removed" in reasons(body(reason="\u200b\u202e\x07"))


def test_reason_length_is_counted_after_cleaning():
    assert validate_request(body(reason="x" * 200), NOW).ok
    assert validate_request(body(reason="a" + " " * 300 + "b"), NOW).request.reason == "a b"  # type: ignore[union-attr]
    assert "201 characters; at most 200" in reasons(body(reason="x" * 201))
    assert "at most 256" in reasons(body(reason="x" * 300), NOW, RequestRules(max_reason_length=256))
    assert "far more than any valid value" in reasons(body(reason="x" * 5000))


def test_control_and_bidi_characters_are_dropped_from_the_reason():
    v = validate_request(body(reason="nightly\u202e build\x00 done\r\n"), NOW)
    assert v.request is not None and v.request.reason == "nightly build done"


# -- names and hostile strings ------------------------------------------------------------------


@pytest.mark.parametrize(
    "workspace, message",
    [
        ("mlw-one", "must be written as <subscriptionId>/<resourceGroup>/<workspaceName>"),
        (f"{SUB}/rg-a/mlw-one/computes/x", "must be written as"),
        (f"{SUB}/rg-a", "must be written as"),
        ("not-a-guid/rg-a/mlw-one", "is not a subscription id"),
        (f"{SUB}/../mlw-one", "is not a resource group name"),
        (f"{SUB}/rg./mlw-one", "is not a resource group name"),
        (f"{SUB}/rg a/mlw-one", "is not a resource group name"),
        (f"{SUB}/{'r' * 91}/mlw-one", "is not a resource group name"),
        (f"{SUB}/rg-a/mlw?api-version=1", "is not an Azure ML workspace name"),
        (f"{SUB}/rg-a/ml", "is not an Azure ML workspace name"),
        (f"{SUB}/rg-a/-mlw", "is not an Azure ML workspace name"),
        (f"{SUB}/rg-a/{'w' * 34}", "is not an Azure ML workspace name"),
    ],
)
def test_bad_workspace_keys(workspace, message):
    assert message in reasons(body(workspace=workspace))


def test_resource_group_names_may_hold_parentheses_periods_and_unicode_letters():
    v = validate_request(body(workspace=f"{SUB}/rg.(prod)_Ü-1/mlw_one-2"), NOW)
    assert v.ok and v.request is not None and v.request.workspace.resource_group == "rg.(prod)_Ü-1"


@pytest.mark.parametrize("name", ["ci", "1ci", "-ci", "ci_ada", "ci/ada", "../ci", "ci ada", "c" * 25, "ci%2Fada", "ci\u0430da"])
def test_bad_compute_instance_names(name):
    assert "is not a compute instance name" in reasons(body(compute_instance=name))


@pytest.mark.parametrize("name", ["ci-ada", "CI-Ada-01", "abc", "a" * 24])
def test_good_compute_instance_names(name):
    assert validate_request(body(compute_instance=name), NOW).ok


@pytest.mark.parametrize("value", [42, 4.2, True, ["ci-ada"], {"name": "ci-ada"}])
def test_fields_must_be_text(value):
    assert "'compute_instance' must be text" in reasons(body(compute_instance=value))


def test_hostile_values_are_echoed_short_and_printable():
    evil = "<script>" + "\x1b[31m" + "A" * 900
    text = reasons(body(compute_instance=evil, workspace=evil))
    assert "\x1b" not in text and "A" * 100 not in text


def test_every_problem_is_reported_at_once():
    text = reasons(body(workspace="nope", compute_instance="-", until_time=None, time_zone="Nowhere/Land", reason=None))
    for expected in ("must be written as", "not a compute instance name", "'until_time' is missing", "not a known time zone", "'reason' is missing"):
        assert expected in text


@pytest.mark.parametrize(
    "payload, message",
    [
        (None, "not a JSON object"),
        ([1, 2], "not a JSON object"),
        ({"responder": {}}, "no 'data' object"),
        ({"data": "workspace=x"}, "no 'data' object"),
        ({"data": {"action": "request_exemption"}}, "'responder' is missing"),
    ],
)
def test_malformed_bodies(payload, message):
    assert message in reasons(payload)


def test_action_must_be_known():
    assert "'action' is missing" in reasons(body(action=None))
    assert "Unknown action 'delete_everything'" in reasons(body(action="delete_everything"))


@pytest.mark.parametrize(
    "responder, message",
    [({"email": "x@contoso.com"}, "'objectId' is missing"), ({"objectId": "me"}, "is not an Entra object id"), ("ada", "'responder' is missing")],
)
def test_responder_is_required_and_checked(responder, message):
    payload = body()
    payload["responder"] = responder
    assert message in reasons(payload)


def test_identity_in_card_inputs_is_ignored():
    v = validate_request(body(objectId=OTHER, userPrincipalName="boss@contoso.com", requested_by="boss@contoso.com"), NOW)
    assert v.request is not None and v.request.responder.object_id == OID and v.request.responder.who == "ada@contoso.com"


def test_what_was_asked_is_echoed_cleaned_for_the_answer_card():
    v = validate_request(body(until_time="99:99", reason="why\x07 not"), NOW)
    assert not v.ok and v.asked["until_time"] == "99:99" and v.asked["reason"] == "why not" and v.asked["compute_instance"] == "ci-ada"


# -- policy: settings, shared secret, who may act -----------------------------------------------


def ci(assigned=(OID, TENANT), tags=None) -> ComputeInstanceRecord:
    return ComputeInstanceRecord(
        WorkspaceRef(SUB, "rg-a", "mlw-one"),
        "ci-ada",
        "Running",
        tags=tags or {},
        assigned_user_object_id=assigned[0] if assigned else None,
        assigned_user_tenant_id=assigned[1] if assigned else None,
    )


def request_from(oid=OID, upn="ada@contoso.com", tenant=TENANT, email=None, **data):
    payload = body(**data)
    payload["responder"] = {"objectId": oid, "tenantId": tenant, "userPrincipalName": upn, "email": email or upn}
    v = validate_request(payload, NOW)
    assert v.request is not None, v.reasons
    return v.request


def test_section_defaults_and_rules():
    s = ExemptionSection()
    assert s.max_hours == 72 and s.allow_assigned_user and s.tag_write_method == "auto" and s.default_time_zone in s.time_zones
    assert s.rules() == RequestRules(72.0, 200)


@pytest.mark.parametrize(
    "section, message",
    [
        ({"max_hours": 0}, "max_hours"),
        ({"max_hours": 1000}, "max_hours"),
        ({"max_reason_length": 300}, "max_reason_length"),
        ({"tag_write_method": "patch"}, "tag_write_method"),
        ({"time_zones": ["UTC", "Mars/Olympus"]}, "Mars/Olympus"),
        ({"default_time_zone": "Asia/Tokyo", "time_zones": ["UTC"]}, "default_time_zone"),
        ({"allow_assigned_user": False}, "nobody could ask"),
        ({"require_shared_secret": " "}, "header name"),
        ({"approvers": "lead@contoso.com"}, "must be a list"),
        ({"max_hourz": 3}, "unknown setting"),
    ],
)
def test_bad_exemption_settings_are_refused(section, message):
    with pytest.raises(SettingsError, match=message):
        load_section(settings_from_dict({"exemption": section}))


def test_a_secret_header_needs_the_secret_itself():
    with pytest.raises(SettingsError, match="teams.shared_secret"):
        load_section(settings_from_dict({"exemption": {"require_shared_secret": "X-Secret"}}))
    section = load_section(settings_from_dict({"exemption": {"require_shared_secret": "X-Secret"}, "teams": {"shared_secret": "abc"}}))
    assert section.require_shared_secret == "X-Secret"


def test_shared_secret_check():
    assert check_shared_secret({}, None, "abc") is None
    assert check_shared_secret({"x-secret": "abc"}, "X-Secret", "abc") is None
    assert "did not carry the X-Secret header" in check_shared_secret({"Other": "abc"}, "X-Secret", "abc")  # type: ignore[operator]
    assert "does not match" in check_shared_secret({"X-Secret": "abd"}, "X-Secret", "abc")  # type: ignore[operator]
    assert "does not match" in check_shared_secret({"X-Secret": ""}, "X-Secret", "abc")  # type: ignore[operator]
    assert "does not match" in check_shared_secret({"X-Secret": "abc "}, "X-Secret", "abc")  # type: ignore[operator]
    assert "not configured" in check_shared_secret({"X-Secret": "abc"}, "X-Secret", None)  # type: ignore[operator]


def test_the_assigned_user_may_exempt_their_ci():
    d = decide_exemption(request_from(), ci(), ExemptionSection())
    assert d.verdict == RECORD and d.basis == "assigned user"
    d = decide_exemption(request_from(oid=OID.upper()), ci(assigned=(OID, TENANT.upper())), ExemptionSection())
    assert d.verdict == RECORD


def test_the_assigned_user_may_not_when_policy_says_approvers_only():
    d = decide_exemption(request_from(), ci(), ExemptionSection(allow_assigned_user=False, approvers=("lead@contoso.com",)))
    assert d.verdict == REJECT and "only an approver may" in d.reasons[0]


def test_same_object_id_from_another_tenant_is_not_the_assigned_user():
    d = decide_exemption(request_from(tenant="88888888-8888-4888-8888-888888888888"), ci(), ExemptionSection())
    assert d.verdict == REJECT


def test_someone_else_is_rejected_with_who_may():
    d = decide_exemption(request_from(oid=OTHER, upn="eve@contoso.com"), ci(), ExemptionSection())
    assert d.verdict == REJECT and d.reasons == (
        "eve@contoso.com may not request an exemption for ci-ada: only the compute instance's assigned user or an approver may.",
    )
    d = decide_exemption(request_from(oid=OTHER, upn="eve@contoso.com"), ci(assigned=None), ExemptionSection())
    assert "this compute instance has no assigned user" in d.reasons[0]


def test_approvers_match_by_upn_or_object_id_not_email():
    section = ExemptionSection(approvers=(" Lead@Contoso.com ", OTHER.upper()))
    assert is_approver(Responder(OID, user_principal_name="lead@contoso.com"), section)
    assert is_approver(Responder(OTHER), section)
    assert not is_approver(Responder(OID, email="lead@contoso.com", user_principal_name="l.ead@contoso.onmicrosoft.com"), section)
    d = decide_exemption(request_from(oid=OTHER, upn="x@contoso.com"), ci(assigned=None), section)
    assert d.verdict == RECORD and d.basis == "approver"


def test_whoever_recorded_an_exemption_may_cancel_it_but_not_extend_it():
    recorded = ci(tags={N.exempt_until: "2026-11-24T08:00:00Z", N.exempt_by: "Bob@contoso.com"})
    cancel = request_from(oid=OTHER, upn="bob@contoso.com", action=CANCEL)
    assert decide_exemption(cancel, recorded, ExemptionSection()).verdict == RECORD
    assert decide_exemption(request_from(oid=OTHER, upn="bob@contoso.com"), recorded, ExemptionSection()).verdict == REJECT
    assert decide_exemption(request_from(oid=OTHER, upn="eve@contoso.com", action=CANCEL), recorded, ExemptionSection()).verdict == REJECT


def test_whoever_recorded_an_exemption_on_the_workspace_may_cancel_it():
    from dataclasses import replace

    base = ci()
    ws = replace(base.workspace, tags={"ci-governance.exempt.ci-ada": "until=2026-11-24T08:00:00Z;by=Bob@contoso.com"})
    recorded = replace(base, workspace=ws)
    cancel = request_from(oid=OTHER, upn="bob@contoso.com", action=CANCEL)
    decision = decide_exemption(cancel, recorded, ExemptionSection())
    assert decision.verdict == RECORD and decision.basis == "requester of the current exemption"
