"""publish.py end to end against the fake Automation account, plus its packaging and planning parts."""

from __future__ import annotations

import base64
import json
import os
import shlex
import subprocess
import sys
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from deployment.desired import minutes_before, next_start
from deployment.model import CONTENT_TAG, AccountInfo, PackageSpec, PublishError
from deployment.packaging import PipReportResolver, build_shared_wheel, check_public, incompatible_reason, parse_pip_report
from deployment.roles import role_guidance, scopes_from_settings
from fake_azure.automation import FakeAutomation
from fake_azure.clock import VirtualClock
from fake_azure.platform import PESSIMISTIC
from tests.builders import ACCT, ML_SUB1, ML_SUB2, PRINCIPAL, RG, RUNBOOKS, SUB, Harness, stub_runbook


@pytest.fixture
def harness(tmp_path, arm, monkeypatch):
    monkeypatch.delenv("CI_GOVERNANCE_WHEEL_CONTAINER_SAS", raising=False)
    # The documented platform (jobs run, packages validated at job time, imports limited), on a virtual clock.
    clock = VirtualClock()
    automation = FakeAutomation(arm, platform=PESSIMISTIC, import_rate_limited=True, rate_clock=clock.now)
    automation.add_account(SUB, RG, ACCT, principal_id=PRINCIPAL)
    return Harness(tmp_path, arm, automation)


def paths(writes, checks: bool = False):
    """The writes as "METHOD /path" (without the self-check jobs and their temporary runbooks unless ``checks``)."""
    out = sorted(f"{c.method} {c.path.split(ACCT, 1)[-1]}" for c in writes)
    return out if checks else [p for p in out if "/jobs/" not in p and "/runbooks/ci-governance-check-" not in p]


def test_first_publish_creates_everything(harness):
    code, out, err, writes = harness.run()
    assert code == 0, err
    acct = harness.account
    # One content-addressed Python 3.10 environment with our wheel and the third-party wheels, all imported.
    (env,) = acct.environments.values()
    assert env.name.startswith("ci-governance-py310-") and (env.language, env.version) == ("Python", "3.10")
    assert {p.name: p.state for p in env.packages.values()} == {"azure-core": "Succeeded", "cryptography": "Succeeded", "ci-governance": "Succeeded"}
    assert env.packages["ci-governance"].uri.startswith("https://stgov.blob.core.windows.net/wheels/ci_governance-0.1.0%2Bg")
    assert env.packages["azure-core"].content_hash == {"algorithm": "SHA256", "value": "A" * 64}
    ((uploaded, data),) = harness.uploads
    assert uploaded == build_shared_wheel(harness.project).filename and data == build_shared_wheel(harness.project).data
    # Every runbook is published with its file's content, the environment, and the content hash tag.
    assert set(acct.runbooks) == set(RUNBOOKS)
    for name in RUNBOOKS:
        rb = acct.runbooks[name]
        content = (harness.project / "runbooks" / f"{name}.py").read_text()
        assert (rb.state, rb.published, rb.runbook_type, rb.runtime_environment) == ("Published", content, "Python", env.name)
        assert len(rb.tags[CONTENT_TAG]) == 64
    # Schedules: daily stop at 19:00, Mon-Fri start at 07:30, warning 30 minutes before the stop, all in the time zone.
    tz = ZoneInfo("Europe/Amsterdam")
    sched = {s.name: s for s in acct.schedules.values()}
    assert {n: (s.frequency, s.start_time.astimezone(tz).strftime("%H:%M"), s.time_zone) for n, s in sched.items()} == {
        "ci-governance-nightly-stop": ("Day", "19:00", "Europe/Amsterdam"),
        "ci-governance-weekday-start": ("Week", "07:30", "Europe/Amsterdam"),
        "ci-governance-stop-warning": ("Day", "18:30", "Europe/Amsterdam"),
    }
    assert sched["ci-governance-weekday-start"].week_days == ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
    # Job schedules carry the settings as one --settings-b64 argument the runbooks decode.
    links = {(js.schedule, js.runbook): js.parameters for js in acct.job_schedules.values()}
    assert set(links) == {
        ("ci-governance-nightly-stop", "stop_compute_instances"),
        ("ci-governance-weekday-start", "start_compute_instances"),
        ("ci-governance-stop-warning", "warn_before_stop"),
    }
    for (_, runbook), params in links.items():
        flag, value = shlex.split(params["args"])
        expected = dict(harness.settings)
        if runbook == "warn_before_stop":  # the warning also learns the stop schedule's time and time zone
            expected["warning"] = {"stop_time": "19:00", "time_zone": "Europe/Amsterdam", "minutes_before": 30}
        assert flag == "--settings-b64" and json.loads(base64.b64decode(value)) == expected
    assert {w.runbook for w in acct.webhooks.values()} == {"handle_exemption_request", "create_compute_instance"}
    assert all(w.parameters == links[("ci-governance-nightly-stop", "stop_compute_instances")] for w in acct.webhooks.values())
    assert "Published:" in out and f"--assignee-object-id {PRINCIPAL}" in out


def test_second_publish_changes_nothing(harness):
    assert harness.run()[0] == 0
    uploads = len(harness.uploads)
    code, out, err, writes = harness.run(sas=False)  # no SAS needed when nothing changed
    assert (code, writes, len(harness.uploads)) == (0, [], uploads)
    assert "Plan: nothing to change." in out and "Nothing to do" in out
    assert out.count("= unchanged:") == 1 + len(RUNBOOKS) + 3 + 3 + 2


def test_changed_runbook_is_republished_alone(harness):
    harness.run()
    harness.write_runbook("start_compute_instances", stub_runbook("start_compute_instances", "print('v2')\n"))
    code, out, err, writes = harness.run()
    assert code == 0, err
    assert paths(writes) == [
        "PATCH /runbooks/start_compute_instances",
        "POST /runbooks/start_compute_instances/publish",
        "PUT /runbooks/start_compute_instances",
        "PUT /runbooks/start_compute_instances/draft/content",
    ]
    acct = harness.account
    assert acct.runbooks["start_compute_instances"].published.endswith("print('v2')\n")
    # Proved first: a temporary copy of the changed runbook (deleted again) and the others in place, one job each.
    assert [p for p in paths(writes, checks=True) if "check-" in p] == [
        "DELETE /runbooks/ci-governance-check-start_compute_instances",
        "POST /runbooks/ci-governance-check-start_compute_instances/publish",
        "PUT /runbooks/ci-governance-check-start_compute_instances",
        "PUT /runbooks/ci-governance-check-start_compute_instances/draft/content",
    ]
    assert sorted(j.runbook for j in list(acct.jobs.values())[-5:]) == sorted(["ci-governance-check-start_compute_instances", *RUNBOOKS[:1], *RUNBOOKS[2:]])
    assert "self-check start_compute_instances: passed: stub" in out
    assert {n: rb.publish_count for n, rb in acct.runbooks.items()} == {n: 2 if n == "start_compute_instances" else 1 for n in RUNBOOKS}
    assert "upload and publish runbook start_compute_instances (content changed)" in out


def test_dry_run_writes_nothing(harness):
    code, out, err, writes = harness.run("--dry-run", sas=False)
    assert (code, writes, harness.uploads) == (0, [], [])
    assert "create runtime environment ci-governance-py310-" in out and "create webhook ci-governance-handle_exemption_request" in out
    assert "needs --wheel-container-sas" in out and "Dry run: nothing was changed." in out
    for scope in (f"/subscriptions/{ML_SUB1}", f"/subscriptions/{ML_SUB2}"):
        for role in ("'AzureML Compute Operator'", "Reader", "'Tag Contributor'"):
            assert f"az role assignment create --assignee-object-id {PRINCIPAL} --assignee-principal-type ServicePrincipal --role {role} --scope {scope}" in out
    harness.run()
    harness.write_runbook("stop_compute_instances", "print('v2')\n")
    code, out, err, writes = harness.run("--dry-run", "--rotate-webhooks", "--stop-time", "20:00")
    assert (code, writes) == (0, [])
    assert "upload and publish runbook stop_compute_instances (content changed)" in out and "delete webhook" in out


def test_settings_change_recreates_job_schedules_and_patches_webhooks(harness):
    harness.run()
    hooks_before = {n: w.uri for n, w in harness.account.webhooks.items()}
    harness.settings["stop"]["concurrency"] = 4
    harness.write_settings()
    code, out, err, writes = harness.run()
    assert code == 0, err
    changed = sorted(c.method + " " + c.path.split("/")[-2] for c in writes if "/jobs/" not in c.path)
    assert changed == ["DELETE jobSchedules"] * 3 + ["PATCH webhooks"] * 2 + ["PUT jobSchedules"] * 3
    acct = harness.account
    assert all(json.loads(base64.b64decode(shlex.split(js.parameters["args"])[1]))["stop"]["concurrency"] == 4 for js in acct.job_schedules.values())
    assert {n: w.uri for n, w in acct.webhooks.items()} == hooks_before  # same URLs, new parameters
    assert "WEBHOOK URL" not in out


def test_drifted_job_schedule_parameters_recreate_only_that_job_schedule(harness):
    harness.run()
    acct = harness.account
    drifted = next(js for js in acct.job_schedules.values() if js.runbook == "warn_before_stop")
    drifted.parameters = {"args": "--settings-b64 e30="}
    others = {jid for jid, js in acct.job_schedules.items() if js is not drifted}
    code, out, err, writes = harness.run()
    assert code == 0, err
    assert paths(writes) == [f"DELETE /jobSchedules/{drifted.job_schedule_id}", f"PUT /jobSchedules/{drifted.job_schedule_id}"]
    assert others <= set(acct.job_schedules) and len(acct.job_schedules) == 3
    assert "link warn_before_stop to schedule ci-governance-stop-warning (parameters changed)" in out


def test_stop_time_change_recreates_stop_and_warning_schedules_only(harness):
    harness.run()
    start_id = next(jid for jid, js in harness.account.job_schedules.items() if js.runbook == "start_compute_instances")
    code, out, err, writes = harness.run("--stop-time", "20:15", "--warn-minutes", "45")
    assert code == 0, err
    touched = {c.path.split("/")[-1] for c in writes}
    assert {"ci-governance-nightly-stop", "ci-governance-stop-warning"} <= touched and "ci-governance-weekday-start" not in touched
    acct, tz = harness.account, ZoneInfo("Europe/Amsterdam")
    assert acct.schedules["ci-governance-nightly-stop"].start_time.astimezone(tz).strftime("%H:%M") == "20:15"
    assert acct.schedules["ci-governance-stop-warning"].start_time.astimezone(tz).strftime("%H:%M") == "19:30"
    assert start_id in acct.job_schedules and len(acct.job_schedules) == 3
    assert harness.run("--stop-time", "20:15", "--warn-minutes", "45")[3] == []


def test_warn_minutes_default_comes_from_settings(harness):
    harness.settings["warning"] = {"minutes_before": 15}
    harness.write_settings()
    assert harness.run()[0] == 0
    warn = harness.account.schedules["ci-governance-stop-warning"]
    assert warn.start_time.astimezone(ZoneInfo("Europe/Amsterdam")).strftime("%H:%M") == "18:45"


def test_webhooks_are_created_once_and_rotated_without_a_gap(harness):
    harness.run()
    first = {n: w.uri for n, w in harness.account.webhooks.items()}
    code, out, err, writes = harness.run()
    assert writes == [] and harness.arm.count("POST", "/webhooks/generateUri") == 2
    code, out, err, writes = harness.run("--rotate-webhooks")
    assert code == 0, err
    rotated = {n: w.uri for n, w in harness.account.webhooks.items()}
    assert len(rotated) == 2 and not set(rotated) & set(first) and not set(rotated.values()) & set(first.values())
    assert all(name.startswith(old + "-") for name, old in zip(sorted(rotated), sorted(first), strict=True))
    # Every new webhook exists (and its URL is printed) before any old one is deleted: callers never meet a gap.
    order = [f"{c.method} {c.path.rsplit('/', 1)[-1]}" for c in writes if "/webhooks/" in c.path and c.method in ("PUT", "DELETE")]
    assert order == [f"PUT {n}" for n in sorted(rotated)] + [f"DELETE {n}" for n in sorted(first)]
    assert all(uri in out for uri in rotated.values()) and not any(uri in out for uri in first.values())
    assert out.index(next(iter(rotated.values()))) < out.index(f"delete webhook {sorted(first)[0]}", out.index("Applying:"))
    # The next rotation can take the base names again.
    assert harness.run("--rotate-webhooks")[0] == 0 and set(harness.account.webhooks) == set(first)


def test_new_webhook_urls_can_go_to_an_owner_only_file(harness, tmp_path):
    url_file = tmp_path / "webhooks.txt"
    url_file.write_text("stale\n")
    url_file.chmod(0o644)
    code, out, err, _ = harness.run("--webhook-url-file", str(url_file))
    assert code == 0, err
    uris = harness.automation.issued_webhook_uris
    assert oct(url_file.stat().st_mode & 0o777) == "0o600"
    text = url_file.read_text()
    assert "stale" not in text and all(uri in text for uri in uris)
    assert not any(uri in out + err for uri in uris) and out.count("(mode 0600)") == 2


def test_expired_webhook_is_replaced(harness):
    harness.run()
    hook = harness.account.webhooks["ci-governance-create_compute_instance"]
    hook.expiry_time = datetime.now(timezone.utc) - timedelta(days=1)
    old = hook.uri
    code, out, err, writes = harness.run()
    assert code == 0 and "an expired webhook cannot be re-enabled" in out
    (replacement,) = [w for n, w in harness.account.webhooks.items() if n.startswith("ci-governance-create_compute_instance")]
    assert replacement.uri != old and replacement.uri in out
    assert harness.account.webhooks["ci-governance-handle_exemption_request"].uri in harness.automation.issued_webhook_uris[:2]


def test_webhook_url_appears_exactly_once_in_output(harness):
    code, out, err, _ = harness.run()
    uris = harness.automation.issued_webhook_uris
    assert code == 0 and len(uris) == 2
    for uri in uris:
        assert (out + err).count(uri) == 1
        token = uri.split("token=")[1]
        assert (out + err).count(token) == 1
    code, out, err, _ = harness.run()
    assert not any(uri in out + err for uri in uris)
    assert "SECRETSIG" not in out + err  # the SAS token is never printed either


def test_missing_automation_account_is_a_clear_error(harness):
    code, out, err, writes = harness.run(account="aa-typo")
    assert code == 2 and writes == []
    assert "Automation account 'aa-typo' was not found in resource group 'rg-automation'" in err
    assert "does not create one" in err and f"az automation account show --subscription {SUB}" in err


def test_shared_package_change_builds_a_new_environment_and_switches_runbooks(harness):
    harness.run()
    old_env = next(iter(harness.account.environments))
    (harness.project / "shared" / "util.py").write_text("VALUE = 2\n")
    code, out, err, writes = harness.run(sas=False)
    assert code == 2 and writes == [] and "--wheel-container-sas" in err
    code, out, err, writes = harness.run()
    assert code == 0, err
    acct = harness.account
    (new_env,) = acct.environments.values()  # the old one was deleted after the switch
    assert new_env.name != old_env and len(new_env.packages) == 3
    assert {rb.runtime_environment for rb in acct.runbooks.values()} == {new_env.name}
    assert "delete unused runtime environment" in out and len(harness.uploads) == 2
    assert harness.run()[3] == []


def test_failed_package_import_leaves_runbooks_on_the_old_environment(harness):
    harness.run()
    old_env = next(iter(harness.account.environments.values())).name
    harness.packages.append(
        PackageSpec("jinja2", "3.1.6", "jinja2-3.1.6-py3-none-any.whl", "c" * 64, "https://files.pythonhosted.org/packages/cc/jinja2-3.1.6-py3-none-any.whl")
    )
    harness.automation.failing_packages["jinja2"] = "The content link could not be downloaded."
    code, out, err, writes = harness.run()
    assert code == 1
    assert "Package imports failed" in err and "jinja2: The content link could not be downloaded." in err and "re-run publish.py" in err
    assert not any("/runbooks/" in c.path for c in writes)
    assert {rb.runtime_environment for rb in harness.account.runbooks.values()} == {old_env}
    harness.automation.failing_packages.clear()
    code, out, err, writes = harness.run()
    assert code == 0 and "retry: jinja2 (previous import failed: The content link could not be downloaded.)" in out
    assert {rb.runtime_environment for rb in harness.account.runbooks.values()} != {old_env}


def test_bad_inputs_exit_2_without_writing(harness):
    harness.settings_path.write_text("{not json")
    code, out, err, writes = harness.run()
    assert code == 2 and writes == [] and "is not valid JSON" in err
    harness.write_settings()
    code, out, err, writes = harness.run("--time-zone", "Mars/Olympus")
    assert code == 2 and "Unknown time zone 'Mars/Olympus'" in err
    code, out, err, writes = harness.run("--stop-time", "25:00")
    assert code == 2 and "not a time of day" in err


# -- pure parts -------------------------------------------------------------------------------------------
def test_built_wheel_is_reproducible_versioned_by_content_and_installable(tmp_path, harness):
    first, again = build_shared_wheel(harness.project), build_shared_wheel(harness.project)
    assert first.data == again.data and first.version.startswith("0.1.0+g")
    (harness.project / "shared" / "util.py").write_text("VALUE = 3\n")
    changed = build_shared_wheel(harness.project)
    assert changed.version != first.version and changed.sha256 != first.sha256
    wheel = tmp_path / changed.filename
    wheel.write_bytes(changed.data)
    assert zipfile.ZipFile(wheel).testzip() is None
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--target", str(target), str(wheel)], check=True)
    probe = subprocess.run(
        [sys.executable, "-c", "import shared.util as u; print(u.VALUE)"], cwd=tmp_path, env={"PYTHONPATH": str(target)}, capture_output=True, text=True
    )
    assert probe.stdout.strip() == "3"
    assert (target / f"ci_governance-{changed.version}.dist-info" / "RECORD").is_file()


def test_pip_report_of_a_real_resolution_is_parsed_and_a_local_link_refused(tmp_path, harness):
    wheel = build_shared_wheel(harness.project)
    index = tmp_path / "index"
    index.mkdir()
    (index / wheel.filename).write_bytes(wheel.data)
    (tmp_path / "req.txt").write_text("ci-governance\n")
    public = PipReportResolver(extra_args=["--no-index", "--find-links", str(index)], public_prefix="file://", size_lookup=lambda specs: specs)
    (spec,) = public(tmp_path / "req.txt")
    assert (spec.name, spec.version, spec.filename, spec.sha256) == ("ci-governance", wheel.version, wheel.filename, wheel.sha256)
    # With the default (public PyPI files only), such a file:// content link, which Azure cannot download, is refused at plan time.
    with pytest.raises(PublishError, match=r"(?s)not on https://files.pythonhosted.org/.*ci-governance .*: file://.*Nothing was changed"):
        check_public([spec])
    with pytest.raises(PublishError, match="pip could not resolve"):
        (tmp_path / "bad.txt").write_text("no-such-package-xyz\n")
        public(tmp_path / "bad.txt")


def test_resolution_ignores_the_admins_pip_configuration(tmp_path, monkeypatch, harness):
    """This machine's pip configuration (pip config list) adds local find-links and extra indexes: the
    resolver must not see them, nor any PIP_* variable, and must ask public PyPI."""
    monkeypatch.setenv("PIP_FIND_LINKS", "/opt/wheels")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "file:///opt/pypi/simple")
    seen = {}

    def runner(cmd, **kwargs):
        seen.update(cmd=cmd, env=kwargs["env"])
        return subprocess.CompletedProcess(cmd, 0, stdout=json.dumps({"version": "1", "install": []}), stderr="")

    assert PipReportResolver(runner=runner, size_lookup=lambda specs: specs)(tmp_path / "req.txt") == []
    assert "--isolated" in seen["cmd"] and seen["cmd"][seen["cmd"].index("--index-url") + 1] == "https://pypi.org/simple"
    assert seen["env"]["PIP_CONFIG_FILE"] == os.devnull and not [k for k in seen["env"] if k.startswith("PIP_") and k != "PIP_CONFIG_FILE"]
    # And for real: a wheel reachable only through the admin's pip configuration is not found.
    wheel = build_shared_wheel(harness.project)
    mirror, empty = tmp_path / "mirror", tmp_path / "empty"
    mirror.mkdir()
    empty.mkdir()
    (mirror / wheel.filename).write_bytes(wheel.data)
    monkeypatch.setenv("PIP_FIND_LINKS", str(mirror))
    (tmp_path / "req.txt").write_text("ci-governance\n")
    with pytest.raises(PublishError, match="pip could not resolve"):
        PipReportResolver(index_url=empty.as_uri(), size_lookup=lambda specs: specs)(tmp_path / "req.txt")


def test_pip_report_with_unusable_wheels_is_refused():
    report = {
        "version": "1",
        "install": [
            {
                "metadata": {"name": "PyYAML", "version": "6.0.2"},
                "download_info": {"url": "https://f/PyYAML-6.0.2-cp310-cp310-win_amd64.whl", "archive_info": {"hashes": {"sha256": "d" * 64}}},
            },
            {
                "metadata": {"name": "Jinja2", "version": "3.1.6"},
                "download_info": {"url": "https://f/jinja2-3.1.6-py3-none-any.whl", "archive_info": {"hashes": {"sha256": "e" * 64}}},
            },
        ],
    }
    with pytest.raises(PublishError, match=r"pyyaml 6.0.2: PyYAML-6.0.2-cp310-cp310-win_amd64.whl: platform win_amd64"):
        parse_pip_report(report)
    report["install"].pop(0)
    assert [(s.name, s.version) for s in parse_pip_report(report)] == [("jinja2", "3.1.6")]


@pytest.mark.parametrize(
    "filename, ok",
    [
        ("azure_core-1.41.0-py3-none-any.whl", True),
        ("cryptography-44.0.0-cp39-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", True),
        ("pydantic_core-2.27.2-cp310-cp310-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", True),
        ("pydantic_core-2.27.2-cp311-cp311-manylinux_2_17_x86_64.whl", False),
        ("numpy-2.2.0-cp310-cp310-manylinux_2_17_aarch64.whl", False),
        ("cffi-1.17.1-cp310-cp310-musllinux_1_1_x86_64.whl", False),
        ("six-1.17.0-py2.py3-none-any.whl", True),
        ("requests-2.34.2.tar.gz", False),
    ],
)
def test_wheel_compatibility_with_the_sandbox(filename, ok):
    assert (incompatible_reason(filename) is None) is ok


def test_schedule_time_arithmetic():
    assert minutes_before("00:10", 30) == "23:40" and minutes_before("19:00", 30) == "18:30"
    tz = ZoneInfo("Europe/Amsterdam")
    now = datetime(2026, 3, 28, 18, 55, tzinfo=tz)  # the evening before the switch to summer time
    start = next_start("19:00", "Europe/Amsterdam", now)
    assert start == datetime(2026, 3, 29, 19, 0, tzinfo=tz) and start.utcoffset() == timedelta(hours=2)
    assert next_start("19:00", "UTC", datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)) == datetime(2026, 1, 5, 19, 0, tzinfo=ZoneInfo("UTC"))


def test_scopes_and_role_guidance():
    settings = {"scope": {"subscriptions": ["s1", "s2"], "resource_groups": ["rg-a"]}, "teams": {"workflow_url": "https://secret"}}
    assert scopes_from_settings(settings) == ["/subscriptions/s1/resourceGroups/rg-a", "/subscriptions/s2/resourceGroups/rg-a"]
    with pytest.raises(PublishError, match='no "scope"'):
        scopes_from_settings({"stop": {}})
    with pytest.raises(PublishError, match="names, not ids"):
        scopes_from_settings({"scope": {"subscriptions": ["s1"], "resource_groups": ["/subscriptions/s1/resourceGroups/x"]}})
    lines = role_guidance(AccountInfo("aa", "westeurope", None, []), ["/subscriptions/s1"])
    assert any("has no managed identity" in line for line in lines)
    assert any("--assignee-object-id '<principal-object-id>'" in line and "--scope /subscriptions/s1" in line for line in lines)


def test_settings_the_runbooks_would_refuse_are_refused_before_anything_is_read(harness):
    harness.settings["stop"]["confirm_timout_seconds"] = 60  # a typo
    harness.write_settings()
    code, out, err, writes = harness.run()
    assert code == 2 and writes == [] and harness.arm.count() == 0
    assert "stop: unknown setting(s) confirm_timout_seconds" in err


# -- proof after deploy -------------------------------------------------------------------------------------
def test_a_missing_wheel_fails_the_self_check_and_leaves_the_working_environment_in_use(harness):
    """Python 3.10 packages are validated only when a job runs: the import succeeds, the job fails."""
    harness.automation.require("*", ["azure-core"])
    assert harness.run()[0] == 0
    acct = harness.account
    old_env = next(iter(acct.environments.values())).name
    links_before = {jid: (js.runbook, dict(js.parameters)) for jid, js in acct.job_schedules.items()}
    # The runbooks now need jinja2, and the new environment (a shared change) lacks it.
    harness.automation.require("*", ["jinja2"])
    (harness.project / "shared" / "util.py").write_text("VALUE = 2\n")
    harness.settings["stop"]["concurrency"] = 4
    harness.write_settings()
    code, out, err, writes = harness.run()
    assert code == 1
    for name in RUNBOOKS:
        assert f"self-check {name}: FAILED: job Failed: ModuleNotFoundError: No module named 'jinja2'" in out
    assert "No runbook was switched or relinked" in err
    assert {rb.name: rb.runtime_environment for rb in acct.runbooks.values()} == {name: old_env for name in RUNBOOKS}
    assert {jid: (js.runbook, dict(js.parameters)) for jid, js in acct.job_schedules.items()} == links_before
    assert not [n for n in acct.runbooks if n.startswith("ci-governance-check-")]  # the temporary copies are gone
    # With the wheel added the same command passes, switches, and removes the old environment.
    harness.packages.append(
        PackageSpec("jinja2", "3.1.6", "jinja2-3.1.6-py3-none-any.whl", "c" * 64, "https://files.pythonhosted.org/packages/cc/jinja2-3.1.6-py3-none-any.whl")
    )
    code, out, err, writes = harness.run()
    assert code == 0, err
    assert out.count(": passed: stub") == len(RUNBOOKS) and "proven by a self-check job per runbook" in out
    (env,) = acct.environments.values()
    assert env.name != old_env and {rb.runtime_environment for rb in acct.runbooks.values()} == {env.name}


def test_a_wheel_for_the_wrong_platform_fails_at_publish_time(harness):
    harness.automation.require("*", ["numpy"])
    harness.packages.append(
        PackageSpec("numpy", "2.0.0", "numpy-2.0.0-cp312-cp312-win_amd64.whl", "d" * 64, "https://files.pythonhosted.org/packages/x/numpy-2.0.0-cp312-cp312-win_amd64.whl")
    )
    code, out, err, writes = harness.run()
    assert code == 1 and "No module named 'numpy'" in out
    assert not harness.account.runbooks and not harness.account.job_schedules and not harness.account.webhooks


SECRET_URL = "https://prod-42.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?api-version=1&sp=%2Ftriggers&sv=1.0&sig=TOPSECRETSIG"
SHARED_SECRET = "correct-horse-battery-staple-0123456789"


def test_real_runbooks_prove_themselves_and_secrets_stay_out_of_job_inputs(harness, arm):
    """The repository's runbooks, deployed and self-checked: each job imports everything, reads its
    secrets from Key Vault and an ARM token with the account's identity, and lists the scope."""
    from fake_azure.ml import FakeMachineLearning
    from tests.conftest import ROOT

    ml = FakeMachineLearning(arm)
    ml.add_workspace(ML_SUB1, "rg-ml", "mlw-one")
    harness.settings.update(
        teams={"workflow_url": SECRET_URL, "shared_secret": SHARED_SECRET},
        warning={"workflow_url": SECRET_URL + "&warning=1"},
        exemption={"require_shared_secret": "X-CI-Governance-Secret"},
        secrets={"key_vault": harness.vault.url},
    )
    harness.write_settings()
    code, out, err, writes = harness.run("--runbooks-dir", str(Path(ROOT) / "runbooks"))
    assert code == 0, out[-3000:] + err
    for name in RUNBOOKS:
        line = next(ln for ln in out.splitlines() if ln.startswith(f"  self-check {name}: "))
        assert "passed" in line and "3 secret(s) from Key Vault" in line and f"1 workspace(s) readable in {ML_SUB1}" in line, line
    # The secrets are in Key Vault, read there only by the account's managed identity ...
    assert harness.vault.value("ci-governance-teams-workflow-url") == SECRET_URL
    assert harness.vault.value("ci-governance-teams-shared-secret") == SHARED_SECRET
    assert {who for _, who in harness.vault.reads} == {PRINCIPAL}
    # ... and in no schedule, webhook or job parameter, nor in publish.py's output.
    acct = harness.account
    inputs = [*(js.parameters for js in acct.job_schedules.values()), *(w.parameters or {} for w in acct.webhooks.values())]
    inputs += [job.parameters for job in acct.jobs.values()]
    assert len(inputs) == 3 + 2 + 5
    for params in inputs:
        text = json.dumps(params) + "".join(base64.b64decode(tok).decode("utf-8", "replace") for tok in " ".join(params.values()).split() if len(tok) > 40)
        for secret in (SECRET_URL, "TOPSECRETSIG", SHARED_SECRET):
            assert secret not in text
        assert '"stored":["teams.shared_secret","teams.workflow_url","warning.workflow_url"]' in text
    assert "TOPSECRETSIG" not in out + err and SHARED_SECRET not in out + err
    # Unchanged secrets are not written again; a changed one is, and nothing else moves.
    assert harness.run("--runbooks-dir", str(Path(ROOT) / "runbooks"))[3] == []
    harness.settings["teams"]["shared_secret"] = SHARED_SECRET + "-rotated"
    harness.write_settings()
    code, out, err, writes = harness.run("--runbooks-dir", str(Path(ROOT) / "runbooks"))
    assert code == 0, err
    assert "store in Key Vault the secret ci-governance-teams-shared-secret (teams.shared_secret) (value changed)" in out
    assert paths(writes) == ["PUT /secrets/ci-governance-teams-shared-secret"]


def test_secrets_without_a_key_vault_are_refused(harness):
    harness.settings["teams"] = {"workflow_url": SECRET_URL}
    harness.write_settings()
    code, out, err, writes = harness.run()
    assert code == 2 and writes == [] and 'name no Key Vault' in err and "teams.workflow_url" in err and "TOPSECRETSIG" not in err


# -- pacing ----------------------------------------------------------------------------------------------------
def test_a_first_deploy_of_66_packages_stays_within_the_import_limit_with_progress_lines(harness):
    harness.packages = [
        PackageSpec(f"pkg-{i:02d}", "1.0", f"pkg_{i:02d}-1.0-py3-none-any.whl", f"{i:064x}", f"https://files.pythonhosted.org/p/pkg_{i:02d}.whl", size=100_000)
        for i in range(65)
    ]
    code, out, err, writes = harness.run()
    assert code == 0, err
    assert harness.arm.count("PUT", "/packages/") == 66  # no 429, so no resend
    assert "answered 429" not in out
    progress = [ln for ln in out.splitlines() if "imports sent; next:" in ln]
    # 66 imports, at most 5 in any 33 s (10 % below the limit): 13 full windows, about 13 * 33 = 429 s of (virtual) waiting.
    assert 400 <= harness.clock.slept <= 440 and len(progress) >= 400 // 30
    assert "  66/66 imports sent" in out and "66/66 imported" in out
    times = [t for t, _ in harness.stamps]
    assert max(b - a for a, b in zip(times, times[1:], strict=False)) <= 30  # never 30 s without a line
    # The plan shows the packages as one line.
    assert "+ import packages into ci-governance-py310-" in out and "(66 of 66 packages, 6.5 MB" in out.replace("6.6 MB", "6.5 MB")
    assert "pkg-07" not in out.split("Applying:")[0]


def test_a_429_on_import_is_honoured_with_its_retry_after_with_progress_lines_meanwhile(harness):
    from fake_azure import Fault

    fault = harness.arm.inject(Fault(429, "PUT", "/packages/azure-core", times=1, retry_after=75))
    code, out, err, writes = harness.run()
    assert code == 0, err
    assert fault.hits == 1 and "(1 answered 429 and were resent after Retry-After)" in out and harness.clock.slept >= 75
    # A long Retry-After is slept in steps, with a progress line at least every 30 s.
    assert out.count("imports sent; next: azure-core") >= 2


# -- readable plan -----------------------------------------------------------------------------------------------
def test_plan_collapses_packages_unless_verbose_and_prints_roles_once(harness):
    code, out, err, writes = harness.run("--dry-run", sas=False)
    assert "import packages into" in out and "azure_core-1.41.0" not in out
    commands = [ln for ln in out.splitlines() if "az role assignment create" in ln]
    assert len(commands) == len(set(commands)) == 2 * 3 and all("   # " in ln for ln in commands)
    code, out, err, writes = harness.run("--dry-run", "--verbose", sas=False)
    assert "      azure-core 1.41.0, https://files.pythonhosted.org/packages/aa/azure_core-1.41.0-py3-none-any.whl" in out
    harness.run()
    code, out, err, writes = harness.run()
    assert "az role assignment" not in out  # an unchanged re-run stays short


def test_every_flag_has_help_and_the_help_ends_with_an_example_and_exit_codes():
    from deployment.cli import build_parser

    parser = build_parser()
    for action in parser._actions:
        assert action.help, action.option_strings
    text = parser.format_help()
    assert "example:" in text and text.rstrip().endswith("nothing was changed") and "exit codes:" in text


def test_the_stop_time_has_one_source(harness):
    harness.settings["warning"] = {"stop_time": "20:00", "time_zone": "Europe/Amsterdam"}
    harness.write_settings()
    code, out, err, writes = harness.run()
    assert code == 0, err
    tz = ZoneInfo("Europe/Amsterdam")
    assert harness.account.schedules["ci-governance-nightly-stop"].start_time.astimezone(tz).strftime("%H:%M") == "20:00"
    assert harness.account.schedules["ci-governance-stop-warning"].start_time.astimezone(tz).strftime("%H:%M") == "19:30"
    code, out, err, writes = harness.run("--stop-time", "19:00")
    assert code == 2 and writes == [] and "--stop-time 19:00 and settings warning.stop_time 20:00 disagree" in err


def test_the_admin_guide_explains_packaging_as_the_code_does():
    from deployment.packaging import README_PARAGRAPH
    from tests.conftest import ROOT

    assert README_PARAGRAPH in (Path(ROOT) / "docs" / "admin.md").read_text(encoding="utf-8")


def test_a_self_check_copy_left_by_an_interrupted_run_is_deleted(harness):
    assert harness.run()[0] == 0
    acct = harness.account
    leftover = acct.runbooks["stop_compute_instances"]
    from dataclasses import replace as copy

    acct.runbooks["ci-governance-check-stop_compute_instances"] = copy(leftover, name="ci-governance-check-stop_compute_instances")
    code, out, err, writes = harness.run()
    assert code == 0, err
    assert "delete leftover runbook ci-governance-check-stop_compute_instances" in out
    assert "ci-governance-check-stop_compute_instances" not in acct.runbooks


def test_self_check_reports_a_runbook_that_prints_no_verdict(harness):
    harness.write_runbook("warn_before_stop", "import sys\nprint('I do my work even with', sys.argv[1:])\n")
    noisy = "import sys\nprint('working')\nprint('x' * 100, file=sys.stderr)\nprint('WARNING: ' + 'y' * 90, file=sys.stderr)\n"
    harness.write_runbook("start_compute_instances", noisy)
    code, out, err, writes = harness.run()
    assert code == 1
    assert "self-check warn_before_stop: FAILED: job Completed without a self-check line in its output" in out
    # No exception on the job: its last Error record, in full (a stream list gives only summaries).
    assert "self-check start_compute_instances: FAILED: job Completed: WARNING: " + "y" * 90 in out
    assert "warn_before_stop" not in harness.account.runbooks


def test_import_pacer_keeps_below_the_limit_and_always_advances():
    from deployment.apply import ImportPacer

    clock = VirtualClock()
    clock.t = 1e9  # a large monotonic value: tiny waits must still move the clock
    pacer, sent = ImportPacer(clock.now), []
    while len(sent) < 30:
        wait = pacer.wait_needed()
        if wait <= 0:
            pacer.take()
            sent.append(clock.t)
        else:
            clock.sleep(wait)
    # Never more than 5 in any 30 s window.
    assert all(b - a >= 30 for a, b in zip(sent, sent[5:], strict=False))
