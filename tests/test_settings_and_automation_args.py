"""Settings loading/validation and runbook parameter handling."""

from __future__ import annotations

import json

import pytest

from shared.automation.args import common_parser, flatten_argv
from shared.automation.output import parse_and_load
from shared.errors import SettingsError, UsageError
from shared.sections import StopSection
from shared.settings import encode_settings, load_settings, settings_from_dict

SUB = "11111111-1111-4111-8111-111111111111"


def test_defaults():
    s = settings_from_dict({})
    assert s.scope.subscriptions == () and s.tags.prefix == "ci-governance" and s.teams.workflow_url is None
    assert s.section("stop", StopSection) == StopSection()


def test_full_document():
    s = settings_from_dict(
        {
            "scope": {"subscriptions": [SUB], "resource_groups": ["rg"], "include_workspaces": ["mlw-*"], "exclude_workspaces": ["mlw-test"]},
            "identity": {"client_id": "abc"},
            "tags": {"prefix": "acme"},
            "teams": {"workflow_url": "https://example.logic.azure.com/x"},
            "stop": {"stop_job_running": True, "exclude": ["ci-*"], "concurrency": 8, "confirm_timeout_seconds": 60},
        }
    )
    assert s.scope.subscriptions == (SUB,) and s.identity.client_id == "abc" and s.tags.exempt_until == "acme.exempt-until"
    stop = s.section("stop", StopSection)
    assert stop.stop_job_running and stop.exclude == ("ci-*",) and stop.concurrency == 8 and stop.confirm_timeout_seconds == 60.0


@pytest.mark.parametrize(
    "doc, fragment",
    [
        ({"scop": {}}, "unknown settings section(s) scop"),
        ({"scope": {"subscription": [SUB]}}, "scope: unknown setting(s) subscription"),
        ({"scope": {"subscriptions": SUB}}, "scope.subscriptions must be a list"),
        ({"scope": {"subscriptions": ["not-a-guid"]}}, "is not a subscription id"),
        ({"stop": {"stop_job_running": "yes"}}, "stop.stop_job_running must be true or false"),
        ({"stop": {"concurrency": 0}}, "concurrency must be between 1 and 64"),
        ({"stop": {"concurrency": 1.5}}, "stop.concurrency must be a whole number"),
        ({"stop": {"exclude": [1]}}, "stop.exclude[0] must be a string"),
        ({"teams": {"workflow_url": "http://insecure"}}, "https://"),
        ({"tags": {"prefix": "a/b"}}, "tags: tag name 'a/b.exempt-until' contains characters"),
        ([], "must be a JSON object"),
    ],
)
def test_bad_settings_have_clear_messages(doc, fragment):
    with pytest.raises(SettingsError) as err:
        s = settings_from_dict(doc)  # type: ignore[arg-type]
        s.section("stop", StopSection)
    assert fragment in str(err.value)


def test_require_scope():
    with pytest.raises(SettingsError, match="no subscription"):
        settings_from_dict({}).require_scope()


def test_load_from_env_file_inline_and_b64(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"scope": {"subscriptions": [SUB]}, "stop": {"concurrency": 4}}))
    s = load_settings(environ={"CI_GOVERNANCE_SETTINGS": str(path)})
    assert s.scope.subscriptions == (SUB,)
    # later sources override earlier ones key by key
    s = load_settings('{"stop": {"concurrency": 2}}', environ={"CI_GOVERNANCE_SETTINGS": str(path)})
    assert s.scope.subscriptions == (SUB,) and s.section("stop", StopSection).concurrency == 2
    s = load_settings(str(path), encode_settings({"stop": {"stop_job_running": True}}), environ={})
    assert s.section("stop", StopSection).concurrency == 4 and s.section("stop", StopSection).stop_job_running


def test_load_errors(tmp_path):
    with pytest.raises(SettingsError, match="cannot read settings file"):
        load_settings(str(tmp_path / "missing.json"), environ={})
    with pytest.raises(SettingsError, match="not valid JSON: .* line 1"):
        load_settings("{not json", environ={})
    with pytest.raises(SettingsError, match="not valid base64"):
        load_settings(None, "%%%", environ={})


def test_flatten_argv_splits_portal_boxes_but_not_json():
    webhook = '{"WebhookName": "x", "RequestBody": "{\\"a\\": 1}"}'
    assert flatten_argv(["--dry-run --subscription abc", "--workspace", "mlw one", webhook]) == [
        "--dry-run",
        "--subscription",
        "abc",
        "--workspace",
        "mlw one",
        webhook,
    ]
    assert flatten_argv(["--settings '{\"a\": 1}'"]) == ["--settings", '{"a": 1}']


@pytest.mark.parametrize("argv, expected", [([], False), (["--dry-run"], True), (["--dry-run", "false"], False), (["--dry-run=YES"], True)])
def test_dry_run_forms(argv, expected):
    assert common_parser("x", "").parse_args(argv).dry_run is expected


def test_unknown_parameter_is_a_usage_error_not_an_exit():
    with pytest.raises(UsageError, match="unrecognized arguments: --bogus"):
        common_parser("x", "").parse_args(["--bogus"])
    with pytest.raises(UsageError):
        common_parser("x", "").parse_args(["--dry-run", "maybe"])


def test_scope_flags_override_settings(monkeypatch):
    monkeypatch.delenv("CI_GOVERNANCE_SETTINGS", raising=False)
    other = "22222222-2222-4222-8222-222222222222"
    args, s = parse_and_load(
        common_parser("x", ""), ["--settings", json.dumps({"scope": {"subscriptions": [SUB]}}), "--subscription", other, "--workspace", "mlw-*"]
    )
    assert s.scope.subscriptions == (other,) and s.scope.include_workspaces == ("mlw-*",)


def test_the_example_settings_file_passes_every_runbooks_rules():
    """settings.example.json is what admins copy: it must pass publish.py's whole-document check."""
    import os

    from shared.sections import check_settings_document
    from tests.conftest import ROOT

    with open(os.path.join(ROOT, "settings.example.json"), encoding="utf-8") as fh:
        doc = json.load(fh)
    settings = check_settings_document(doc)
    assert settings.scope.subscriptions and settings.teams.workflow_url
