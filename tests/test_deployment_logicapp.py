"""The Teams Logic App (issue 14): its template checked offline, run by the fake's interpreter, deployed by
publish.py, and the Teams story end to end through the template's own definition."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jsonschema
import pytest
import requests
from azure.mgmt.automation import AutomationClient

from deployment import logicapp
from fake_azure.automation import FakeAutomation
from fake_azure.expressions import Call, ExpressionError, evaluate, parse
from fake_azure.logic_apps import ARM_FUNCTIONS, WDL_FUNCTIONS, FakeLogicApps, press, wdl_expressions
from sandbox import teams as story_module
from shared.tags import TagNames, read_exemption_for
from tests.builders import ACCT, PRINCIPAL, RG, SUB, Harness

SCHEMA_DIR = Path(logicapp.TEMPLATE_PATH).parent / "schema"
TEMPLATE = logicapp.load_template()
WORKFLOW = next(r for r in TEMPLATE["resources"] if r["type"] == "Microsoft.Logic/workflows")
DEFINITION = WORKFLOW["properties"]["definition"]
CARD = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "hello"}]}
ASK = {**CARD, "actions": [{"type": "Action.Submit", "title": "Keep running", "data": {"action": "request_exemption", "compute_instance": "ci-1"}}]}
USER = {"objectId": "00000000-0000-4000-8000-000000000001", "tenantId": "t", "email": "a@contoso.com", "userPrincipalName": "a@contoso.com", "displayName": "A"}


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _calls(node):
    if isinstance(node, Call):
        yield node.name.lower()
        for a in node.args:
            yield from _calls(a)
    elif hasattr(node, "target"):
        yield from _calls(node.target)
        yield from _calls(node.key)


# -- the template, offline -------------------------------------------------------------------------------------


def test_workflow_definition_matches_the_schema():
    schemas = [json.loads((SCHEMA_DIR / "workflowdefinition.subset.json").read_text())]
    official = SCHEMA_DIR / "workflowdefinition.json"
    if official.exists():  # Microsoft's file, when someone adds it (schema/README.md)
        schemas.append(json.loads(official.read_text()))
    for schema in schemas:
        validator = jsonschema.Draft4Validator(schema)
        error = jsonschema.exceptions.best_match(validator.iter_errors(DEFINITION))
        assert error is None, f"{list(error.absolute_path)}: {error.message}"


def test_schema_refuses_what_the_reference_forbids():
    validator = jsonschema.Draft4Validator(json.loads((SCHEMA_DIR / "workflowdefinition.subset.json").read_text()))
    broken = json.loads(json.dumps(DEFINITION))
    broken["actions"]["Card"]["runAfter"] = {"Location": ["Done"]}  # not a run status
    del broken["actions"]["Expects_an_answer"]["actions"]["Post_card_and_wait_for_a_response"]["inputs"]["body"]["notificationUrl"]
    broken["actions"]["Typo"] = {"type": "Composee", "inputs": 1}
    assert len(list(validator.iter_errors(broken))) >= 3


def test_every_workflow_expression_parses_and_uses_only_implemented_functions():
    used = set()
    for text in _strings(DEFINITION):
        for expr in wdl_expressions(text):
            used |= set(_calls(parse(expr)))
    for cond in re.findall(r'"(@[^"]+)"', json.dumps(DEFINITION["actions"]["Expects_an_answer"]["expression"])):
        used |= set(_calls(parse(cond[1:])))
    assert used and used <= WDL_FUNCTIONS, used - WDL_FUNCTIONS
    assert {"triggerbody", "triggeroutputs", "body", "base64", "string", "parameters", "equals", "outputs"} <= used


def test_arm_expressions_use_only_declared_parameters_and_known_functions():
    declared = set(TEMPLATE["parameters"])
    for text in _strings({k: v for k, v in TEMPLATE.items() if k != "metadata"}):
        if text.startswith("[") and not text.startswith("[[") and text.endswith("]"):
            tree = parse(text[1:-1])
            assert set(_calls(tree)) <= ARM_FUNCTIONS, text
            for name in re.findall(r"parameters\('([^']+)'\)", text):
                assert name in declared, name
    secure = {k for k, v in TEMPLATE["parameters"].items() if v["type"] == "securestring"}
    assert secure == {"exemptionWebhookUrl", "createWebhookUrl", "runbookSettingsB64"}
    assert {k for k, v in DEFINITION["parameters"].items() if v["type"] == "SecureString"} == secure


def test_teams_actions_use_the_connector_shapes_of_azure_sentinel_playbooks():
    flat = json.dumps(DEFINITION)
    wait = DEFINITION["actions"]["Expects_an_answer"]["actions"]["Post_card_and_wait_for_a_response"]
    post = DEFINITION["actions"]["Expects_an_answer"]["else"]["actions"]["Post_card"]
    assert wait["type"] == "ApiConnectionWebhook" and post["type"] == "ApiConnection"
    assert wait["inputs"]["path"].startswith("/v1.0/teams/conversation/gatherinput/poster/Flow bot/location/") and wait["inputs"]["path"].endswith(
        "/$subscriptions"
    )
    assert post["inputs"]["path"].startswith("/v1.0/teams/conversation/adaptivecard/poster/Flow bot/location/")
    assert wait["inputs"]["body"]["notificationUrl"] == "@{listCallbackUrl()}"
    assert "@parameters('$connections')['teams']['connectionId']" in flat
    conn = next(r for r in TEMPLATE["resources"] if r["type"] == "Microsoft.Web/connections")
    assert conn["properties"]["api"]["id"].endswith("'/managedApis/teams')]")
    assert "Azure/Azure-Sentinel" in json.dumps(TEMPLATE["metadata"]["sources"])


def test_expressions_follow_the_workflow_definition_language():
    functions = {"x": lambda: {"a": {"b": [1, 2]}, "n": None}, "s": lambda *a: "".join(map(str, a))}
    assert evaluate(parse("x()?['a']?['b']?[1]"), functions) == 2
    assert evaluate(parse("x()?['missing']?['deeper']"), functions) is None
    assert evaluate(parse("x()['A'].b[0]"), functions) == 1  # property names are case-insensitive
    with pytest.raises(ExpressionError):
        evaluate(parse("x()['missing']"), functions)
    assert evaluate(parse("s('it''s', 3)"), functions) == "it's3"
    with pytest.raises(ExpressionError):
        evaluate(parse("nope()"), functions)


# -- the workflow, run by the fake's interpreter -----------------------------------------------------------------


@pytest.fixture
def workflow(arm):
    """The template deployed by publish's module into a fake resource group, its connection authorized."""
    automation = FakeAutomation(arm, import_rate_limited=False)
    automation.add_account(SUB, RG, ACCT, principal_id=PRINCIPAL)
    apps = FakeLogicApps(arm)
    client = AutomationClient(arm.credential(), SUB, polling_interval=0)
    opts = logicapp.Options(SUB, RG, ACCT, "westeurope", "group-1", "19:main@thread.tacv2", "group-2", "19:approvers@thread.tacv2", "job", "wf")
    arm_client = logicapp.Arm(client)
    desired = logicapp.build_desired(opts, {"teams": {}}, lambda s: "c2V0dGluZ3M=")
    logicapp.deploy(arm_client, opts, desired, {"runbookSettingsB64": "c2V0dGluZ3M="}, sleep=lambda s: None)
    url = logicapp.observe(arm_client, client, opts).callback_url
    apps.authorize()
    return apps, url, automation


def _post(url, card, **query):
    envelope = {"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}]}
    extra = "".join(f"&{k}={v}" for k, v in query.items())
    return requests.post(url + extra, json=envelope, timeout=10)


def test_cards_without_a_button_are_posted_without_waiting(workflow):
    apps, url, _ = workflow
    assert _post(url, CARD).status_code == 202
    (post,) = apps.teams.posts
    assert (post.operation, post.location, post.recipient, post.card) == ("post", "Channel", {"groupId": "group-1", "channelId": "19:main@thread.tacv2"}, CARD)
    assert apps.runs[-1].run_status == "Succeeded"


def test_wait_parameter_decides_and_a_button_waits_when_it_is_absent(workflow):
    apps, url, _ = workflow
    _post(url, ASK)  # no wait parameter (runbooks before issue 13): a card with Action.Submit waits
    _post(url, ASK, wait="false")
    _post(url, CARD, wait="true")
    assert [p.operation for p in apps.teams.posts] == ["post_and_wait", "post", "post_and_wait"]
    assert [r.run_status for r in apps.runs] == ["Waiting", "Succeeded", "Waiting"]  # nobody answered


def test_recipient_and_audience_route_the_card(workflow):
    apps, url, _ = workflow
    _post(url, CARD, recipient="ada@contoso.com", recipient_type="upn")
    _post(url, CARD, audience="approvers")
    assert [(p.location, p.recipient) for p in apps.teams.posts] == [
        ("Chat with Flow bot", "ada@contoso.com"),
        ("Channel", {"groupId": "group-2", "channelId": "19:approvers@thread.tacv2"}),
    ]


def test_an_answer_is_forwarded_by_action_with_the_managed_identity(workflow, arm):
    apps, url, automation = workflow
    apps.teams.responder = lambda post: press(post.card, "Keep", USER, {"reason": "night run"}, message_id="m-1")
    _post(url, ASK, wait="true")
    run = apps.runs[-1]
    assert run.status["Create_runbook_job"] == "Failed"  # the runbook does not exist in this account: Automation says 404
    assert run.outputs["Create_runbook_job"]["statusCode"] == 404
    assert arm.count("PUT", "/jobs/") == 1  # authenticated with the workflow identity's token (the fake ARM checks it)


def test_unauthorized_connection_fails_the_post_and_a_wrong_signature_is_refused(workflow):
    apps, url, _ = workflow
    for conn in apps.connections.values():
        conn.authorized = False
    _post(url, CARD)
    assert apps.runs[-1].run_status == "Failed" and "not authorized" in " ".join(apps.runs[-1].errors.values())
    assert requests.post(url.replace("sig=", "sig=x"), json={}, timeout=10).status_code == 401


# -- publish.py ------------------------------------------------------------------------------------------------

TEAMS_ARGS = ("--teams-group-id", "group-1", "--teams-channel-id", "19:main@thread.tacv2")


@pytest.fixture
def harness(tmp_path, arm, monkeypatch):
    monkeypatch.delenv("CI_GOVERNANCE_WHEEL_CONTAINER_SAS", raising=False)
    automation = FakeAutomation(arm, import_rate_limited=False)
    automation.add_account(SUB, RG, ACCT, principal_id=PRINCIPAL)
    h = Harness(tmp_path, arm, automation)
    h.apps = FakeLogicApps(arm)
    # The trigger URL is a secret setting (teams.workflow_url): publish keeps it in Key Vault (issue 11).
    h.settings["secrets"] = {"key_vault": h.vault.url}
    h.write_settings()
    return h


def _settings_of(params):
    import base64
    import shlex

    flag, value = shlex.split(params["args"])
    return json.loads(base64.b64decode(value))


def test_first_publish_deploys_the_logic_app_and_wires_its_trigger_url(harness):
    code, out, err, writes = harness.run(*TEAMS_ARGS)
    assert code == 0, err
    wf = harness.apps.workflow(SUB, RG, logicapp.DEFAULT_NAME)
    url = harness.apps.callback_url(wf)
    # The trigger URL is in the runbooks' settings, kept in Key Vault; no job schedule or webhook carries it.
    acct = harness.account
    assert harness.vault.value("ci-governance-teams-workflow-url") == url
    for params in [js.parameters for js in acct.job_schedules.values()] + [w.parameters for w in acct.webhooks.values()]:
        job_settings = _settings_of(params)
        assert "workflow_url" not in job_settings.get("teams", {}) and "teams.workflow_url" in job_settings["secrets"]["stored"]
    # The Logic App's own webhooks exist; their URLs went only into the workflow's secure parameters.
    ours = {w.name: w for w in acct.webhooks.values() if w.name.startswith(logicapp.DEFAULT_NAME + "-")}
    assert set(ours) == {"ci-governance-teams-handle_exemption_request", "ci-governance-teams-create_compute_instance"}
    assert wf.parameters["exemptionWebhookUrl"]["value"] == ours["ci-governance-teams-handle_exemption_request"].uri
    assert ours["ci-governance-teams-handle_exemption_request"].uri not in out
    assert wf.tags[logicapp.FINGERPRINT_TAG] and wf.parameters["route"]["value"] == "webhook"
    # The one manual step, with its portal link.
    assert (
        "authorize the Teams connection" in out
        and f"resource{logicapp.Options(SUB, RG, ACCT, '', '', '', '', '', '', 'ci-governance-teams').connection_path}/edit" in out
    )


def test_second_publish_changes_nothing_and_dry_run_shows_the_logic_app(harness):
    assert harness.run(*TEAMS_ARGS)[0] == 0
    harness.apps.authorize()
    code, out, err, writes = harness.run(*TEAMS_ARGS)
    assert code == 0 and [w for w in writes if "listCallbackUrl" not in w.path] == [], [w.path for w in writes]
    assert "Nothing to do" in out and "unchanged: Teams Logic App" in out and "authorize" not in out


def test_dry_run_on_a_new_account_deploys_nothing(harness):
    code, out, err, writes = harness.run(*TEAMS_ARGS, "--dry-run")
    assert code == 0 and writes == []
    assert "deploy the Teams Logic App" in out and "new" in out and "Dry run" in out


def test_job_route_prints_the_role_and_passes_the_settings(harness):
    code, out, err, writes = harness.run(*TEAMS_ARGS, "--teams-route", "job")
    assert code == 0, err
    wf = harness.apps.workflow(SUB, RG, logicapp.DEFAULT_NAME)
    assert f"--role 'Automation Job Operator' --scope /subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Automation/automationAccounts/{ACCT}" in out
    assert f"--assignee-object-id {wf.principal_id}" in out
    import base64

    settings = json.loads(base64.b64decode(wf.parameters["runbookSettingsB64"]["value"]))
    # The job route's settings are what every job gets: the URL itself stays in Key Vault.
    assert "workflow_url" not in settings.get("teams", {}) and "teams.workflow_url" in settings["secrets"]["stored"]
    assert harness.vault.value("ci-governance-teams-workflow-url") == harness.apps.callback_url(wf)
    assert not [w for w in harness.account.webhooks.values() if w.name.startswith(logicapp.DEFAULT_NAME + "-")]


def test_settings_change_updates_the_logic_app_webhooks_in_place(harness):
    harness.run(*TEAMS_ARGS)
    before = {w.name: w.uri for w in harness.account.webhooks.values()}
    harness.settings["stop"] = {"concurrency": 4}
    harness.write_settings()
    code, out, err, writes = harness.run(*TEAMS_ARGS)
    assert code == 0, err
    assert {w.name: w.uri for w in harness.account.webhooks.values()} == before  # URLs kept
    assert "update webhook parameters of ci-governance-teams-handle_exemption_request" in out and "deploy the Teams Logic App" not in out
    for w in harness.account.webhooks.values():
        assert _settings_of(w.parameters)["stop"] == {"concurrency": 4}


def test_half_given_teams_options_are_refused(harness):
    code, out, err, writes = harness.run("--teams-group-id", "g")
    assert code == 2 and "--teams-channel-id" in err and writes == []


# -- the story, end to end ---------------------------------------------------------------------------------------


def _story(route, parts):
    lines = []
    story = story_module.run_story(route, lines.append, parts)
    return story, "\n".join(lines)


def test_exemption_story_end_to_end_through_the_template_create_job_route():
    story, log = _story("job", ("exemption",))
    assert story.problems == [], log
    alice = story.ml.compute(story_module.SUB_RESEARCH, "rg-ml-research", "mlw-vision", "ci-alice-gpu")
    workspace = story.ml.workspace(story_module.SUB_RESEARCH, "rg-ml-research", "mlw-vision")
    # Recorded where the platform takes it (the CI's tags, else its workspace's), as the sweep reads it.
    status = read_exemption_for(alice.tags, workspace.tags, "ci-alice-gpu", datetime.now(timezone.utc), TagNames())
    assert alice.state == "Running" and status.protects, status
    # Identity came from the Teams responder, and the approver from the approver's press.
    assert status.exemption.by == "alice@contoso.com" and status.exemption.request_id == "msg-alice-1"
    record = alice.tags.get("ci-governance.exempt-approved-by") or workspace.tags.get("ci-governance.exempt.ci-alice-gpu", "")
    assert "lead@contoso.com" in record
    waited = [p for p in story.apps.teams.posts if p.operation == "post_and_wait" and p.response]
    assert [p.response["responder"]["userPrincipalName"] for p in waited] == ["alice@contoso.com", "lead@contoso.com"]
    jobs = [j for j in story.automation.account(story_module.SUB, story_module.RG, story_module.ACCT).jobs.values() if j.runbook == "handle_exemption_request"]
    assert all(j.argv[0] == "--settings-b64" and j.argv[2] == "--request-b64" and len(j.argv) == 4 for j in jobs)


def test_exemption_story_end_to_end_through_the_template_webhook_route():
    story, log = _story("webhook", ("exemption",))
    jobs = [j for j in story.automation.account(story_module.SUB, story_module.RG, story_module.ACCT).jobs.values() if j.runbook == "handle_exemption_request"]
    assert jobs and all(j.webhook == "ci-governance-teams-handle_exemption_request" for j in jobs)
    assert any(a.startswith("{WebhookName:") for a in jobs[0].argv)  # the real envelope form reached the runbook
    assert story.problems == [], log


def test_create_request_reaches_the_create_runbook_through_the_template():
    story, log = _story("job", ("create",))
    jobs = [j for j in story.automation.account(story_module.SUB, story_module.RG, story_module.ACCT).jobs.values() if j.runbook == "create_compute_instance"]
    assert len(jobs) >= 1 and jobs[0].status == "Completed", log
    summary = json.loads(next(ln for ln in jobs[0].output.splitlines() if ln.startswith("CI_GOVERNANCE_SUMMARY ")).split(" ", 1)[1])
    assert [r["outcome"] for r in summary["results"]] == ["needs_approval"]  # a GPU size: an approver must say yes
    assert summary["results"][0]["extra"]["requester"] == "ada@contoso.com"


def test_create_request_with_an_approval_end_to_end_through_the_template():
    story, log = _story("job", ("create",))
    assert story.problems == [], log
    assert story.ml.compute(story_module.SUB_RESEARCH, "rg-ml-research", "mlw-vision", "ci-ada-gpu").state == "Running"


def test_trigger_url_has_the_logic_apps_shape():
    parts = urlsplit(FakeLogicApps.callback_url(FakeLogicApps.__new__(FakeLogicApps), _FakeWf()))
    assert parts.path.endswith("/triggers/manual/paths/invoke") and set(parse_qs(parts.query)) == {"api-version", "sp", "sv", "sig"}


class _FakeWf:
    location, access_id, sig = "westeurope", "abc", "s"
