"""Rules of the create runbook that an adversarial review found broken (issue 12): workspace names
that reach the ARM URL, self-approval by mail, and the per-user limit under simultaneous requests.
The real runbook, end to end, against the fake."""

from __future__ import annotations

import json

import pytest

from tests.builders import ADA, BOSS, cli, only_result, teams_body
from tests.builders import create_run as run
from tests.builders import create_settings as settings
from tests.conftest import SUB1, TENANT


@pytest.fixture
def ws(ml):
    return ml.add_workspace(SUB1, "rg-ml", "mlw-one")


@pytest.mark.parametrize(
    "key",
    [
        f"{SUB1}/../mlw-one",
        f"{SUB1}/./mlw-one",
        f"{SUB1}/rg-ml/..",
        f"{SUB1}/rg-ml?x=1/mlw-one",
        f"{SUB1}/rg-ml#frag/mlw-one",
        f"{SUB1}/rg ml/mlw-one",
        f"{SUB1}/rg-ml/mlw one",
        f"{SUB1}/rg-ml/mlw\x00one",
        f"{SUB1}/rg-ml/mlw%2fone",
        f"{SUB1}/rg-ml./mlw-one",
    ],
)
def test_a_malformed_workspace_key_is_refused_before_any_call(arm, ml, ws, capsys, key):
    for args in (["--workspace-key", key, *cli()[2:]], ["--request", json.dumps(teams_body(workspace=key))]):
        doc = settings(require_shared_secret=None)
        code, summary, _ = run(arm, capsys, args, doc)
        assert code == 2 and summary["exit_code"] == 2, (key, args[0])
    assert arm.calls == []


def test_separate_flags_naming_a_malformed_resource_group_are_refused(arm, ml, ws, capsys):
    args = ["--subscription", SUB1, "--resource-group", "..", "--workspace-name", "mlw-one", *cli()[2:]]
    code, _, _ = run(arm, capsys, args)
    assert code == 2 and arm.calls == []


def gpu_body(approver):
    body = teams_body(size="Standard_NC6s_v3")
    body["responder"] = {"objectId": ADA, "tenantId": TENANT, "userPrincipalName": "ada@contoso.com", "email": "ada.l@contoso.com"}
    body["approval"] = {"outcome": "Approve", "approver": approver}
    return body


@pytest.mark.parametrize(
    "approver",
    [
        # The requester's mail as the approver's UPN, with another object id.
        {"objectId": BOSS, "userPrincipalName": "ada.l@contoso.com"},
        # The requester's UPN as the approver's mail.
        {"objectId": BOSS, "userPrincipalName": "boss@contoso.com", "email": "ada@contoso.com"},
    ],
)
def test_the_requester_cannot_approve_their_own_request_by_mail(arm, ml, ws, capsys, approver):
    doc = settings(approvers=["boss@contoso.com", "ada.l@contoso.com"], require_shared_secret=None)
    code, summary, _ = run(arm, capsys, ["--request", json.dumps(gpu_body(approver))], doc)
    row = only_result(summary)
    assert code == 0 and row["outcome"] == "rejected" and "own request" in row["detail"]
    assert arm.count("PUT") == 0


def test_another_approver_still_approves(arm, ml, ws, capsys):
    code, summary, _ = run(arm, capsys, ["--request", json.dumps(gpu_body({"objectId": BOSS, "userPrincipalName": "boss@contoso.com"}))])
    assert code == 0 and only_result(summary)["outcome"] == "created"


def race(arm, ml, ws, created_on):
    """While our PUT is served, another request for the same user creates ``ci-ada-two``."""
    arm.when("PUT", "/computes/ci-ada", lambda: ml.add_compute_instance(ws, "ci-ada-two", assigned_user=(ADA, TENANT), created_on=created_on))


def test_simultaneous_requests_over_the_per_user_limit_report_the_newer_one(arm, ml, ws, capsys):
    race(arm, ml, ws, "2020-01-01T00:00:00.000000+00:00")  # the other one is older: ours is the surplus
    code, summary, out = run(arm, capsys, cli())
    row = only_result(summary)
    assert code == 1 and row["outcome"] == "failed"
    assert "ci-ada-two" in row["detail"] and "over the limit of 1" in row["detail"] and "delete ci-ada" in row["detail"]
    assert "FAILED           mlw-one/ci-ada" in out


def test_simultaneous_requests_the_older_one_is_reported_created(arm, ml, ws, capsys):
    race(arm, ml, ws, "2999-01-01T00:00:00.000000+00:00")  # the other one is newer: its own run reports it
    code, summary, out = run(arm, capsys, cli())
    assert code == 0 and only_result(summary)["outcome"] == "created" and "raced another request" in out


def test_a_race_within_the_limit_is_fine(arm, ml, ws, capsys):
    race(arm, ml, ws, "2020-01-01T00:00:00.000000+00:00")
    code, summary, _ = run(arm, capsys, cli(), settings(max_per_user=2))
    assert code == 0 and summary["exit_code"] == 0 and only_result(summary)["outcome"] == "created"


def test_racing_creations_within_one_second_are_ordered_by_the_microsecond():
    # Two runs must agree which creation is the newer even when both landed within the same second.
    from shared.create.run import _created
    from shared.models import ComputeInstanceRecord, WorkspaceRef

    ws = WorkspaceRef(SUB1, "rg-ml", "mlw-one")
    earlier = ComputeInstanceRecord(ws, "zz-later-name", "Running", created_on="2026-11-26T11:16:06.100000+0000")
    later = ComputeInstanceRecord(ws, "aa-early-name", "Running", created_on="2026-11-26T11:16:06.200000+0000")
    unknown = ComputeInstanceRecord(ws, "mm", "Running", created_on=None)
    assert sorted([later, earlier, unknown], key=lambda c: (_created(c), c.name)) == [unknown, earlier, later]
