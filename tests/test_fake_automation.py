"""The fake Automation provider, driven through the real azure-mgmt-automation 2.0.0 client."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.mgmt.automation import AutomationClient
from azure.mgmt.automation import models as m

from fake_azure.automation import API, FakeAutomation
from fake_azure.platform import LEGACY

RG, ACCT = "rg-automation", "aa-governance"
WHEEL = "https://files.pythonhosted.org/packages/aa/bb/azure_core-1.41.0-py3-none-any.whl"


@pytest.fixture
def automation(arm):
    # LEGACY: these tests check the Automation REST surface, including the older import-time wheel check;
    # the documented job-time validation and the import rate limit are tested in test_fake_automation_jobs.py.
    fake = FakeAutomation(arm, platform=LEGACY)
    fake.add_account("sub-1", RG, ACCT, principal_id="aaaaaaaa-0000-4000-8000-000000000001")
    return fake


@pytest.fixture
def client(arm, automation):
    return AutomationClient(arm.credential(), "sub-1", polling_interval=0)


def make_environment(client, name="env-py310"):
    runtime = m.RuntimeProperties(language="Python", version="3.10")
    return client.runtime_environments.create(
        RG, ACCT, name, m.RuntimeEnvironment(location="westeurope", properties=m.RuntimeEnvironmentProperties(runtime=runtime))
    )


def publish_runbook(client, name="rb_one", content="print('hello')\n", env="env-py310"):
    props = m.RunbookCreateOrUpdateProperties(runbook_type="Python", runtime_environment=env, draft=m.RunbookDraft())
    client.runbook.create_or_update(RG, ACCT, name, m.RunbookCreateOrUpdateParameters(name=name, location="westeurope", properties=props))
    client.runbook_draft.begin_replace_content(RG, ACCT, name, content).result()
    client.runbook.begin_publish(RG, ACCT, name).result()


def test_account_get_and_missing_account_error_shapes(client, arm):
    acct = client.automation_account.get(RG, ACCT)
    assert (acct.name, acct.location, acct.identity.principal_id) == (ACCT, "westeurope", "aaaaaaaa-0000-4000-8000-000000000001")
    with pytest.raises(ResourceNotFoundError) as missing:
        client.automation_account.get(RG, "aa-other")
    assert missing.value.error.code == "ResourceNotFound"
    with pytest.raises(ResourceNotFoundError) as no_group:
        client.automation_account.get("rg-nowhere", ACCT)
    assert no_group.value.error.code == "ResourceGroupNotFound"
    # Child resources answer with the Automation RP's own ErrorResponse (code/message at top level).
    with pytest.raises(ResourceNotFoundError) as runbook:
        client.runbook.get(RG, ACCT, "nope")
    assert runbook.value.error.code == "NotFound"


def test_unsupported_api_version_is_refused(arm, automation):
    old = AutomationClient(arm.credential(), "sub-1", api_version="2023-11-01")
    with pytest.raises(HttpResponseError) as exc:
        old.automation_account.get(RG, ACCT)
    assert exc.value.status_code == 400 and API in exc.value.message


def test_runbook_draft_replace_and_publish_are_polled_lros(client, arm, automation):
    make_environment(client)
    publish_runbook(client, content="print('v1')\n")
    rb = client.runbook.get(RG, ACCT, "rb_one")
    assert rb.properties.state == "Published" and rb.properties.runtime_environment == "env-py310"
    assert client.runbook.get_content(RG, ACCT, "rb_one") == "print('v1')\n"
    # Each LRO answered 202 + Location, then one poll "still running", then done.
    assert arm.count("GET", "/draft/content/operationResults/", status=202) == 1
    assert arm.count("GET", "/publish/operationResults/", status=200) == 1
    # A new draft does not change the published content until it is published.
    client.runbook_draft.begin_replace_content(RG, ACCT, "rb_one", "print('v2')\n").result()
    assert client.runbook.get(RG, ACCT, "rb_one").properties.state == "Edit"
    assert client.runbook_draft.get_content(RG, ACCT, "rb_one") == "print('v2')\n"
    assert client.runbook.get_content(RG, ACCT, "rb_one") == "print('v1')\n"
    updated = client.runbook.update(RG, ACCT, "rb_one", m.RunbookUpdateParameters(tags={"k": "v"}))
    assert updated.tags == {"k": "v"} and [r.name for r in client.runbook.list_by_automation_account(RG, ACCT)] == ["rb_one"]


def test_runbook_validation(client):
    with pytest.raises(HttpResponseError, match="Runtime environment 'missing'"):
        props = m.RunbookCreateOrUpdateProperties(runbook_type="Python", runtime_environment="missing", draft=m.RunbookDraft())
        client.runbook.create_or_update(RG, ACCT, "rb", m.RunbookCreateOrUpdateParameters(name="rb", location="westeurope", properties=props))
    with pytest.raises(HttpResponseError, match="Invalid runbook name"):
        props = m.RunbookCreateOrUpdateProperties(runbook_type="Python", draft=m.RunbookDraft())
        client.runbook.create_or_update(RG, ACCT, "9bad", m.RunbookCreateOrUpdateParameters(name="9bad", location="westeurope", properties=props))
    client.runbook.create_or_update(
        RG, ACCT, "fresh", m.RunbookCreateOrUpdateParameters(location="w", properties=m.RunbookCreateOrUpdateProperties(runbook_type="Python"))
    )
    with pytest.raises(HttpResponseError, match="no draft to publish"):
        client.runbook.begin_publish(RG, ACCT, "fresh").result()


def test_package_import_is_asynchronous_and_checks_wheel_tags(client, automation):
    make_environment(client)
    link = m.ContentLink(uri=WHEEL, content_hash=m.ContentHash(algorithm="SHA256", value="AB" * 32))
    created = client.package.create_or_update(
        RG, ACCT, "env-py310", "azure-core", m.PackageCreateOrUpdateParameters(properties=m.PackageCreateOrUpdateProperties(content_link=link))
    )
    assert created.properties.provisioning_state == "Creating"
    bad = m.ContentLink(uri="https://files.pythonhosted.org/packages/x/numpy-2.0.0-cp312-cp312-win_amd64.whl")
    client.package.create_or_update(
        RG, ACCT, "env-py310", "numpy", m.PackageCreateOrUpdateParameters(properties=m.PackageCreateOrUpdateProperties(content_link=bad))
    )
    automation.failing_packages["broken"] = "could not download"
    client.package.create_or_update(
        RG, ACCT, "env-py310", "broken", m.PackageCreateOrUpdateParameters(properties=m.PackageCreateOrUpdateProperties(content_link=link))
    )
    states = {}
    for _ in range(3):
        states = {p.name: p for p in client.package.list_by_runtime_environment(RG, ACCT, "env-py310")}
    assert states["azure-core"].properties.provisioning_state == "Succeeded" and states["azure-core"].properties.version == "1.41.0"
    assert states["numpy"].properties.provisioning_state == "Failed" and "not a wheel for Python 3.10" in states["numpy"].properties.error.message
    assert states["broken"].properties.error.message == "could not download"
    client.package.delete(RG, ACCT, "env-py310", "numpy")
    with pytest.raises(ResourceNotFoundError):
        client.package.get(RG, ACCT, "env-py310", "numpy")


def test_environment_in_use_cannot_be_deleted(client):
    make_environment(client)
    publish_runbook(client)
    with pytest.raises(ResourceExistsError):
        client.runtime_environments.delete(RG, ACCT, "env-py310")
    client.runbook.delete(RG, ACCT, "rb_one")
    client.runtime_environments.delete(RG, ACCT, "env-py310")
    assert list(client.runtime_environments.list_by_automation_account(RG, ACCT)) == []


def test_schedules_weekly_with_time_zone_and_no_in_place_update(client):
    tz = "Europe/Amsterdam"
    start = (datetime.now(ZoneInfo(tz)) + timedelta(days=1)).replace(hour=7, minute=30, second=0, microsecond=0)
    props = m.ScheduleCreateOrUpdateProperties(
        start_time=start, frequency="Week", interval=1, time_zone=tz, advanced_schedule=m.AdvancedSchedule(week_days=["Monday", "Friday"]), description="d"
    )
    created = client.schedule.create_or_update(RG, ACCT, "weekday", m.ScheduleCreateOrUpdateParameters(name="weekday", properties=props))
    assert created.properties.advanced_schedule.week_days == ["Monday", "Friday"] and created.properties.time_zone == tz
    assert created.properties.start_time.astimezone(ZoneInfo(tz)).strftime("%H:%M") == "07:30"
    # A second PUT is a 409, which this SDK version does not raise for: the caller must check the status.
    status = client.schedule.create_or_update(
        RG, ACCT, "weekday", m.ScheduleCreateOrUpdateParameters(name="weekday", properties=props), cls=lambda resp, body, _h: resp.http_response.status_code
    )
    assert status == 409
    too_soon = m.ScheduleCreateOrUpdateProperties(start_time=datetime.now(timezone.utc) + timedelta(minutes=1), frequency="Day", interval=1)
    with pytest.raises(HttpResponseError, match="at least 5 minutes"):
        client.schedule.create_or_update(RG, ACCT, "soon", m.ScheduleCreateOrUpdateParameters(name="soon", properties=too_soon))
    assert [s.name for s in client.schedule.list_by_automation_account(RG, ACCT)] == ["weekday"]


def test_job_schedules_link_published_runbooks_and_go_with_their_schedule(client):
    make_environment(client)
    publish_runbook(client)
    props = m.ScheduleCreateOrUpdateProperties(start_time=datetime.now(timezone.utc) + timedelta(hours=1), frequency="Day", interval=1)
    client.schedule.create_or_update(RG, ACCT, "daily", m.ScheduleCreateOrUpdateParameters(name="daily", properties=props))
    link = m.JobScheduleCreateProperties(
        schedule=m.ScheduleAssociationProperty(name="daily"), runbook=m.RunbookAssociationProperty(name="rb_one"), parameters={"args": "--x 1"}
    )
    jid = "0fa462ba-3aa2-4138-83ca-9ebc3bc55cdc"
    created = client.job_schedule.create(RG, ACCT, jid, m.JobScheduleCreateParameters(properties=link))
    assert created.properties.parameters == {"args": "--x 1"}
    assert client.job_schedule.get(RG, ACCT, jid).properties.runbook.name == "rb_one"
    with pytest.raises(ResourceExistsError):  # cannot be updated in place
        client.job_schedule.create(RG, ACCT, jid, m.JobScheduleCreateParameters(properties=link))
    with pytest.raises(ResourceExistsError):  # one link per (schedule, runbook)
        client.job_schedule.create(RG, ACCT, "1fa462ba-3aa2-4138-83ca-9ebc3bc55cdc", m.JobScheduleCreateParameters(properties=link))
    client.schedule.delete(RG, ACCT, "daily")
    assert list(client.job_schedule.list_by_automation_account(RG, ACCT)) == []


def test_webhook_uri_is_only_visible_from_generate_uri(client, automation):
    make_environment(client)
    publish_runbook(client)
    raw = client.webhook.generate_uri(RG, ACCT)
    uri = json.loads(raw)  # the service answers a JSON string; this SDK returns its raw text
    assert uri.startswith("https://") and "token=" in uri
    expiry = datetime.now(timezone.utc) + timedelta(days=30)
    props = m.WebhookCreateOrUpdateProperties(
        is_enabled=True, uri=uri, expiry_time=expiry, parameters={"args": "a"}, runbook=m.RunbookAssociationProperty(name="rb_one")
    )
    created = client.webhook.create_or_update(RG, ACCT, "hook", m.WebhookCreateOrUpdateParameters(name="hook", properties=props))
    assert created.properties.uri == "" and client.webhook.get(RG, ACCT, "hook").properties.uri == ""
    assert [w.properties.uri for w in client.webhook.list_by_automation_account(RG, ACCT)] == [""]
    patched = client.webhook.update(RG, ACCT, "hook", m.WebhookUpdateParameters(name="hook", properties=m.WebhookUpdateProperties(parameters={"args": "b"})))
    assert patched.properties.parameters == {"args": "b"} and automation.account("sub-1", RG, ACCT).webhooks["hook"].uri == uri
    forged = m.WebhookCreateOrUpdateProperties(is_enabled=True, uri="https://example.com/x", runbook=m.RunbookAssociationProperty(name="rb_one"))
    with pytest.raises(HttpResponseError, match="generateUri"):
        client.webhook.create_or_update(RG, ACCT, "forged", m.WebhookCreateOrUpdateParameters(name="forged", properties=forged))
    client.webhook.delete(RG, ACCT, "hook")
    with pytest.raises(ResourceNotFoundError):
        client.webhook.get(RG, ACCT, "hook")


def test_jobs_record_runbook_and_parameters_and_run_with_a_runner(client, automation):
    make_environment(client)
    publish_runbook(client, content="print('job')\n")
    job_props = m.JobCreateProperties(runbook=m.RunbookAssociationProperty(name="rb_one"), parameters={"args": "--dry-run"})
    job = client.job.create(RG, ACCT, "job-1", m.JobCreateParameters(properties=job_props))
    assert job.properties.status == "New"  # no runner: nothing executes it
    seen = []
    automation.job_runner = lambda job, runbook: seen.append((runbook.published, dict(job.parameters))) or ("Completed", "stopped 3 CIs")
    client.job.create(RG, ACCT, "job-2", m.JobCreateParameters(properties=job_props))
    got = client.job.get(RG, ACCT, "job-2")
    assert got.properties.status == "Completed" and got.properties.parameters == {"args": "--dry-run"}
    assert got.properties.job_runtime_environment.runtime_environment_name == "env-py310"
    assert client.job.get_output(RG, ACCT, "job-2") == "stopped 3 CIs"
    assert seen == [("print('job')\n", {"args": "--dry-run"})]
    with pytest.raises(ResourceNotFoundError):
        client.job.get(RG, ACCT, "job-3")
