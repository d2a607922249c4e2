"""The morning start's decision, pure: opt-in tag, state, start days, holidays, local date."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from shared.errors import SettingsError
from shared.models import ALREADY_RUNNING, SKIPPED, STARTED, ComputeInstanceRecord, WorkspaceRef
from shared.sections import StartSection
from shared.settings import settings_from_dict
from shared.start.policy import decide_start, local_today, read_opt_in
from shared.tags import TagNames

N = TagNames()
WS = WorkspaceRef("11111111-1111-4111-8111-111111111111", "rg", "mlw")
MON, TUE, WED, FRI, SAT, SUN = date(2026, 11, 23), date(2026, 11, 24), date(2026, 11, 25), date(2026, 11, 27), date(2026, 11, 28), date(2026, 11, 29)
CHRISTMAS = date(2026, 12, 25)  # a Friday
SECTION = StartSection(holidays=("2026-12-25", "2026-12-24"), time_zone="Europe/Amsterdam")


def ci(state="Stopped", auto_start="true", **tags):
    all_tags = dict(tags)
    if auto_start is not None:
        all_tags[N.auto_start] = auto_start
    return ComputeInstanceRecord(WS, "ci-a", state, tags=all_tags)


def decide(record, today=MON, section=SECTION, names=N):
    return decide_start(record, today, section, names)


# -- opt-in tag ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["true", "TRUE", "yes", "Yes ", "on", "1"])
def test_yes_values_opt_in_for_every_start_day(value):
    opt = read_opt_in({N.auto_start: value}, N)
    assert opt.opted_in and opt.days is None and not opt.problem


@pytest.mark.parametrize("value", ["false", "no", "off", "0", "", "  "])
def test_no_values_do_not_opt_in(value):
    opt = read_opt_in({N.auto_start: value}, N)
    assert not opt.opted_in and not opt.problem


@pytest.mark.parametrize(
    "value, days",
    [("mon,tue", {0, 1}), ("Mon, Wed ,FRI", {0, 2, 4}), ("monday;thursday", {0, 3}), ("tue wed", {1, 2}), ("sat,sun", {5, 6}), ("mon,mon", {0})],
)
def test_day_lists(value, days):
    opt = read_opt_in({N.auto_start: value}, N)
    assert opt.opted_in and opt.days == frozenset(days)


@pytest.mark.parametrize("value", ["weekdays", "mon,tues", "mo", "every day", "true,false"])
def test_unreadable_tag_is_reported(value):
    opt = read_opt_in({N.auto_start: value}, N)
    assert not opt.opted_in and "is not yes/no or a list of days" in opt.problem
    d = decide(ci(auto_start=value))
    assert not d.start and d.outcome == SKIPPED and value in d.reason


def test_tag_name_is_case_insensitive_and_follows_the_prefix():
    assert read_opt_in({"CI-Governance.Auto-Start": "yes"}, N).opted_in
    assert read_opt_in({"acme.auto-start": "yes"}, TagNames("acme")).opted_in
    assert not read_opt_in({"acme.auto-start": "yes"}, N).opted_in


# -- decisions ----------------------------------------------------------------------------


def test_opted_in_stopped_ci_starts_on_a_weekday():
    d = decide(ci())
    assert d.start and d.outcome == STARTED and "opted in (every start day)" in d.reason


def test_not_opted_in_is_skipped():
    for record in (ci(auto_start=None), ci(auto_start="no"), ci(auto_start=None, team="x")):
        d = decide(record)
        assert not d.start and d.outcome == SKIPPED and "not opted in" in d.reason


@pytest.mark.parametrize(
    "state, outcome, fragment",
    [("Running", ALREADY_RUNNING, "already running"), ("JobRunning", ALREADY_RUNNING, "already running"), ("Starting", ALREADY_RUNNING, "already starting")],
)
def test_running_cis_are_left_alone(state, outcome, fragment):
    d = decide(ci(state=state))
    assert not d.start and d.outcome == outcome and fragment in d.reason


@pytest.mark.parametrize("state", ["Stopping", "Creating", "Deleting", "Restarting", "Resizing", "SettingUp", "UserSettingUp"])
def test_transitions_are_skipped(state):
    d = decide(ci(state=state))
    assert not d.start and d.outcome == SKIPPED and f"in transition ({state})" in d.reason


@pytest.mark.parametrize("state", ["CreateFailed", "SetupFailed", "UserSetupFailed", "Unusable", "Unknown", "", "SomethingNew"])
def test_broken_or_unknown_states_are_skipped(state):
    d = decide(ci(state=state))
    assert not d.start and d.outcome == SKIPPED and "needs a look" in d.reason


@pytest.mark.parametrize("today", [SAT, SUN])
def test_weekend(today):
    d = decide(ci(), today)
    assert not d.start and d.outcome == SKIPPED and "no start on" in d.reason and "mon,tue,wed,thu,fri" in d.reason


def test_holiday_on_a_weekday():
    d = decide(ci(), CHRISTMAS)
    assert not d.start and d.outcome == SKIPPED and "holiday (2026-12-25)" in d.reason
    assert decide(ci(), date(2026, 12, 23)).start


def test_running_ci_on_a_holiday_says_already_running():
    assert decide(ci(state="Running"), CHRISTMAS).outcome == ALREADY_RUNNING


def test_day_list_narrows_the_start_days():
    record = ci(auto_start="mon,wed")
    assert decide(record, MON).start and decide(record, WED).start
    d = decide(record, TUE)
    assert not d.start and d.outcome == SKIPPED and "opted in for mon,wed, not tue" in d.reason
    assert "opted in (wed)" in decide(record, WED).reason


def test_day_list_cannot_add_days_outside_the_schedule():
    d = decide(ci(auto_start="sat"), SAT)
    assert not d.start and "no start on sat" in d.reason


def test_configured_days_include_saturday():
    section = StartSection(days=("mon", "tue", "wed", "thu", "fri", "sat"))
    assert decide(ci(), SAT, section).start and decide(ci(auto_start="sat"), SAT, section).start
    assert not decide(ci(), SUN, section).start


def test_holiday_wins_over_a_day_list():
    assert not decide(ci(auto_start="fri"), CHRISTMAS).start


# -- "today" in the configured time zone ---------------------------------------------------


def test_local_date_in_the_time_zone():
    late_friday_utc = datetime(2026, 11, 27, 23, 30, tzinfo=timezone.utc)
    assert local_today(late_friday_utc, "UTC") == FRI
    assert local_today(late_friday_utc, "Europe/Amsterdam") == SAT  # 00:30 on Saturday there
    assert local_today(datetime(2026, 11, 23, 3, 0, tzinfo=timezone.utc), "America/New_York") == date(2026, 11, 22)


def test_local_date_needs_an_aware_now():
    with pytest.raises(ValueError, match="timezone-aware"):
        local_today(datetime(2026, 11, 23, 7, 0), "UTC")


# -- settings section ---------------------------------------------------------------------


def test_defaults():
    s = StartSection()
    assert s.days == ("mon", "tue", "wed", "thu", "fri") and s.holidays == () and s.time_zone == "UTC"
    assert s.start_days() == frozenset(range(5))


def test_section_from_settings_document():
    doc = {"start": {"holidays": ["2026-12-25"], "time_zone": "Europe/Amsterdam", "days": ["MON", "tue"], "concurrency": 4}}
    section = settings_from_dict(doc).section("start", StartSection)
    assert section.holiday_dates() == frozenset({CHRISTMAS}) and section.start_days() == frozenset({0, 1}) and section.bulk().concurrency == 4


@pytest.mark.parametrize(
    "doc, fragment",
    [
        ({"days": ["mon", "funday"]}, "funday not among"),
        ({"holidays": ["25-12-2026"]}, "holiday '25-12-2026' is not a date"),
        ({"holidays": ["2026-02-30"]}, "holiday '2026-02-30' is not a real date"),
        ({"time_zone": "Mars/Olympus"}, "time_zone: 'Mars/Olympus' is not a known time zone"),
        ({"concurrency": 0}, "concurrency must be between 1 and 64"),
        ({"holidays": "2026-12-25"}, "start.holidays must be a list"),
        ({"holiday": []}, "unknown setting(s) holiday"),
    ],
)
def test_bad_section(doc, fragment):
    with pytest.raises(SettingsError) as err:
        settings_from_dict({"start": doc}).section("start", StartSection)
    assert fragment in str(err.value)
