"""The tag format: parsing, formatting, validation and judging exemptions."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from shared.errors import TagFormatError
from shared.tags import (
    EXPIRED,
    MALFORMED,
    NONE,
    VALID,
    Exemption,
    TagNames,
    clean_text,
    exemption_tags,
    read_exemption,
    validate_tag_name,
    validate_tag_value,
    without_exemption,
)
from shared.times import format_instant, parse_instant

UTC = timezone.utc
N = TagNames()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026-11-24T08:00:00Z", datetime(2026, 11, 24, 8, 0, tzinfo=UTC)),
        ("2026-11-24T08:00Z", datetime(2026, 11, 24, 8, 0, tzinfo=UTC)),
        ("2026-11-24t08:00:00z", datetime(2026, 11, 24, 8, 0, tzinfo=UTC)),
        ("2026-11-24 08:00:00Z", datetime(2026, 11, 24, 8, 0, tzinfo=UTC)),
        ("2026-11-24T08:00:00+00:00", datetime(2026, 11, 24, 8, 0, tzinfo=UTC)),
        ("2026-11-24T09:00:00+01:00", datetime(2026, 11, 24, 8, 0, tzinfo=UTC)),
        ("2026-11-24T03:00:00-05:00", datetime(2026, 11, 24, 8, 0, tzinfo=UTC)),
        ("2026-11-24T13:30:00+0530", datetime(2026, 11, 24, 8, 0, tzinfo=UTC)),
        ("2026-11-24T00:30:00+01:00", datetime(2026, 11, 23, 23, 30, tzinfo=UTC)),  # crosses midnight
        ("2026-11-24T08:00:00.5Z", datetime(2026, 11, 24, 8, 0, 0, 500000, tzinfo=UTC)),
        ("2026-11-24T08:00:00.1234567Z", datetime(2026, 11, 24, 8, 0, 0, 123456, tzinfo=UTC)),  # .NET's 7 digits
        ("2026-11-24", datetime(2026, 11, 24, 23, 59, 59, tzinfo=UTC)),  # a bare date: through that day
        ("  2026-11-24T08:00:00Z  ", datetime(2026, 11, 24, 8, 0, tzinfo=UTC)),
        ("2028-02-29T12:00:00Z", datetime(2028, 2, 29, 12, 0, tzinfo=UTC)),
    ],
)
def test_parse_instant_accepts(text, expected):
    assert parse_instant(text) == expected
    assert parse_instant(text).tzinfo is not None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "tomorrow",
        "next friday",
        "2026-11-24T08:00:00",  # no zone: ambiguous, refused
        "2026-13-01T08:00:00Z",
        "2026-02-30T08:00:00Z",
        "2027-02-29",
        "2026-11-24T24:00:00Z",
        "2026-11-24T08:60:00Z",
        "2026-11-24T08:00:61Z",
        "2026-11-24T08:00:00+25:00",
        "24/11/2026",
        "2026-11-24T08:00:00Z extra",
        "1732435200",
    ],
)
def test_parse_instant_refuses(text):
    with pytest.raises(TagFormatError):
        parse_instant(text)


def test_format_instant_is_utc_to_the_second_and_round_trips():
    moment = datetime(2026, 11, 24, 9, 30, 15, 999999, tzinfo=timezone(timedelta(hours=1)))
    text = format_instant(moment)
    assert text == "2026-11-24T08:30:15Z"
    assert parse_instant(text) == moment.replace(microsecond=0)


def test_format_instant_refuses_naive():
    with pytest.raises(TagFormatError):
        format_instant(datetime(2026, 11, 24, 8, 0))


def tags(until=None, by="ada@contoso.com", reason="training", **extra):
    out = dict(extra)
    if until is not None:
        out[N.exempt_until] = until
    if by is not None:
        out[N.exempt_by] = by
    if reason is not None:
        out[N.exempt_reason] = reason
    return out


NOW = datetime(2026, 11, 23, 19, 0, tzinfo=UTC)


def test_no_tags_means_no_exemption():
    status = read_exemption({"team": "vision"}, NOW)
    assert status.state == NONE and not status.protects and status.problem == ""


def test_valid_until_strictly_after_now():
    status = read_exemption(tags("2026-11-23T19:00:01Z"), NOW)
    assert status.state == VALID and status.protects
    assert status.exemption.by == "ada@contoso.com" and status.exemption.reason == "training"


def test_expires_at_the_exact_instant():
    status = read_exemption(tags("2026-11-23T19:00:00Z"), NOW)
    assert status.state == EXPIRED and not status.protects
    assert "expired at 2026-11-23T19:00:00Z" in status.problem


def test_offset_is_honoured_at_the_boundary():
    # 20:00+01:00 is 19:00Z: expired at NOW; 20:00:01+01:00 is still valid.
    assert read_exemption(tags("2026-11-23T20:00:00+01:00"), NOW).state == EXPIRED
    assert read_exemption(tags("2026-11-23T20:00:01+01:00"), NOW).state == VALID


def test_now_in_another_zone_is_the_same_instant():
    amsterdam_now = NOW.astimezone(timezone(timedelta(hours=1)))
    assert read_exemption(tags("2026-11-23T19:30:00Z"), amsterdam_now).state == VALID


def test_naive_now_is_a_programming_error():
    with pytest.raises(ValueError):
        read_exemption(tags("2026-11-24T08:00:00Z"), datetime(2026, 11, 23, 19, 0))


@pytest.mark.parametrize("value", ["soon", "2026-11-24T08:00:00", "", "2026-02-30"])
def test_malformed_until_does_not_protect_and_says_why(value):
    status = read_exemption(tags(value), NOW)
    assert status.state == MALFORMED and not status.protects
    assert N.exempt_until in status.problem


def test_missing_requester_is_malformed():
    status = read_exemption(tags("2026-11-24T08:00:00Z", by="  "), NOW)
    assert status.state == MALFORMED and N.exempt_by in status.problem


def test_orphan_by_or_reason_without_until_is_malformed():
    assert read_exemption({N.exempt_by: "x@y"}, NOW).state == MALFORMED
    assert read_exemption({N.exempt_reason: "why"}, NOW).state == MALFORMED


def test_tag_names_are_case_insensitive():
    status = read_exemption({N.exempt_until.upper(): "2026-11-24T08:00:00Z", N.exempt_by.title(): "ada@contoso.com"}, NOW)
    assert status.state == VALID


def test_custom_prefix():
    names = TagNames(prefix="platform")
    assert names.exempt_until == "platform.exempt-until"
    assert read_exemption({"platform.exempt-until": "2026-11-24T08:00:00Z", "platform.exempt-by": "a"}, NOW, names).state == VALID
    # the default names are not read under another prefix
    assert read_exemption(tags("2026-11-24T08:00:00Z"), NOW, names).state == NONE


def test_prefix_with_forbidden_characters_is_refused():
    with pytest.raises(TagFormatError):
        TagNames(prefix="ci/governance")


def test_exemption_tags_round_trip():
    ex = Exemption(until=datetime(2026, 11, 24, 8, 0, tzinfo=UTC), by="ada@contoso.com", reason="fine-tuning\nrun", request_id="msg-1")
    written = exemption_tags(ex)
    assert written == {
        N.exempt_until: "2026-11-24T08:00:00Z",
        N.exempt_by: "ada@contoso.com",
        N.exempt_reason: "fine-tuning run",
        N.exempt_request: "msg-1",
    }
    status = read_exemption(written, NOW)
    assert status.state == VALID and status.exemption.request_id == "msg-1"


def test_exemption_tags_require_a_requester():
    with pytest.raises(TagFormatError):
        exemption_tags(Exemption(until=NOW + timedelta(hours=1), by="\n\t"))


def test_long_reason_is_cut_to_the_azure_limit():
    written = exemption_tags(Exemption(until=NOW + timedelta(hours=1), by="a@b", reason="x" * 1000))
    assert len(written[N.exempt_reason]) == 256 and written[N.exempt_reason].endswith("…")


@pytest.mark.parametrize(
    "raw, cleaned",
    [
        ("  two  spaces\tand\ttabs ", "two spaces and tabs"),
        ("line1\r\nline2", "line1 line2"),
        ("bell\x07 and null\x00", "bell and null"),
        ("zero\u200bwidth", "zerowidth"),
        ("e\u0301", "é"),  # NFC
        ("GPU 🚀 run", "GPU 🚀 run"),
        ('quotes "and" \\backslash', 'quotes "and" \\backslash'),
    ],
)
def test_clean_text(raw, cleaned):
    assert clean_text(raw) == cleaned


def test_validate_tag_name_and_value():
    assert validate_tag_name("team") == "team"
    for bad in ("", "a/b", "a?b", "x" * 513, "a<b", "100%", "a&b", "a\\b"):
        with pytest.raises(TagFormatError):
            validate_tag_name(bad)
    assert validate_tag_value("v" * 256)
    with pytest.raises(TagFormatError):
        validate_tag_value("v" * 257)
    with pytest.raises(TagFormatError):
        validate_tag_value(5)  # type: ignore[arg-type]


def test_without_exemption_keeps_other_tags_whatever_the_case():
    before = {"team": "vision", N.exempt_until.upper(): "x", N.exempt_by: "y", N.exempt_reason: "z", N.exempt_request: "m", N.owner: "o"}
    assert without_exemption(before) == {"team": "vision", N.owner: "o"}


# -- the workspace record (issue 10) ----------------------------------------------------------------
def test_workspace_record_round_trip_fits_256_characters_and_ci_record_wins():
    from datetime import datetime, timezone

    from shared.tags import (
        PLACE_CI,
        PLACE_WORKSPACE,
        Exemption,
        TagNames,
        read_exemption_for,
        read_workspace_exemption,
        workspace_exemption_tag,
        workspace_exemption_value,
    )

    names = TagNames()
    now = datetime(2026, 11, 23, 19, 0, tzinfo=timezone.utc)
    until = datetime(2026, 11, 24, 7, 0, tzinfo=timezone.utc)
    long_by = "a" * 200 + "@contoso.com"
    value = workspace_exemption_value(Exemption(until, long_by, "ignored reason", "m" * 120), approved_by="lead;=x@contoso.com")
    assert len(value) <= 256 and value.startswith("until=2026-11-24T07:00:00Z;by=") and "lead" in value
    tag = workspace_exemption_tag("CI-Ada", names)
    assert tag == "ci-governance.exempt.ci-ada"
    status = read_workspace_exemption({tag.upper(): value}, "ci-ada", now, names)
    assert status.protects and status.place == PLACE_WORKSPACE and status.exemption.until == until and status.approved_by == "leadx@contoso.com"
    assert status.exemption.by.startswith("aaaa") and status.exemption.request_id.endswith("…")
    # A valid record on the CI wins; an expired one on the CI does not hide a valid one on the workspace.
    on_ci = {names.exempt_until: "2026-11-24T09:00:00Z", names.exempt_by: "bob@contoso.com"}
    assert read_exemption_for(on_ci, {tag: value}, "ci-ada", now, names).place == PLACE_CI
    expired = {names.exempt_until: "2026-11-23T09:00:00Z", names.exempt_by: "bob@contoso.com"}
    assert read_exemption_for(expired, {tag: value}, "ci-ada", now, names).place == PLACE_WORKSPACE
    assert read_exemption_for(expired, {}, "ci-ada", now, names).state == "expired"
    assert read_workspace_exemption({tag: "until=soon;by=x"}, "ci-ada", now, names).state == "malformed"


def test_a_prefix_too_long_for_the_workspace_tag_is_refused():
    import pytest

    from shared.errors import TagFormatError
    from shared.tags import TagNames

    TagNames("p" * 480)
    with pytest.raises(TagFormatError, match="at most 480"):
        TagNames("p" * 481)
