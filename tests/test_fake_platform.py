"""The fake Azure ML provider in every platform variant (fake_azure/platform.py), driven through the
real azure-ai-ml client or plain ``requests`` as production code would."""

from __future__ import annotations

import time

import pytest
import requests
from azure.ai.ml import MLClient
from azure.ai.ml.entities import ComputeInstance
from azure.core.exceptions import HttpResponseError, ResourceExistsError

from fake_azure.ml import FakeMachineLearning, compute_schedule
from fake_azure.platform import ALL_VARIANTS, FIELD_VALUES, LEGACY, OPTIMISTIC, PESSIMISTIC, VARIANT_IDS, Platform, resolve
from tests.conftest import SUB1

RG, WS = "rg-ml", "mlw-one"
ARM = "https://management.azure.com"
TAGS = "/providers/Microsoft.Resources/tags/default?api-version=2021-04-01"


def ci_url(name="ci-ada"):
    return f"{ARM}/subscriptions/{SUB1}/resourceGroups/{RG}/providers/Microsoft.MachineLearningServices/workspaces/{WS}/computes/{name}"


def ws_url():
    return f"{ARM}/subscriptions/{SUB1}/resourceGroups/{RG}/providers/Microsoft.MachineLearningServices/workspaces/{WS}"


@pytest.fixture(params=ALL_VARIANTS, ids=VARIANT_IDS)
def platform(request):
    return request.param


def make(arm, platform, **kwargs):
    ml = FakeMachineLearning(arm, stop_seconds=0.05, start_seconds=0.05, create_seconds=0.05, tags_apply_seconds=30, platform=platform, **kwargs)
    ws = ml.add_workspace(SUB1, RG, WS, tags={"team": "vision"})
    ml.add_compute_instance(ws, "ci-ada", tags={"owner": "ada"})
    client = MLClient(arm.credential(), SUB1, RG, WS, polling_interval=0.01)
    return ml, ws, client


def auth(arm):
    return {"Authorization": "Bearer " + arm.credential().get_token("https://management.azure.com/.default").token}


def test_variants_cover_every_value_of_every_field_and_validate():
    for name, values in FIELD_VALUES.items():
        if name in ("package_validation", "run_jobs"):  # documented behaviour in every variant; the old one only in LEGACY
            seen = {getattr(p, name) for p in ALL_VARIANTS + [LEGACY]}
        else:
            seen = {getattr(p, name) for p in ALL_VARIANTS}
        assert seen == set(values), name
    assert len(set(VARIANT_IDS)) == len(ALL_VARIANTS) and LEGACY not in ALL_VARIANTS
    assert (PESSIMISTIC.compute_tags_api, PESSIMISTIC.compute_full_put_existing, PESSIMISTIC.wrong_state) == ("refused", "ignored", "late")
    with pytest.raises(ValueError):
        Platform(compute_tags_api="maybe")
    # the older constructor switches map onto the fields
    assert resolve(None).name == "pessimistic"
    assert resolve(None, tags_api_supported=False, tags_api_ignored=True).compute_tags_api == "refused"
    assert resolve(OPTIMISTIC, tags_api_ignored=True).compute_tags_api == "ignored_200"
    assert resolve(None, full_put_of_existing_allowed=False).compute_full_put_existing == "refused"


def test_default_platform_is_the_pessimistic_reading(arm):
    ml = FakeMachineLearning(arm)
    assert ml.platform == PESSIMISTIC and ml.platform != LEGACY
    assert FakeMachineLearning(arm, tags_api_supported=True).platform.compute_tags_api == "applied_200"


def test_compute_tags_api_per_variant(arm, platform):
    ml, ws, client = make(arm, platform)
    r = requests.patch(ci_url() + TAGS, json={"operation": "Merge", "properties": {"tags": {"exempt": "yes"}}}, headers=auth(arm))
    stored = lambda: client.compute.get("ci-ada").tags  # noqa: E731
    mode = platform.compute_tags_api
    if mode == "refused":
        assert r.status_code == 400 and r.json()["error"]["code"] == "UnsupportedResourceOperation"
        assert stored() == {"owner": "ada"}
    elif mode == "ignored_200":
        assert r.status_code == 200 and r.json()["properties"]["tags"] == {"owner": "ada", "exempt": "yes"}
        assert stored() == {"owner": "ada"}
    elif mode == "accepted_202":
        assert r.status_code == 202 and "Location" in r.headers
        assert stored() == {"owner": "ada"}  # not yet
        polled = requests.get(r.headers["Location"], headers=auth(arm))
        assert polled.status_code == 200 and polled.json()["properties"]["tags"] == {"owner": "ada", "exempt": "yes"}
        assert stored() == {"owner": "ada", "exempt": "yes"}
    else:
        assert r.status_code == 200 and stored() == {"owner": "ada", "exempt": "yes"}


def test_accepted_tags_are_applied_shortly_after_without_polling(arm):
    clock = [0.0]
    ml = FakeMachineLearning(arm, platform=PESSIMISTIC.but(compute_tags_api="accepted_202"), clock=lambda: clock[0], tags_apply_seconds=5)
    ws = ml.add_workspace(SUB1, RG, WS)
    ml.add_compute_instance(ws, "ci-ada")
    r = requests.put(ci_url() + TAGS, json={"properties": {"tags": {"a": "1"}}}, headers=auth(arm))
    assert r.status_code == 202 and ml.compute(SUB1, RG, WS, "ci-ada").tags == {}
    clock[0] = 6
    assert requests.get(ci_url() + "?api-version=2023-08-01-preview", headers=auth(arm)).json()["tags"] == {"a": "1"}


def test_full_put_of_existing_compute_per_variant(arm, platform):
    ml, ws, client = make(arm, platform)
    ops = client.compute._operation  # the REST operations, as shared/tag_writer.py's full PUT uses them
    rest = ops.get(RG, WS, "ci-ada")
    rest.tags = {"owner": "ada", "exempt": "yes"}
    mode = platform.compute_full_put_existing
    if mode == "refused":
        with pytest.raises(HttpResponseError) as exc:
            ops.begin_create_or_update(RG, WS, "ci-ada", rest, polling=False)
        assert exc.value.status_code == 400
    else:
        ops.begin_create_or_update(RG, WS, "ci-ada", rest, polling=False)
    expected = {"owner": "ada", "exempt": "yes"} if mode == "applied" else {"owner": "ada"}
    assert client.compute.get("ci-ada").tags == expected


def test_tag_limits_on_compute_and_workspace(arm):
    ml, ws, client = make(arm, OPTIMISTIC)
    many = {f"t{i}": "v" for i in range(50)}
    r = requests.patch(ci_url() + TAGS, json={"operation": "Merge", "properties": {"tags": many}}, headers=auth(arm))
    assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidTagCount"  # 50 + owner = 51
    r = requests.patch(ws_url() + TAGS, json={"operation": "Replace", "properties": {"tags": many}}, headers=auth(arm))
    assert r.status_code == 200
    r = requests.patch(ws_url() + TAGS, json={"operation": "Merge", "properties": {"tags": {"one": "more"}}}, headers=auth(arm))
    assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidTagCount"
    for tags, code in (({"k": "v" * 257}, "InvalidTagValueLength"), ({"k" * 513: "v"}, "InvalidTagNameLength")):
        for url in (ci_url(), ws_url()):
            r = requests.put(url + TAGS, json={"properties": {"tags": tags}}, headers=auth(arm))
            assert r.status_code == 400 and r.json()["error"]["code"] == code
    assert requests.put(ci_url() + TAGS, json={"properties": {"tags": {"k": "v" * 256}}}, headers=auth(arm)).status_code == 200


def test_workspace_tags_writable_and_listed(arm, platform):
    ml, ws, client = make(arm, platform)
    r = requests.patch(ws_url() + "?api-version=2024-10-01-preview", json={"tags": {"team": "vision", "ci-governance.exempt.ci-ada": "x"}}, headers=auth(arm))
    assert r.status_code == 200 and r.json()["tags"]["ci-governance.exempt.ci-ada"] == "x"
    listed = {w.name: w.tags for w in client.workspaces.list(scope="subscription")}
    assert listed == {WS: {"team": "vision", "ci-governance.exempt.ci-ada": "x"}}
    r = requests.patch(ws_url() + TAGS, json={"operation": "Delete", "properties": {"tags": {"ci-governance.exempt.ci-ada": ""}}}, headers=auth(arm))
    if platform.compute_tags_api == "accepted_202":
        assert r.status_code == 202 and requests.get(r.headers["Location"], headers=auth(arm)).status_code == 200
    else:
        assert r.status_code == 200
    assert client.workspaces.get(WS).tags == {"team": "vision"}
    too_long = requests.patch(ws_url() + "?api-version=2024-10-01-preview", json={"tags": {"k": "v" * 257}}, headers=auth(arm))
    assert too_long.status_code == 400


def test_wrong_state_start_and_stop_per_variant(arm, platform):
    ml, ws, client = make(arm, platform)
    ml.add_compute_instance(ws, "ci-off", state="Stopped")
    if platform.wrong_state == "sync_409":
        with pytest.raises(ResourceExistsError, match="StartComputeInstanceOnlyAllowedInStoppedState"):
            client.compute.begin_start("ci-ada")
        with pytest.raises(ResourceExistsError, match="StopComputeInstanceOnlyAllowedInRunningState"):
            client.compute.begin_stop("ci-off")
        return
    # late: the POST is accepted; without polling nothing is seen ...
    client.compute._operation.begin_start(RG, WS, "ci-ada", polling=False)  # as shared/ml_gateway.py sends it
    # ... the operation fails when polled, and the CI is unchanged.
    with pytest.raises(HttpResponseError, match="StartComputeInstanceOnlyAllowedInStoppedState") as exc:
        client.compute.begin_start("ci-ada").result()
    assert exc.value.status_code == 400
    with pytest.raises(HttpResponseError, match="StopComputeInstanceOnlyAllowedInRunningState"):
        client.compute.begin_stop("ci-off").result()
    assert (client.compute.get("ci-ada").state, client.compute.get("ci-off").state) == ("Running", "Stopped")
    assert ml.compute(SUB1, RG, WS, "ci-ada").last_operation is None
    # A right-state request still works and an operation in progress is still a 409.
    client.compute._operation.begin_stop(RG, WS, "ci-ada", polling=False)
    with pytest.raises(ResourceExistsError):
        client.compute.begin_start("ci-ada")


def test_operation_status_resource_is_readable_with_get(arm):
    ml, ws, client = make(arm, PESSIMISTIC)
    r = requests.post(ci_url() + "/start?api-version=2023-08-01-preview", headers=auth(arm))
    assert r.status_code == 202 and set(r.headers) >= {"Location"}
    op = requests.get(r.headers["Location"], headers=auth(arm))
    assert op.status_code == 400 and op.json()["error"]["code"] == "StartComputeInstanceOnlyAllowedInStoppedState"


def test_native_schedules_idle_shutdown_and_last_operation(arm):
    ml, ws, client = make(arm, PESSIMISTIC)
    stop = compute_schedule("Stop", cron="0 18 * * 1-5", time_zone="W. Europe Standard Time")
    ml.add_compute_instance(ws, "ci-bob", idle_shutdown_minutes=30, schedules=[stop])
    ci = client.compute.get("ci-bob")
    assert isinstance(ci, ComputeInstance) and ci.idle_time_before_shutdown_minutes == 30
    (sched,) = ci.schedules.compute_start_stop
    assert (sched.action.lower(), sched.trigger.expression, sched.state.lower()) == ("stop", "0 18 * * 1-5", "enabled")
    raw = requests.get(ci_url("ci-bob") + "?api-version=2023-08-01-preview", headers=auth(arm)).json()["properties"]["properties"]
    assert raw["idleTimeBeforeShutdown"] == "PT30M" and raw["schedules"]["computeStartStop"][0]["triggerType"] == "Cron"
    # our stop: trigger User, InProgress then Succeeded
    client.compute._operation.begin_stop(RG, WS, "ci-bob", polling=False)
    assert ml.compute(SUB1, RG, WS, "ci-bob").last_operation["operationStatus"] == "InProgress"
    time.sleep(0.06)
    last = client.compute.get("ci-bob").last_operation
    # azure-ai-ml 1.35 hands lastOperation over with its REST (camelCase) keys.
    assert (last["operationName"], last["operationStatus"], last["operationTrigger"]) == ("Stop", "Succeeded", "User")
    # the platform stops a CI itself
    ml.simulate_idle_shutdown(ws, "ci-ada")
    time.sleep(0.06)
    ada = client.compute.get("ci-ada")
    assert ada.state == "Stopped" and ada.last_operation["operationTrigger"] == "IdleShutdown"
    ml.simulate_schedule_start(ws, "ci-ada")
    time.sleep(0.06)
    assert client.compute.get("ci-ada").last_operation["operationTrigger"] == "Schedule"
    ml.simulate_schedule_stop(ws, "ci-ada")
    time.sleep(0.06)
    ada = client.compute.get("ci-ada")
    assert ada.state == "Stopped" and (ada.last_operation["operationName"], ada.last_operation["operationTrigger"]) == ("Stop", "Schedule")
    with pytest.raises(ValueError):
        ml.add_compute_instance(ws, "ci-many", schedules=[stop] * 5)
    with pytest.raises(ValueError):
        ml.add_compute_instance(ws, "ci-idle", idle_shutdown_minutes=5)


def test_failed_create_reports_an_enum_status(arm):
    ml, ws, client = make(arm, PESSIMISTIC)
    ml.create_errors["ci-bad"] = ("QuotaExceeded", "No quota.")
    with pytest.raises(HttpResponseError):
        client.compute.begin_create_or_update(ComputeInstance(name="ci-bad", size="STANDARD_DS3_V2")).result()
    assert ml.compute(SUB1, RG, WS, "ci-bad").last_operation["operationStatus"] == "CreateFailed"
    with pytest.raises(HttpResponseError, match="invalid"):
        client.compute._operation.begin_create_or_update(RG, WS, "ci-1", client.compute._operation.get(RG, WS, "ci-ada"), polling=False)
