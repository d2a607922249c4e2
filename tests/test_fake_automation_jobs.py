"""The fake Automation runs jobs, webhooks and package imports as the platform does, in every platform
variant: driven through azure-mgmt-automation, requests and (inside the jobs) azure-identity."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.mgmt.automation import AutomationClient
from azure.mgmt.automation import models as m

from fake_azure.automation import FakeAutomation
from fake_azure.ml import FakeMachineLearning
from fake_azure.platform import ALL_VARIANTS, LEGACY, PESSIMISTIC, VARIANT_IDS
from shared.settings import encode_settings
from tests.conftest import ROOT, SUB1, fast_stop_settings

RG, ACCT = "rg-automation", "aa-governance"
GOOD_WHEEL = "https://files.pythonhosted.org/packages/aa/bb/azure_core-1.41.0-py3-none-any.whl"
BAD_WHEEL = "https://files.pythonhosted.org/packages/x/numpy-2.0.0-cp312-cp312-win_amd64.whl"
ECHO = "import json, sys\nprint(json.dumps(sys.argv))\n"


@pytest.fixture(params=ALL_VARIANTS, ids=VARIANT_IDS)
def platform(request):
    return request.param


def setup(arm, platform, **kwargs):
    automation = FakeAutomation(arm, platform=platform, **kwargs)
    automation.add_account(SUB1, RG, ACCT, principal_id="aaaaaaaa-0000-4000-8000-000000000001")
    client = AutomationClient(arm.credential(), SUB1, polling_interval=0, retry_total=0)
    runtime = m.RuntimeProperties(language="Python", version="3.10")
    client.runtime_environments.create(RG, ACCT, "env-py310", m.RuntimeEnvironment(properties=m.RuntimeEnvironmentProperties(runtime=runtime)))
    return automation, client


def publish(client, name, content):
    props = m.RunbookCreateOrUpdateProperties(runbook_type="Python", runtime_environment="env-py310", draft=m.RunbookDraft())
    client.runbook.create_or_update(RG, ACCT, name, m.RunbookCreateOrUpdateParameters(name=name, location="westeurope", properties=props))
    client.runbook_draft.begin_replace_content(RG, ACCT, name, content).result()
    client.runbook.begin_publish(RG, ACCT, name).result()


def start_job(client, runbook, parameters, name="job-1"):
    props = m.JobCreateProperties(runbook=m.RunbookAssociationProperty(name=runbook), parameters=parameters)
    return client.job.create(RG, ACCT, name, m.JobCreateParameters(properties=props))


def import_package(client, name, uri):
    link = m.ContentLink(uri=uri)
    return client.package.create_or_update(
        RG, ACCT, "env-py310", name, m.PackageCreateOrUpdateParameters(properties=m.PackageCreateOrUpdateProperties(content_link=link))
    )


def make_webhook(client, name="hook", parameters=None, enabled=True, expiry=None):
    uri = json.loads(client.webhook.generate_uri(RG, ACCT))
    props = m.WebhookCreateOrUpdateProperties(
        is_enabled=enabled,
        uri=uri,
        expiry_time=expiry or datetime.now(timezone.utc) + timedelta(days=30),
        parameters=parameters,
        runbook=m.RunbookAssociationProperty(name="rb_echo"),
    )
    client.webhook.create_or_update(RG, ACCT, name, m.WebhookCreateOrUpdateParameters(name=name, properties=props))
    return uri


# -- jobs API --------------------------------------------------------------------------------------
def test_job_parameters_are_split_on_whitespace_and_output_is_readable(arm, platform):
    automation, client = setup(arm, platform)
    publish(client, "rb_echo", ECHO)
    created = start_job(client, "rb_echo", {"args": "--settings-b64 abc=  --dry-run", "request": '{"reason": "a b"}'})
    assert created.properties.status == "New"  # createJob.json: queued
    job = client.job.get(RG, ACCT, "job-1")
    assert job.properties.status == "Completed" and job.properties.end_time is not None
    argv = json.loads(client.job.get_output(RG, ACCT, "job-1"))
    assert argv == ["rb_echo.py", "--settings-b64", "abc=", "--dry-run", '{"reason":', '"a', 'b"}']
    streams = list(client.job_stream.list_by_job(RG, ACCT, "job-1", filter="properties/streamType eq 'Output'"))
    assert [s.stream_type for s in streams] == ["Output"] and json.loads(streams[0].stream_text) == argv
    one = client.job_stream.get(RG, ACCT, "job-1", streams[0].job_stream_id)
    assert one.stream_text == streams[0].stream_text
    assert automation.wait_for_job(SUB1, RG, ACCT, "job-1").exit_code == 0


def test_exit_code_and_exceptions_per_variant(arm, platform):
    automation, client = setup(arm, platform)
    publish(client, "rb_exit", "import sys\nprint('checking')\nprint('bad settings', file=sys.stderr)\nsys.exit(2)\n")
    publish(client, "rb_raise", "print('before')\nraise RuntimeError('boom')\n")
    publish(client, "rb_ok", "import sys\nsys.exit(0)\n")
    start_job(client, "rb_exit", {}, "j-exit")
    start_job(client, "rb_raise", {}, "j-raise")
    start_job(client, "rb_ok", {}, "j-ok")
    for name in ("j-exit", "j-raise"):
        job = client.job.get(RG, ACCT, name)
        assert job.properties.status == platform.job_nonzero_exit
    assert client.job.get(RG, ACCT, "j-ok").properties.status == "Completed"
    assert client.job.get_output(RG, ACCT, "j-exit") == "checking"
    errors = [s.stream_text for s in client.job_stream.list_by_job(RG, ACCT, "j-raise", filter="properties/streamType eq 'Error'")]
    assert errors[0].startswith("Traceback") and errors[-1] == "RuntimeError: boom"
    assert client.job.get(RG, ACCT, "j-raise").properties.exception == "RuntimeError: boom"
    assert automation.job(SUB1, RG, ACCT, "j-exit").exit_code == 2


def test_legacy_platform_does_not_execute_jobs(arm):
    automation, client = setup(arm, LEGACY)
    assert automation.platform == LEGACY
    publish(client, "rb_echo", ECHO)
    start_job(client, "rb_echo", {"args": "a"})
    assert client.job.get(RG, ACCT, "job-1").properties.status == "New"


def test_job_parameter_limits(arm):
    automation, client = setup(arm, PESSIMISTIC)
    publish(client, "rb_echo", ECHO)
    with pytest.raises(HttpResponseError) as exc:
        start_job(client, "rb_echo", {f"p{i}": "x" for i in range(51)})
    assert exc.value.status_code == 400
    with pytest.raises(HttpResponseError):
        start_job(client, "rb_echo", {"big": "x" * (512 * 1024 + 1)}, "job-2")


# -- managed identity -----------------------------------------------------------------------------
IDENTITY_RUNBOOK = """
import os, sys, requests
from azure.identity import ManagedIdentityCredential
print(os.environ["IDENTITY_ENDPOINT"])
token = ManagedIdentityCredential().get_token("https://management.azure.com/.default")
url = "https://management.azure.com/subscriptions/%s/providers/Microsoft.MachineLearningServices/workspaces?api-version=2024-10-01-preview" % sys.argv[1]
r = requests.get(url, headers={"Authorization": "Bearer " + token.token})
print(r.status_code, [w["name"] for w in r.json()["value"]])
"""


def test_job_gets_a_managed_identity_token_the_fake_arm_accepts(arm, platform):
    ml = FakeMachineLearning(arm)
    ml.add_workspace(SUB1, "rg-ml", "mlw-one")
    automation, client = setup(arm, platform)
    publish(client, "rb_identity", IDENTITY_RUNBOOK)
    before = {k: os.environ.get(k) for k in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER")}
    start_job(client, "rb_identity", {"sub": SUB1})
    job = client.job.get(RG, ACCT, "job-1")
    assert job.properties.status == "Completed", automation.job(SUB1, RG, ACCT, "job-1").streams
    assert client.job.get_output(RG, ACCT, "job-1").splitlines() == ["http://localhost/metadata/identity/oauth2/token", "200 ['mlw-one']"]
    assert automation.identity_requests == 1
    assert {k: os.environ.get(k) for k in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER")} == before
    # outside a job, the endpoint refuses
    r = requests.get("http://localhost/metadata/identity/oauth2/token?resource=https://management.azure.com", headers={"X-IDENTITY-HEADER": "guess"})
    assert r.status_code == 401


def test_account_without_identity_gets_no_token(arm):
    automation = FakeAutomation(arm, platform=PESSIMISTIC)
    automation.add_account(SUB1, RG, ACCT, identity=None)
    client = AutomationClient(arm.credential(), SUB1, polling_interval=0, retry_total=0)
    runtime = m.RuntimeProperties(language="Python", version="3.10")
    client.runtime_environments.create(RG, ACCT, "env-py310", m.RuntimeEnvironment(properties=m.RuntimeEnvironmentProperties(runtime=runtime)))
    publish(client, "rb_identity", IDENTITY_RUNBOOK)
    start_job(client, "rb_identity", {"sub": SUB1})
    job = automation.job(SUB1, RG, ACCT, "job-1")
    assert job.exit_code == 1 and "No managed identity" in job.stream_text("Error")


def test_the_real_stop_runbook_runs_as_a_job(arm, platform):
    ml = FakeMachineLearning(arm, stop_seconds=0.01, start_seconds=0.01, platform=platform)
    ws = ml.add_workspace(SUB1, "rg-ml", "mlw-one")
    ml.add_compute_instance(ws, "ci-ada")
    automation, client = setup(arm, platform)
    publish(client, "stop_compute_instances", Path(ROOT, "runbooks", "stop_compute_instances.py").read_text())
    doc = {"scope": {"subscriptions": [SUB1]}, "stop": fast_stop_settings()}
    start_job(client, "stop_compute_instances", {"args": f"--settings-b64 {encode_settings(doc)} --dry-run"})
    job = automation.job(SUB1, RG, ACCT, "job-1")
    assert job.status == "Completed", job.streams
    output = client.job.get_output(RG, ACCT, "job-1")
    assert "CI_GOVERNANCE_SUMMARY" in output and "managed identity" in output
    assert ml.compute(SUB1, "rg-ml", "mlw-one", "ci-ada").state == "Running"  # dry run


# -- webhooks --------------------------------------------------------------------------------------
def test_webhook_invocation_builds_argv_as_automation_does(arm, platform):
    automation, client = setup(arm, platform)
    publish(client, "rb_echo", ECHO)
    uri = make_webhook(client, parameters={"args": "--settings-b64 c2V0 --verbose"})
    assert ".webhook.we.azure-automation.net/webhooks?token=" in uri
    body = '{"reason": "train until\nFriday", "n": 1}'
    r = requests.post(uri, data=body.encode(), headers={"Content-Type": "application/json", "X-Secret": "s3"})
    assert r.status_code == 202 and list(r.json()) == ["JobIds"]
    (job_id,) = r.json()["JobIds"]
    job = client.job.get(RG, ACCT, job_id)
    assert job.properties.status == "Completed"
    argv = json.loads(client.job.get_output(RG, ACCT, job_id))[1:]
    host = uri.split("/")[2]
    shown = body.replace("\n", "\\r\\n").replace('"', '\\"') if platform.webhook_body_escaped else body
    envelope = "{WebhookName:hook,RequestBody:" + shown + ",RequestHeader:{Connection:Keep-Alive,Content-Type:application/json,Host:" + host
    own = ["--settings-b64", "c2V0", "--verbose"]
    prefix = " ".join(envelope.split())  # the envelope text split on whitespace (a raw newline is lost)
    if platform.webhook_parameters_order == "before":
        assert argv[:3] == own and " ".join(argv[3:]).startswith(prefix)
    else:
        assert argv[-3:] == own and " ".join(argv[:-3]).startswith(prefix)
    joined = " ".join(argv)
    assert "X-Secret:s3" in joined and joined.count("RequestBody:") == 1
    if platform.webhook_body_escaped:
        assert '{WebhookName:hook,RequestBody:{\\"reason\\":' in argv and 'until\\r\\nFriday\\",' in argv
    else:
        assert '{WebhookName:hook,RequestBody:{"reason":' in argv and "until" in argv and 'Friday",' in argv
    assert set(job.properties.parameters) == {"args", "WebhookData"}


def test_webhook_refusals(arm):
    clock = [datetime.now(timezone.utc)]
    automation, client = setup(arm, PESSIMISTIC, clock=lambda: clock[0])
    publish(client, "rb_echo", ECHO)
    uri = make_webhook(client, expiry=clock[0] + timedelta(days=1))
    disabled = make_webhook(client, "off", enabled=False)
    assert requests.post(uri, data=b"{}").status_code == 202
    assert requests.post(uri.split("?")[0] + "?token=wrong", data=b"{}").status_code == 404
    assert requests.post(uri.split("?")[0], data=b"{}").status_code == 400
    assert requests.post(disabled, data=b"{}").status_code == 400
    assert requests.post(uri, data=b"x" * (512 * 1024 + 1)).status_code == 413
    clock[0] += timedelta(days=2)
    assert requests.post(uri, data=b"{}").status_code == 400
    client.webhook.delete(RG, ACCT, "off")
    assert requests.post(disabled, data=b"{}").status_code == 404
    assert len(automation.account(SUB1, RG, ACCT).jobs) == 1


def test_webhook_put_without_uri_generates_one_returned_once(arm):
    automation, client = setup(arm, PESSIMISTIC)
    publish(client, "rb_echo", ECHO)
    props = m.WebhookCreateOrUpdateProperties(is_enabled=True, runbook=m.RunbookAssociationProperty(name="rb_echo"))
    created = client.webhook.create_or_update(RG, ACCT, "gen", m.WebhookCreateOrUpdateParameters(name="gen", properties=props))
    assert created.properties.uri.startswith("https://") and client.webhook.get(RG, ACCT, "gen").properties.uri == ""
    assert requests.post(created.properties.uri, data=b"{}").status_code == 202


# -- packages ------------------------------------------------------------------------------------
def test_packages_are_validated_only_when_a_job_runs(arm, platform):
    automation, client = setup(arm, platform)
    publish(client, "rb_echo", ECHO)
    automation.require("*", ["azure-core"])
    assert automation.require("rb_echo", ["numpy"]) == {"numpy": "numpy"}
    import_package(client, "azure-core", GOOD_WHEEL)
    import_package(client, "numpy", BAD_WHEEL)
    list(client.package.list_by_runtime_environment(RG, ACCT, "env-py310"))  # the imports end after one read
    states = {p.name: p.properties.provisioning_state for p in client.package.list_by_runtime_environment(RG, ACCT, "env-py310")}
    assert states == {"azure-core": "Succeeded", "numpy": "Succeeded"}  # the import proves nothing
    start_job(client, "rb_echo", {})
    assert client.job.get(RG, ACCT, "job-1").properties.status == "Failed"
    errors = [s.stream_text for s in client.job_stream.list_by_job(RG, ACCT, "job-1", filter="properties/streamType eq 'Error'")]
    assert errors == ["ModuleNotFoundError: No module named 'numpy'"]
    # a fitting wheel fixes it; a missing distribution fails the same way
    import_package(client, "numpy", "https://files.pythonhosted.org/packages/x/numpy-2.0.0-cp310-cp310-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
    start_job(client, "rb_echo", {}, "job-early")  # while the import is still running
    assert automation.job(SUB1, RG, ACCT, "job-early").status == "Failed"
    assert client.package.get(RG, ACCT, "env-py310", "numpy").properties.provisioning_state == "Succeeded"
    start_job(client, "rb_echo", {}, "job-2")
    assert client.job.get(RG, ACCT, "job-2").properties.status == "Completed"
    client.package.delete(RG, ACCT, "env-py310", "azure-core")
    start_job(client, "rb_echo", {}, "job-3")
    assert automation.job(SUB1, RG, ACCT, "job-3").exception == "ModuleNotFoundError: No module named 'azure'"


def test_package_imports_are_rate_limited_with_an_injectable_clock(arm):
    now = [1000.0]
    automation, client = setup(arm, PESSIMISTIC, rate_clock=lambda: now[0])
    for i in range(5):
        import_package(client, f"p{i}", GOOD_WHEEL)
    with pytest.raises(HttpResponseError) as exc:
        import_package(client, "p5", GOOD_WHEEL)
    assert exc.value.status_code == 429 and int(exc.value.response.headers["Retry-After"]) == 6
    now[0] += 6
    import_package(client, "p5", GOOD_WHEEL)
    with pytest.raises(HttpResponseError):
        import_package(client, "p6", GOOD_WHEEL)


def test_import_rate_limit_can_be_switched_off(arm):
    automation, client = setup(arm, PESSIMISTIC, import_rate_limited=False, rate_clock=lambda: 0.0)
    for i in range(12):
        assert import_package(client, f"p{i}", GOOD_WHEEL).properties.provisioning_state == "Creating"


def test_automation_resources_take_at_most_15_tags(arm):
    automation, client = setup(arm, PESSIMISTIC)
    publish(client, "rb_echo", ECHO)
    with pytest.raises(HttpResponseError, match="Too many tags"):
        client.runbook.update(RG, ACCT, "rb_echo", m.RunbookUpdateParameters(tags={f"t{i}": "v" for i in range(16)}))
    client.runbook.update(RG, ACCT, "rb_echo", m.RunbookUpdateParameters(tags={f"t{i}": "v" for i in range(15)}))


def test_sys_argv_is_restored_after_a_job(arm):
    automation, client = setup(arm, PESSIMISTIC)
    publish(client, "rb_echo", ECHO)
    argv = list(sys.argv)
    start_job(client, "rb_echo", {"a": "b"})
    assert sys.argv == argv
