"""decide_stop: every state, exemption status and policy combination."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from shared.models import ALREADY_STOPPED, EXEMPT, FAILED_STATES, SKIPPED, STOPPED, TRANSITION_STATES, ComputeInstanceRecord, WorkspaceRef
from shared.sections import StopPolicy
from shared.stop.policy import decide_stop
from shared.tags import TagNames
from shared.times import format_instant

UTC = timezone.utc
NOW = datetime(2026, 11, 23, 19, 0, tzinfo=UTC)
N = TagNames()
WS = WorkspaceRef("sub", "rg", "mlw-vision")


def ci(state="Running", name="ci-ada", tags=None):
    return ComputeInstanceRecord(WS, name, state, tags=tags or {})


def exempt(delta_hours, by="ada@contoso.com"):
    return {N.exempt_until: format_instant(NOW + timedelta(hours=delta_hours)), N.exempt_by: by}


EXEMPTIONS = {
    "none": ({}, False),
    "valid": (exempt(5), True),
    "expired": (exempt(-1), False),
    "malformed": ({N.exempt_until: "soon", N.exempt_by: "x"}, False),
}
ALL_STATES = ("Running", "JobRunning", "Stopped", "Stopping", *TRANSITION_STATES, *FAILED_STATES, "")


@pytest.mark.parametrize("state", ALL_STATES)
@pytest.mark.parametrize("exemption", list(EXEMPTIONS))
@pytest.mark.parametrize("stop_job_running", [False, True])
def test_full_matrix(state, exemption, stop_job_running):
    tags, protects = EXEMPTIONS[exemption]
    d = decide_stop(ci(state, tags=tags), NOW, StopPolicy(stop_job_running=stop_job_running))
    running = state in ("Running", "JobRunning")
    # Only running CIs are ever stopped, never an exempt one, never a job unless the policy says so.
    expected_stop = running and not protects and (state == "Running" or stop_job_running)
    assert d.stop is expected_stop
    if d.stop:
        assert d.outcome == STOPPED
    elif state in ("Stopped", "Stopping"):
        assert d.outcome == ALREADY_STOPPED
    elif running and protects:
        assert d.outcome == EXEMPT and "ada@contoso.com" in d.reason
    else:
        assert d.outcome == SKIPPED
    assert d.reason
    assert d.exemption.state == exemption


def test_expired_and_malformed_are_explained_in_the_reason():
    assert "expired at" in decide_stop(ci(tags=exempt(-1)), NOW).reason
    assert "not an ISO 8601" in decide_stop(ci(tags={N.exempt_until: "soon", N.exempt_by: "x"}), NOW).reason


def test_transition_and_failed_states_are_reported_not_touched():
    d = decide_stop(ci("Starting"), NOW)
    assert (d.stop, d.outcome) == (False, SKIPPED) and "transition" in d.reason
    d = decide_stop(ci("Unusable"), NOW)
    assert (d.stop, d.outcome) == (False, SKIPPED) and "needs a look" in d.reason


def test_job_running_skipped_by_default():
    d = decide_stop(ci("JobRunning"), NOW)
    assert not d.stop and "running a job" in d.reason


def test_exclusion_patterns():
    policy = StopPolicy(exclude=("ci-shared-*", "mlw-nlp/*", "SUB/RG/MLW-VISION/CI-KEEP"))
    assert decide_stop(ci(name="ci-shared-demo"), NOW, policy).outcome == SKIPPED
    assert decide_stop(ci(name="ci-keep"), NOW, policy).outcome == SKIPPED  # full key, case-insensitive
    assert decide_stop(ci(name="ci-ada"), NOW, policy).stop
    other = ComputeInstanceRecord(WorkspaceRef("sub", "rg", "mlw-nlp"), "ci-x", "Running")
    assert "excluded by policy" in decide_stop(other, NOW, policy).reason


def test_exclusion_wins_even_over_stopped_state():
    d = decide_stop(ci("Stopped", name="ci-shared-1"), NOW, StopPolicy(exclude=("ci-shared-*",)))
    assert d.outcome == SKIPPED


def test_custom_tag_prefix_is_used():
    names = TagNames(prefix="acme")
    tags = {"acme.exempt-until": format_instant(NOW + timedelta(hours=2)), "acme.exempt-by": "ada"}
    assert decide_stop(ci(tags=tags), NOW, names=names).outcome == EXEMPT
    assert decide_stop(ci(tags=tags), NOW).stop  # default prefix does not see them
