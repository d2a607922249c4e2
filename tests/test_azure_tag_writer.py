"""Writing tags on an existing compute instance: the Tags API, the full-PUT fallback, and the
read-back that catches a write that did not stick."""

from __future__ import annotations

import json
from typing import Any, Dict, List

import pytest
import responses

from fake_azure import FakeArmServer, Fault
from fake_azure.ml import FakeMachineLearning
from fake_azure.platform import LEGACY, TAGS_ACCEPTED_202
from shared.azure.ml_gateway import AzureMLGateway
from shared.azure.tag_writer import TagWriter
from shared.errors import ServiceError, TagWriteError
from shared.models import WorkspaceRef
from shared.tags import TagNames
from tests.conftest import SUB1

N = TagNames()
WS = WorkspaceRef(SUB1, "rg-a", "mlw-one")
OTHERS = {"team": "vision", "ci-governance.owner": "ada@contoso.com", "ci-governance.auto-start": "mon,wed"}
OURS = {N.exempt_until: "2026-11-24T07:00:00Z", N.exempt_by: "ada@contoso.com", N.exempt_reason: "training", N.exempt_request: "msg-1"}
TAGS_PATH = "/providers/Microsoft.Resources/tags/default"


@pytest.fixture
def wire():
    """The fake ARM server plus the responses mock, whose ``calls`` show request bodies."""
    server = FakeArmServer()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        server.install(mock)
        yield server, mock


def setup(wire, method="tags_api", tags=None, **ml_options):
    server, _ = wire
    # LEGACY (the Tags API and the full PUT both apply) unless a test names its platform: these tests check
    # each route's mechanics; where the platform refuses them, tests/test_exemption_platforms.py covers it.
    if not {"platform", "tags_api_supported", "tags_api_ignored", "full_put_of_existing_allowed"} & set(ml_options):
        ml_options["platform"] = LEGACY
    else:
        ml_options.setdefault("platform", LEGACY)
    ml = FakeMachineLearning(server, **ml_options)
    ws = ml.add_workspace(SUB1, "rg-a", "mlw-one")
    ml.add_compute_instance(ws, "ci-ada", tags=dict(OTHERS if tags is None else tags))
    cred = server.credential()
    sleeps: List[float] = []
    writer = TagWriter(cred, AzureMLGateway(cred), method, readback_attempts=3, readback_delay_seconds=0.5, sleep=sleeps.append)
    return ml, writer, sleeps


def stored(ml) -> Dict[str, str]:
    return dict(ml.compute(SUB1, "rg-a", "mlw-one", "ci-ada").tags)


def bodies(mock, method: str) -> List[Any]:
    return [json.loads(c.request.body) for c in mock.calls if c.request.method == method and TAGS_PATH.lower() in c.request.url.lower()]


def test_merge_through_the_tags_api_keeps_every_other_tag(wire):
    ml, writer, sleeps = setup(wire)
    result = writer.merge(WS, "ci-ada", OURS)
    assert stored(ml) == {**OTHERS, **OURS} and result.tags == {**OTHERS, **OURS}
    assert result.method == "tags_api" and not result.fell_back and sleeps == []
    # the body is a TagsPatchResource (resources.json 2021-04-01, Tags_UpdateAtScope) carrying only our tags
    assert bodies(wire[1], "PATCH") == [{"operation": "Merge", "properties": {"tags": OURS}}]
    assert "api-version=2021-04-01" in [c.request.url for c in wire[1].calls if c.request.method == "PATCH"][0]


def test_merge_updates_a_tag_written_in_another_letter_case_in_place(wire):
    ml, writer, _ = setup(wire, tags={**OTHERS, "CI-Governance.Exempt-Until": "2026-01-01T00:00:00Z"})
    current = stored(ml)
    writer.merge(WS, "ci-ada", {N.exempt_until: "2026-11-24T07:00:00Z"}, current=current)
    assert stored(ml) == {**OTHERS, "CI-Governance.Exempt-Until": "2026-11-24T07:00:00Z"}


def test_delete_removes_only_our_tags(wire):
    ml, writer, _ = setup(wire, tags={**OTHERS, **OURS})
    result = writer.delete(WS, "ci-ada", N.exemption_keys)
    assert stored(ml) == OTHERS and result.tags == OTHERS
    # Delete names each tag with its current value, so a tag someone changed meanwhile is not removed blindly
    assert bodies(wire[1], "PATCH") == [{"operation": "Delete", "properties": {"tags": OURS}}]


def test_delete_with_nothing_to_delete_writes_nothing(wire):
    ml, writer, _ = setup(wire)
    result = writer.delete(WS, "ci-ada", N.exemption_keys, current=stored(ml))
    assert result.tags == OTHERS and "none of the tags" in result.detail
    assert wire[0].count("PATCH") == 0 and wire[0].count("PUT") == 0


def test_auto_falls_back_to_a_full_put_when_the_tags_api_is_refused(wire):
    ml, writer, _ = setup(wire, "auto", tags_api_supported=False)
    result = writer.merge(WS, "ci-ada", OURS)
    assert result.method == "full_put" and result.fell_back and stored(ml) == {**OTHERS, **OURS}
    assert wire[0].count("PATCH", TAGS_PATH, status=400) == 1 and wire[0].count("PUT", "/computes/ci-ada", status=200) == 1
    result = writer.delete(WS, "ci-ada", N.exemption_keys)
    assert result.method == "full_put" and stored(ml) == OTHERS


def test_the_tags_api_alone_reports_a_refusal_and_how_to_switch(wire):
    ml, writer, _ = setup(wire, "tags_api", tags_api_supported=False)
    with pytest.raises(TagWriteError, match="refused .* UnsupportedResourceOperation.*tag_write_method to 'auto' or 'full_put'"):
        writer.merge(WS, "ci-ada", OURS)
    assert stored(ml) == OTHERS and wire[0].count("PUT") == 0


def test_full_put_never_touches_the_tags_api(wire):
    ml, writer, _ = setup(wire, "full_put")
    result = writer.merge(WS, "ci-ada", OURS)
    assert result.method == "full_put" and not result.fell_back and stored(ml) == {**OTHERS, **OURS}
    assert wire[0].count("PATCH") == 0 and wire[0].count("GET", TAGS_PATH) == 0


def test_a_tags_api_write_that_does_not_stick_is_detected(wire):
    ml, writer, sleeps = setup(wire, "tags_api", tags_api_ignored=True)
    with pytest.raises(TagWriteError, match="answered success .* does not show the change: ci-governance.exempt-until='2026-11-24T07:00:00Z' \\(found None\\)"):
        writer.merge(WS, "ci-ada", OURS)
    assert stored(ml) == OTHERS
    # it read back three times, waiting between reads, before giving up
    assert sleeps == [0.5, 0.5] and wire[0].count("GET", "/computes/ci-ada") == 3


def test_a_delete_that_does_not_stick_is_detected(wire):
    ml, writer, _ = setup(wire, "tags_api", tags={**OTHERS, **OURS}, tags_api_ignored=True)
    with pytest.raises(TagWriteError, match="is still present"):
        writer.delete(WS, "ci-ada", N.exemption_keys)
    assert stored(ml) == {**OTHERS, **OURS}


def test_auto_falls_back_when_the_tags_api_is_silently_ignored(wire):
    ml, writer, _ = setup(wire, "auto", tags_api_ignored=True)
    result = writer.merge(WS, "ci-ada", OURS)
    assert result.method == "full_put" and result.fell_back and stored(ml) == {**OTHERS, **OURS}


def test_both_routes_refused_is_one_clear_error(wire):
    ml, writer, _ = setup(wire, "auto", tags_api_supported=False, full_put_of_existing_allowed=False)
    with pytest.raises(TagWriteError, match="a full PUT of compute mlw-one/ci-ada to change its tags failed: HTTP 400"):
        writer.merge(WS, "ci-ada", OURS)
    assert stored(ml) == OTHERS


def test_throttling_and_transient_errors_are_retried_by_azure_core(wire):
    ml, writer, _ = setup(wire)
    throttled = wire[0].inject(Fault(429, method="PATCH", path_contains=TAGS_PATH, times=1, retry_after=0.01))
    flaky = wire[0].inject(Fault(503, method="PATCH", path_contains=TAGS_PATH, times=1, retry_after=0.01))
    writer.merge(WS, "ci-ada", OURS)
    assert throttled.hits == 1 and flaky.hits == 1 and stored(ml) == {**OTHERS, **OURS}
    assert wire[0].count("PATCH", TAGS_PATH, status=200) == 1


def test_a_permission_error_is_raised_as_is_and_not_papered_over_by_a_fallback(wire):
    ml, writer, _ = setup(wire, "auto")
    wire[0].inject(Fault(403, method="PATCH", path_contains=TAGS_PATH, times=None))
    with pytest.raises(ServiceError) as info:  # the port's own error type, never azure-core's
        writer.merge(WS, "ci-ada", OURS)
    assert info.value.status == 403 and wire[0].count("PUT") == 0 and stored(ml) == OTHERS


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="tags_api, full_put, auto"):
        TagWriter(None, None, "patch")


# -- issue 10: 202, limits, ambiguous 5xx, the workspace -------------------------------------------
def test_a_tags_api_202_is_polled_once_and_proven_by_reading_back(wire):
    ml, writer, sleeps = setup(wire, platform=TAGS_ACCEPTED_202, tags_apply_seconds=30)
    result = writer.merge(WS, "ci-ada", OURS)
    assert result.method == "tags_api" and stored(ml) == {**OTHERS, **OURS} and sleeps == []  # polling the Location applied it


def test_the_50_tag_limit_is_checked_before_writing_without_advice_to_switch_methods(wire):
    many = {f"t{i}": "v" for i in range(48)}
    ml, writer, _ = setup(wire, tags=many)
    with pytest.raises(TagWriteError) as exc:
        writer.merge(WS, "ci-ada", OURS, current=many)
    text = str(exc.value)
    assert "Azure allows 50 per resource" in text and "tag_write_method" not in text
    assert bodies(wire[1], "PATCH") == [] and stored(ml) == many


def test_a_tags_api_write_that_answered_503_but_was_applied_is_read_back_as_success(wire):
    ml, writer, _ = setup(wire)
    wire[0].inject(Fault(503, method="PATCH", path_contains=TAGS_PATH, times=None, retry_after=0.01, after_handler=True))  # applied, then 503
    result = writer.merge(WS, "ci-ada", OURS)
    assert result.method == "tags_api" and "applied" in result.detail and stored(ml) == {**OTHERS, **OURS}


def test_workspace_tags_are_merged_and_deleted_through_the_tags_api_and_read_back(wire):
    ml, writer, _ = setup(wire)
    server = wire[0]
    ml.workspace(SUB1, "rg-a", "mlw-one").tags.update({"team": "vision"})
    result = writer.merge_workspace(WS, {"ci-governance.exempt.ci-ada": "until=2026-11-24T07:00:00Z;by=ada"})
    assert result.method == "workspace_tags_api" and ml.workspace(SUB1, "rg-a", "mlw-one").tags == {
        "team": "vision",
        "ci-governance.exempt.ci-ada": "until=2026-11-24T07:00:00Z;by=ada",
    }
    writer.delete_workspace(WS, ["CI-GOVERNANCE.EXEMPT.CI-ADA"])
    assert ml.workspace(SUB1, "rg-a", "mlw-one").tags == {"team": "vision"}
    assert server.count("PATCH") == 2
