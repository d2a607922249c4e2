"""Input that must be refused before any call, and runs that must end with exit 0/1/2 and exactly one
summary line whatever they are given (issue 12, items 4, 9, 12, 13). Every runbook, end to end:
``summary_from`` asserts the one summary line, and a traceback would fail the test by raising."""

from __future__ import annotations

import base64
import json

import pytest

from fake_azure.teams import FakeTeamsWorkflow
from runbooks import create_compute_instance, handle_exemption_request, start_compute_instances, stop_compute_instances, warn_before_stop
from shared.settings import encode_settings
from tests.builders import OTHER_TAGS, body, cli, make_ml, responder, settings_doc, tags, webhook
from tests.conftest import SUB1, TENANT, fast_stop_settings
from tests.summary import summary_from

SWEEPS = (stop_compute_instances, start_compute_instances, warn_before_stop)
SCOPE = {"scope": {"subscriptions": [SUB1]}}


@pytest.fixture
def teams(arm):
    return FakeTeamsWorkflow(arm)


def main_of(runbook, arm, now, capsys, argv):
    code = runbook.main(argv, credential=arm.credential(), now=now)
    out = capsys.readouterr().out
    return code, summary_from(out), out


def refused(runbook, arm, now, capsys, argv, fragment=""):
    code, summary, out = main_of(runbook, arm, now, capsys, argv)
    assert code == 2 and summary["exit_code"] == 2, out[-800:]
    assert fragment.lower() in summary["error"].lower(), summary["error"]
    assert "Traceback" not in out
    return summary


def seeded(ml):
    ws = ml.add_workspace(SUB1, "rg-a", "mlw-one")
    ml.add_compute_instance(ws, "ci-a")
    return ws


# -- item 4: flags --------------------------------------------------------------------------


@pytest.mark.parametrize("runbook", SWEEPS)
@pytest.mark.parametrize("flag", ["--workspace", "--resource-group", "--subscription"])
def test_an_empty_scope_flag_is_refused(arm, ml, now, capsys, runbook, flag):
    seeded(ml)
    refused(runbook, arm, now, capsys, ["--settings-b64", encode_settings(SCOPE), "--dry-run", flag, ""], "empty")
    assert arm.calls == []


@pytest.mark.parametrize("runbook", SWEEPS)
def test_a_repeated_single_flag_is_refused(arm, ml, now, capsys, runbook):
    seeded(ml)
    doc = {**SCOPE, "stop": fast_stop_settings()}
    refused(runbook, arm, now, capsys, ["--settings-b64", encode_settings(doc), "--dry-run", "--dry-run", "false"], "more than once")
    assert arm.calls == [] and ml.compute(SUB1, "rg-a", "mlw-one", "ci-a").state == "Running"


def test_two_different_requests_are_refused(arm, now, capsys, teams):
    ml = make_ml(arm)
    argv = ["--settings-b64", encode_settings(settings_doc(teams)), "--request", json.dumps(body()), "--request", json.dumps(body(message_id="m2"))]
    refused(handle_exemption_request, arm, now, capsys, argv, "more than once")
    assert tags(ml) == OTHER_TAGS


def test_two_settings_values_are_refused(arm, ml, now, capsys):
    refused(stop_compute_instances, arm, now, capsys, ["--settings-b64", encode_settings(SCOPE), "--settings-b64", encode_settings({})], "more than once")


# -- item 9: scope and sections -------------------------------------------------------------


def test_the_exemption_runbook_refuses_to_run_without_a_scope(arm, now, capsys, teams):
    ml = make_ml(arm)
    doc = {k: v for k, v in settings_doc(teams).items() if k != "scope"}
    refused(handle_exemption_request, arm, now, capsys, ["--settings-b64", encode_settings(doc), webhook(body())], "scope.subscriptions")
    assert tags(ml) == OTHER_TAGS and arm.count("PATCH") == 0 and arm.count("GET") == 0


@pytest.mark.parametrize("runbook", [*SWEEPS, handle_exemption_request, create_compute_instance])
def test_an_empty_settings_b64_is_refused(arm, now, capsys, runbook, monkeypatch, tmp_path):
    # Even with good settings from the environment: the empty value was meant to say something.
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(SCOPE))
    monkeypatch.setenv("CI_GOVERNANCE_SETTINGS", str(path))
    refused(runbook, arm, now, capsys, ["--settings-b64", ""], "--settings-b64 is empty")
    refused(runbook, arm, now, capsys, ["--settings", " "], "--settings is empty")
    assert arm.calls == []


@pytest.mark.parametrize("section,value", [("exemption", False), ("teams", []), ("create", ""), ("stop", 0), ("scope", "x"), ("pricing", None)])
def test_a_section_that_is_not_an_object_is_refused(arm, now, capsys, section, value, teams):
    doc = {**settings_doc(teams), section: value}
    refused(handle_exemption_request, arm, now, capsys, ["--settings-b64", encode_settings(doc), webhook(body())], f"'{section}' must be a JSON object")
    assert arm.calls == []


# -- item 12: non-finite numbers ------------------------------------------------------------


@pytest.mark.parametrize(
    "runbook,section,key",
    [
        (stop_compute_instances, "stop", "confirm_timeout_seconds"),
        (stop_compute_instances, "stop", "expiring_window_hours"),
        (stop_compute_instances, "stop", "writes_per_second"),
        (start_compute_instances, "start", "confirm_timeout_seconds"),
        (warn_before_stop, "warning", "minutes_before"),
        (handle_exemption_request, "exemption", "readback_delay_seconds"),
        (handle_exemption_request, "exemption", "max_hours"),
        (create_compute_instance, "create", "timeout_seconds"),
    ],
)
@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_are_refused(arm, ml, now, capsys, runbook, section, key, number):
    seeded(ml)
    doc = {**SCOPE, section: {key: number}}
    text = json.dumps(doc)  # NaN / Infinity / -Infinity: not JSON, but Python's json writes and reads them
    for argv in (["--settings", text], ["--settings-b64", base64.b64encode(text.encode()).decode()]):
        refused(runbook, arm, now, capsys, [*argv, "--dry-run"] if runbook in SWEEPS else argv)
    assert arm.calls == []


def test_a_nan_nested_in_a_dataclass_section_is_refused(arm, now, capsys, teams):
    doc = settings_doc(teams, approvers=["lead@contoso.com"], auto_approve_below={"amount": float("nan"), "currency": "USD"})
    refused(handle_exemption_request, arm, now, capsys, ["--settings", json.dumps(doc), webhook(body())], "NaN")


@pytest.mark.parametrize("number", [float("nan"), float("inf")])
def test_a_non_finite_number_that_did_not_come_from_json_is_refused_too(number):
    # Settings built in code (publish.py's check, the sandbox) skip the JSON parser's own refusal.
    from shared.errors import SettingsError
    from shared.sections import check_settings_document

    for section, key in (("stop", "confirm_timeout_seconds"), ("exemption", "readback_delay_seconds"), ("start", "confirm_interval_seconds")):
        with pytest.raises(SettingsError, match="finite"):
            check_settings_document({**SCOPE, section: {key: number}})


# -- item 13: hostile text, files, summary file ---------------------------------------------


@pytest.mark.parametrize(
    "where",
    ["displayName", "email", "userPrincipalName", "tenantId", "messageId", "compute_instance", "reason", "workspace"],
)
def test_lone_surrogates_in_a_request_end_with_one_summary_line(arm, now, capsys, teams, where):
    ml = make_ml(arm)
    request = body()
    if where in ("displayName", "email", "userPrincipalName", "tenantId"):
        request["responder"][where] = "ada\ud800@contoso.com"
    elif where == "messageId":
        request["messageId"] = "msg-\ud800"
    else:
        request["data"][where] = "ci-\udfff" if where != "workspace" else f"{SUB1}/rg-a/mlw\ud800"
    payload = webhook(json.dumps(request))  # json.dumps escapes it: valid JSON that decodes to a lone surrogate
    code, summary, out = main_of(handle_exemption_request, arm, now, capsys, ["--settings-b64", encode_settings(settings_doc(teams)), payload])
    assert code in (0, 1, 2) and summary["exit_code"] == code
    if where in ("displayName", "messageId", "reason"):
        # Harmless text: cleaned and recorded.
        assert code == 0 and "\ud800" not in "".join(tags(ml).values())
    else:
        assert code == 1 and tags(ml) == OTHER_TAGS


@pytest.mark.parametrize("runbook", [*SWEEPS, handle_exemption_request, create_compute_instance])
def test_a_lone_surrogate_in_a_settings_key_is_a_clear_refusal(arm, now, capsys, runbook):
    doc = {**SCOPE, "stop": {"\ud800bad": 1}, "exemption": {"\ud800bad": 1}, "create": {"\ud800bad": 1}, "start": {"\ud800": 1}, "warning": {"\ud800": 1}}
    refused(runbook, arm, now, capsys, ["--settings-b64", encode_settings(doc), "--dry-run"] if runbook in SWEEPS else ["--settings-b64", encode_settings(doc)])


@pytest.mark.parametrize("runbook", [*SWEEPS, handle_exemption_request, create_compute_instance])
def test_unreadable_settings_files_are_refused(arm, now, capsys, runbook, tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    binary = tmp_path / "latin1.json"
    binary.write_bytes(json.dumps({"scope": {"subscriptions": [SUB1]}, "teams": {"shared_secret": "caf\u00e9"}}, ensure_ascii=False).encode("latin-1"))
    nested = tmp_path / "nested.json"
    nested.write_text('{"scope": ' + "{" * 50_000 + "}" * 50_000 + "}")
    for path, fragment in ((deep, "nested too deeply"), (binary, "not UTF-8"), (nested, "")):
        refused(runbook, arm, now, capsys, ["--settings", str(path)], fragment)
    assert arm.calls == []


@pytest.mark.parametrize("runbook", [*SWEEPS, handle_exemption_request])
def test_an_unwritable_summary_file_is_refused_before_any_call(arm, ml, now, capsys, runbook, tmp_path, teams):
    seeded(ml)
    target = str(tmp_path / "missing-folder" / "summary.json")
    doc = settings_doc(teams) if runbook is handle_exemption_request else {**SCOPE, "stop": fast_stop_settings()}
    extra = [webhook(body())] if runbook is handle_exemption_request else ["--dry-run"]
    refused(runbook, arm, now, capsys, ["--settings-b64", encode_settings(doc), "--summary-file", target, *extra], "--summary-file")
    refused(runbook, arm, now, capsys, ["--settings-b64", encode_settings(doc), "--summary-file", str(tmp_path), *extra], "--summary-file")
    assert arm.calls == []


def test_a_summary_file_that_fails_after_the_work_is_reported_not_raised(arm, ml, now, capsys, tmp_path, monkeypatch):
    import shared.automation.output as output

    seeded(ml)
    real_open = open

    def failing_open(path, *args, **kwargs):
        if str(path).endswith("summary.json"):
            raise OSError(28, "No space left on device")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(output, "open", failing_open, raising=False)
    doc = {**SCOPE, "stop": fast_stop_settings()}
    argv = ["--settings-b64", encode_settings(doc), "--summary-file", str(tmp_path / "summary.json")]
    code, summary, out = main_of(stop_compute_instances, arm, now, capsys, argv)
    assert code == 1 and summary["exit_code"] == 1 and summary["counts"] == {"stopped": 1}
    assert any(e["scope"] == "--summary-file" and "No space left" in e["error"] for e in summary["errors"])


def test_an_unexpected_error_ends_with_one_summary_line_and_exit_1(arm, ml, now, capsys, monkeypatch):
    import shared.stop.run as run

    seeded(ml)

    def boom(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(stop_compute_instances, "run_stop_sweep", boom)
    code, summary, out = main_of(stop_compute_instances, arm, now, capsys, ["--settings-b64", encode_settings({**SCOPE, "stop": fast_stop_settings()})])
    assert code == 1 and summary["exit_code"] == 1 and "a bug" in summary["error"] and "Traceback" not in out
    assert run.run_stop_sweep is not boom


def test_create_refuses_a_surrogate_in_its_request(arm, ml, now, capsys):
    ml.add_workspace(SUB1, "rg-ml", "mlw-one")
    doc = {"scope": {"subscriptions": [SUB1]}, "create": {"polling_interval_seconds": 0.02, "timeout_seconds": 10}}
    data = {"action": "request_compute_instance", "workspace": f"{SUB1}/rg-ml/mlw-one", "name": "ci-\ud800", "size": "Standard_DS3_v2", "cost_center": "x"}
    request = {
        "data": data,
        "responder": {"objectId": responder()["objectId"], "tenantId": TENANT, "userPrincipalName": "ada\udfff@contoso.com"},
        "messageId": "m-\ud800",
    }
    code, summary, out = main_of(create_compute_instance, arm, now, capsys, ["--settings-b64", encode_settings(doc), "--request", json.dumps(request)])
    assert code == 2 and summary["exit_code"] == 2 and arm.calls == [] and "sign-in name" in summary["error"]
    # The same request from an operator's parameters: rejected by the name rules, exit 0, nothing created.
    code, summary, out = main_of(create_compute_instance, arm, now, capsys, ["--settings-b64", encode_settings(doc), *cli(name="ci-\ud800")])
    assert code == 0 and summary["results"][0]["outcome"] == "rejected" and arm.count("PUT") == 0
