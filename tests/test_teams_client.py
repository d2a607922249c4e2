"""Posting cards to the (fake) Teams Workflows webhook: envelope, retries, giving up, and never leaking the URL."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import pytest
import requests

from fake_azure import Fault
from fake_azure.teams import FakeTeamsWorkflow
from shared.teams.cards import MAX_MESSAGE_BYTES, render_card, teams_message
from shared.teams.client import TeamsWorkflowClient, redact_url, retry_after_seconds

SECRET = "fake-signature"
REDACTED = "https://prod-00.westeurope.logic.azure.com/\u2026"


@pytest.fixture
def workflow(arm):
    return FakeTeamsWorkflow(arm)


@pytest.fixture
def card():
    return render_card("exemption_cancelled", workspace="sub/rg/ws", compute_instance="ci-ann", cancelled_by="Ann")


def client(url, sleeps, **kw):
    return TeamsWorkflowClient(url, sleep=sleeps.append, **kw)


def test_posts_the_envelope_and_the_workflow_records_it(workflow, card):
    sleeps = []
    result = client(workflow.url, sleeps).post_card(card)
    assert (result.ok, result.status, result.attempts, result.error) == (True, 202, 1, None)
    assert workflow.messages == [teams_message(card)]
    assert workflow.cards == [card]
    assert sleeps == []


def test_retries_429_honouring_retry_after(arm, workflow, card):
    fault = arm.inject(Fault(429, path_contains="/workflows/", times=2, retry_after=7))
    sleeps = []
    result = client(workflow.url, sleeps).post_card(card)
    assert result.ok and result.attempts == 3 and fault.hits == 2
    assert sleeps == [7.0, 7.0]
    assert workflow.cards == [card]


def test_retries_503_with_exponential_backoff(arm, workflow, card):
    arm.inject(Fault(503, path_contains="/workflows/", times=3))
    sleeps = []
    result = client(workflow.url, sleeps, backoff_seconds=0.5).post_card(card)
    assert result.ok and result.attempts == 4
    assert sleeps == [0.5, 1.0, 2.0]


def test_each_wait_is_capped_at_30_seconds(arm, workflow, card):
    arm.inject(Fault(429, path_contains="/workflows/", times=1, retry_after=3600))
    arm.inject(Fault(503, path_contains="/workflows/", times=1))
    sleeps = []
    result = client(workflow.url, sleeps, backoff_seconds=100).post_card(card)
    assert result.ok and sleeps == [30.0, 30.0]


def test_gives_up_after_max_attempts_without_raising(arm, workflow, card):
    arm.inject(Fault(503, path_contains="/workflows/", times=None))
    sleeps = []
    result = client(workflow.url, sleeps, max_attempts=3).post_card(card)
    assert not result.ok and result.status == 503 and result.attempts == 3
    assert "gave up after 3 attempts" in result.error and "HTTP 503" in result.error
    assert len(sleeps) == 2 and workflow.messages == []


def test_no_retry_on_400(arm, workflow, card):
    fault = arm.inject(Fault(400, path_contains="/workflows/", times=None))
    sleeps = []
    result = client(workflow.url, sleeps).post_card(card)
    assert not result.ok and result.status == 400 and result.attempts == 1 and fault.hits == 1
    assert sleeps == []


def test_wrong_signature_is_401_and_not_retried(workflow, card):
    sleeps = []
    result = client(workflow.url.replace(SECRET, "stolen-guess"), sleeps).post_card(card)
    assert (result.ok, result.status, result.attempts) == (False, 401, 1)
    assert "stolen-guess" not in result.error
    assert workflow.messages == [] and workflow.rejected[0][0] == 401


def test_transport_errors_are_retried_then_reported(arm, card):
    # No route for this host: responses raises ConnectionError, whose text quotes the URL.
    url = "https://prod-99.westeurope.logic.azure.com/workflows/1/triggers/manual/paths/invoke?sv=1.0&sig=other-secret"
    sleeps = []
    result = client(url, sleeps, max_attempts=2).post_card(card)
    assert not result.ok and result.status is None and result.attempts == 2 and len(sleeps) == 1
    assert "ConnectionError" in result.error and "other-secret" not in result.error


def test_oversized_card_is_not_posted(workflow):
    big = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "x" * MAX_MESSAGE_BYTES}]}
    result = client(workflow.url, []).post_card(big)
    assert not result.ok and result.attempts == 0 and "bytes" in result.error
    assert workflow.messages == []


def test_missing_or_insecure_url_is_a_result_not_an_exception(card):
    for url in ("", "not a url", "http://prod-00.westeurope.logic.azure.com/workflows/0?sig=x"):
        result = client(url, []).post_card(card)
        assert not result.ok and result.attempts == 0 and "https://" in result.error


def test_fake_rejects_what_the_real_flow_would_not_post(workflow):
    assert requests.post(workflow.url, json={"text": "hello"}).status_code == 400
    assert requests.post(workflow.url, data=b"{not json", headers={"Content-Type": "application/json"}).status_code == 400
    not_a_card = {"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "content": {"type": "Hero"}}]}
    assert requests.post(workflow.url, json=not_a_card).status_code == 400
    huge = teams_message({"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "x" * MAX_MESSAGE_BYTES}]})
    assert requests.post(workflow.url, json=huge).status_code == 413
    assert [status for status, _ in workflow.rejected] == [400, 400, 400, 413] and workflow.messages == []


def test_url_never_appears_in_logs(arm, workflow, card, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="urllib3.connectionpool")  # runbooks quieten urllib3; this test needs its records
    arm.inject(Fault(429, path_contains="/workflows/", times=1, retry_after=1))
    arm.inject(Fault(500, path_contains="/workflows/", times=1))
    assert client(workflow.url, []).post_card(card).ok
    arm.inject(Fault(503, path_contains="/workflows/", times=None))
    assert not client(workflow.url, [], max_attempts=2).post_card(card).ok
    client(workflow.url.replace("prod-00", "prod-01"), [], max_attempts=1).post_card(card)  # transport error
    # urllib3 logs every request line, query string included, at DEBUG: the client installs a filter for it.
    logging.getLogger("urllib3.connectionpool").debug(
        '%s://%s:%s "%s %s %s" %s %s', "https", "host", 443, "POST", "/w?sv=1.0&sig=" + SECRET, "HTTP/1.1", 202, 0
    )
    text = caplog.text
    assert SECRET not in text and "/workflows/" not in text and "sig=***" in text
    assert REDACTED in text and "retry 1/3" in text and "Gave up" in text


def test_redact_url():
    assert redact_url(FakeTeamsWorkflow.__init__.__defaults__[0]) == REDACTED
    assert redact_url("https://user:pw@example.com:8443/a?sig=s") == "https://example.com:8443/\u2026"
    assert redact_url("") == redact_url("no scheme") == "<invalid URL>"


def test_retry_after_parsing():
    now = datetime(2026, 11, 23, 19, 0, 0, tzinfo=timezone.utc)
    assert retry_after_seconds("12") == 12.0 and retry_after_seconds("0.25") == 0.25
    assert retry_after_seconds("Mon, 23 Nov 2026 19:00:05 GMT", now=now) == 5.0
    assert retry_after_seconds("Mon, 23 Nov 2026 18:00:00 GMT", now=now) == 0.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
