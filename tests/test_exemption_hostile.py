"""A hostile webhook body never changes a CI: seeded mutations of a valid request (wrong types,
missing or extra fields, huge or control-character strings, another person's identity, broken
JSON) go through the real exemption runbook against the fake. After each, either the CI's tags
are exactly as before, or the run recorded a valid exemption for the CI's own assigned user."""

from __future__ import annotations

import copy
import json
import random
from datetime import timedelta
from typing import Any, Dict

from fake_azure.teams import FakeTeamsWorkflow
from runbooks import handle_exemption_request
from shared.settings import encode_settings
from shared.tags import TagNames, read_exemption
from tests.conftest import SUB1, TENANT
from tests.summary import summary_from

N = TagNames()
OWNER = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
WS_KEY = f"{SUB1}/rg-a/mlw-one"
BASE: Dict[str, Any] = {
    "data": {
        "action": "request_exemption",
        "workspace": WS_KEY,
        "compute_instance": "ci-ada",
        "until_date": "2026-11-24",
        "until_time": "08:00",
        "time_zone": "Europe/Berlin",
        "reason": "training",
    },
    "responder": {"objectId": OWNER, "tenantId": TENANT, "email": "ada@contoso.com", "userPrincipalName": "ada@contoso.com", "displayName": "Ada"},
    "responseTime": "2026-11-23T19:00:00Z",
    "messageId": "msg-1",
}
NASTY = [
    None,
    0,
    -1,
    1e308,
    True,
    [],
    {},
    "",
    " ",
    "\x00",
    "\u202e",
    "💥" * 300,
    "x" * 100_000,
    "../../etc",
    "'; DROP TABLE tags; --",
    '{"nested": "json"}',
    "2026-02-30",
    "25:99",
    "Mars/Olympus",
    "ci-other",
    f"{SUB1}/rg-a/mlw-other",
    "*",
    "ci-ada ",
    "CI-ADA",
    "cancel_exemption",
    "request_exemption_form",
    "9999-12-31",
    "1970-01-01",
    "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb",
]


def mutate(rng: random.Random) -> Any:
    body = copy.deepcopy(BASE)
    for _ in range(rng.randint(1, 3)):
        where = rng.choice(["data", "responder", "top"])
        target = body if where == "top" else body.get(where)
        if not isinstance(target, dict):
            body[where] = rng.choice(NASTY)
            continue
        key = rng.choice(sorted(target) + ["extra"])
        move = rng.random()
        if move < 0.25:
            target.pop(key, None)
        elif move < 0.9:
            target[key] = rng.choice(NASTY)
        else:
            body[where] = rng.choice(NASTY)
    if rng.random() < 0.1:
        return json.dumps(body)[: rng.randint(1, 200)]  # truncated JSON
    return body


def test_mutated_requests_never_change_a_ci_except_by_a_valid_exemption(arm, ml, now, capsys):
    ws = ml.add_workspace(SUB1, "rg-a", "mlw-one")
    ml.add_compute_instance(ws, "ci-ada", tags={"team": "vision"}, assigned_user=(OWNER, TENANT))
    ml.add_compute_instance(ws, "ci-other", tags={"team": "nlp"}, assigned_user=("cccccccc-cccc-4ccc-8ccc-cccccccccccc", TENANT))
    teams = FakeTeamsWorkflow(arm)
    doc = {"scope": {"subscriptions": [SUB1]}, "teams": {"workflow_url": teams.url}, "exemption": {"readback_delay_seconds": 0}, "pricing": {"enabled": False}}
    settings = ["--settings-b64", encode_settings(doc)]
    rng = random.Random(20261123)
    recorded = 0
    for i in range(150):
        body = mutate(rng)
        before = {name: dict(ml.compute(SUB1, "rg-a", "mlw-one", name).tags) for name in ("ci-ada", "ci-other")}
        raw = body if isinstance(body, str) else json.dumps(body)
        webhook = json.dumps({"WebhookName": "w", "RequestBody": raw, "RequestHeader": {}})
        code = handle_exemption_request.main([*settings, webhook], credential=arm.credential(), now=now)
        summary = summary_from(capsys.readouterr().out)
        after = {name: dict(ml.compute(SUB1, "rg-a", "mlw-one", name).tags) for name in ("ci-ada", "ci-other")}
        assert after["ci-other"] == before["ci-other"], f"mutation {i} changed someone else's CI: {raw[:300]}"
        assert code in (0, 1, 2), summary
        if after["ci-ada"] != before["ci-ada"]:
            outcome = [r["outcome"] for r in summary["results"]]
            assert code == 0 and outcome in (["exempted"], ["cancelled"]), f"mutation {i} changed tags with outcome {outcome}: {raw[:300]}"
            status = read_exemption(after["ci-ada"], now)
            if outcome == ["exempted"]:
                assert status.protects and status.exemption.by == "ada@contoso.com", f"mutation {i}: {raw[:300]}"
                assert now < status.exemption.until <= now + timedelta(hours=72)
                recorded += 1
            assert after["ci-ada"].get("team") == "vision"  # other tags untouched
    assert arm.count("PATCH") + arm.count("PUT") >= recorded
