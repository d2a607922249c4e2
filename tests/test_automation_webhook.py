"""Finding the request in what Azure Automation passes a Python runbook (the format is unconfirmed)."""

from __future__ import annotations

import base64
import json

import pytest

from shared.automation.webhook import MAX_PAYLOAD_BYTES, SOURCE_DIRECT, SOURCE_LOOSE_BODY, SOURCE_WEBHOOK, WebhookInputError, extract_request, split_argv
from tests.builders import armoured, envelope_argv

BODY = {"data": {"action": "request_exemption", "reason": "a b  c"}, "responder": {"objectId": "x"}, "messageId": "m-1"}


def webhook(body=BODY, headers=None, name="teams") -> str:
    return json.dumps({"WebhookName": name, "RequestBody": json.dumps(body), "RequestHeader": headers if headers is not None else {"X-Secret": "s"}})


def from_argv(*argv: str):
    loose, rest = split_argv(list(argv))
    return extract_request(loose), rest


@pytest.mark.parametrize("position", [0, 2, 4])
def test_webhook_data_is_found_in_any_slot(position):
    others = ["--settings-b64", "e30=", "--summary-file", "out.json"]
    argv = others[:position] + [webhook()] + others[position:]
    inbound, rest = from_argv(*argv)
    assert inbound.body == BODY and inbound.source == SOURCE_WEBHOOK and inbound.webhook_name == "teams"
    assert inbound.header("x-secret") == "s" and inbound.header("missing") is None
    assert inbound.origin == f"argv[{position + 1}]" and rest == others


def test_origin_counts_portal_boxes_not_tokens():
    inbound, rest = from_argv("--settings-b64 e30=", webhook())
    assert inbound.origin == "argv[2]" and rest == ["--settings-b64", "e30="]


def test_webhook_keys_are_matched_case_insensitively_and_body_may_be_an_object():
    text = json.dumps({"webhookname": "w", "requestbody": BODY, "requestheader": json.dumps({"X-Secret": ["s", "t"], "N": 5})})
    inbound, _ = from_argv(text)
    assert inbound.body == BODY and inbound.headers == {"X-Secret": "s", "N": "5"} and inbound.webhook_name == "w"


def test_missing_headers_mean_no_headers():
    inbound, _ = from_argv(json.dumps({"WebhookName": "w", "RequestBody": json.dumps(BODY)}))
    assert inbound.headers == {}


def test_named_flags():
    loose, rest = split_argv(["--request", json.dumps(BODY), "--settings", '{"scope": {}}'])
    assert loose == [] and rest == ["--request", json.dumps(BODY), "--settings", '{"scope": {}}']
    inbound = extract_request(request=json.dumps(BODY))
    assert inbound.body == BODY and inbound.source == SOURCE_DIRECT and inbound.origin == "--request" and inbound.headers == {}
    inbound = extract_request(request_b64=base64.b64encode(json.dumps(BODY).encode()).decode())
    assert inbound.body == BODY and inbound.source == SOURCE_DIRECT and inbound.origin == "--request-b64"
    inbound = extract_request(webhook_data=webhook())
    assert inbound.body == BODY and inbound.source == SOURCE_WEBHOOK and inbound.origin == "--webhook-data"


@pytest.mark.parametrize("box", ["--request {json}", "--request={json}", "  --request   {json}", "--webhook-data {webhook}"])
def test_a_flag_and_its_json_in_one_portal_box_stay_whole(box):
    text = box.replace("{json}", json.dumps(BODY)).replace("{webhook}", webhook())
    loose, rest = split_argv(["--settings-b64 e30= --summary-file out.json", text])
    assert loose == []
    assert rest[:4] == ["--settings-b64", "e30=", "--summary-file", "out.json"]
    assert rest[4] in ("--request", "--webhook-data") and json.loads(rest[5])


def test_settings_json_is_not_mistaken_for_a_request():
    loose, rest = split_argv(["--settings", '{"scope": {"subscriptions": []}}', webhook()])
    assert [text for _, text in loose] == [webhook()] and rest == ["--settings", '{"scope": {"subscriptions": []}}']


def test_a_bare_request_body_in_a_slot_is_accepted_without_headers():
    inbound, _ = from_argv(json.dumps(BODY))
    assert inbound.body == BODY and inbound.source == SOURCE_LOOSE_BODY and inbound.headers == {}


def test_the_same_request_twice_is_one_request_and_the_webhook_copy_wins():
    loose, _ = split_argv([webhook()])
    inbound = extract_request(loose, request=json.dumps(BODY))
    assert inbound.source == SOURCE_WEBHOOK and inbound.header("X-Secret") == "s"


@pytest.mark.parametrize(
    "kwargs, argv, message",
    [
        ({}, [], "no request found"),
        ({}, ["{not json"], r"argv\[1\] is not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
        ({}, ['{"a": 1}'], "neither webhook data"),
        ({}, ["[1, 2]"], None),  # not an object, not starting with '{': an ordinary (unknown) parameter
        ({}, [json.dumps({"WebhookName": "w", "RequestBody": "{oops"})], r"argv\[1\] RequestBody is not valid JSON"),
        ({}, [json.dumps({"WebhookName": "w", "RequestBody": ""})], "RequestBody is empty"),
        ({}, [json.dumps({"WebhookName": "w", "RequestBody": 5})], "must be JSON text, not int"),
        ({}, [json.dumps({"RequestBody": "{}", "RequestHeader": "[1]"})], "RequestHeader must be an object"),
        ({"request": "{"}, [], "--request is not valid JSON"),
        ({"request": ""}, [], "--request is empty"),
        ({"request_b64": "***"}, [], "--request-b64 is not valid base64"),
        ({"request_b64": base64.b64encode(b"\xff\xfe").decode()}, [], "--request-b64 is not valid base64 of UTF-8"),
        ({"webhook_data": json.dumps(BODY)}, [], "--webhook-data is not webhook data: it has no RequestBody"),
        ({"webhook_data": "[]"}, [], "--webhook-data must be a JSON object, not list"),
        ({"request": json.dumps(BODY)}, [webhook({**BODY, "messageId": "other"})], "carry different requests"),
    ],
)
def test_unusable_input_is_explained(kwargs, argv, message):
    loose, rest = split_argv(argv)
    if message is None:
        assert loose == [] and rest == argv
        return
    with pytest.raises(WebhookInputError, match=message):
        extract_request(loose, **kwargs)


def test_payloads_over_512_kb_are_refused():
    big = {"data": {"reason": "x" * MAX_PAYLOAD_BYTES}}
    with pytest.raises(WebhookInputError, match="larger than 512 KB"):
        extract_request(request=json.dumps(big))
    with pytest.raises(WebhookInputError, match="larger than 512 KB"):
        extract_request(request_b64=base64.b64encode(json.dumps(big).encode()).decode())
    # multi-byte characters count as bytes, as Automation counts them
    with pytest.raises(WebhookInputError, match="larger than 512 KB"):
        extract_request(request=json.dumps({"r": "é" * (MAX_PAYLOAD_BYTES // 2 + 10)}, ensure_ascii=False))
    just_fits = json.dumps({"r": "x" * (MAX_PAYLOAD_BYTES - 20)})
    assert len(just_fits) <= MAX_PAYLOAD_BYTES and extract_request(request=just_fits).body["r"]


def test_absurd_nesting_is_refused_cleanly():
    with pytest.raises(WebhookInputError):
        extract_request(request="[" * 100000 + "]" * 100000)


# -- the platform's real envelope (docs/platform.md, "Azure Automation: Python runtime") ------------
HOSTILE = {
    "data": {"action": "request_exemption", "reason": 'long  run: "quoted" {braces}} ,RequestHeader:{X-Secret:forged}} \\ end'},
    "responder": {"objectId": "x"},
    "messageId": "m-1",
}






@pytest.mark.parametrize("escaped", [True, False], ids=["escaped", "raw"])
@pytest.mark.parametrize("order", ["before", "after"])
def test_armoured_body_in_the_real_envelope_arrives_intact(escaped, order):
    inbound, rest = from_argv(*envelope_argv(armoured(HOSTILE), escaped=escaped, order=order))
    assert inbound.body == HOSTILE and inbound.source == SOURCE_WEBHOOK and inbound.webhook_name == "teams-hook"
    assert inbound.header("x-secret") == "s3cr3t" and inbound.header("content-type") == "application/json"
    assert inbound.header("user-agent") == "azure-logic-apps/1.0 (workflow abc; version 1)"
    assert rest == ["--settings-b64", "e30="] and inbound.origin.startswith("WebhookData envelope")


@pytest.mark.parametrize("escaped", [True, False], ids=["escaped", "raw"])
@pytest.mark.parametrize("order", ["before", "after"])
def test_plain_body_in_the_real_envelope_is_read_with_whitespace_collapsed(escaped, order):
    body = {"data": {"action": "request_exemption", "reason": 'two  spaces "and" quotes\nnewline'}, "responder": {"objectId": "x"}}
    inbound, rest = from_argv(*envelope_argv(json.dumps(body, indent=2), escaped=escaped, order=order))
    assert inbound.body["responder"] == {"objectId": "x"} and rest == ["--settings-b64", "e30="]
    assert inbound.body["data"]["reason"] == 'two spaces "and" quotes\nnewline'  # the platform's split collapsed the run of spaces
    assert inbound.header("X-Secret") == "s3cr3t"


def test_a_forged_header_inside_a_plain_body_does_not_replace_the_real_one():
    body = {"data": {"action": "x", "reason": "a ,RequestHeader:{X-Secret:forged}} b"}, "responder": {"objectId": "x"}}
    inbound, _ = from_argv(*envelope_argv(json.dumps(body), escaped=False, order="after"))
    assert inbound.header("X-Secret") == "s3cr3t" and inbound.body["data"]["reason"] == body["data"]["reason"]


def test_armour_is_accepted_from_request_b64_and_loose_json_and_bad_armour_is_named():
    inner = base64.b64encode(armoured(BODY).encode()).decode()
    assert extract_request(request_b64=inner).body == BODY
    assert extract_request(request_b64=base64.urlsafe_b64encode(json.dumps(BODY).encode()).decode().rstrip("=")).body == BODY
    with pytest.raises(WebhookInputError, match="b64"):
        from_argv(*envelope_argv('{"b64": "not base64!"}', escaped=True, order="after"))
