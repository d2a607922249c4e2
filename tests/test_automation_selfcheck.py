"""``--self-check`` of every runbook: read-only proof, one line, exit 0 or 1 (shared/automation/selfcheck.py)."""

from __future__ import annotations

import importlib

import pytest

from deployment.secrets import KeyVaultSecrets
from fake_azure.keyvault import FakeKeyVault
from fake_azure.teams import FakeTeamsWorkflow
from shared.settings import encode_settings
from tests.conftest import SUB1

RUNBOOKS = ("stop_compute_instances", "start_compute_instances", "warn_before_stop", "handle_exemption_request", "create_compute_instance")
WRITES = ("PUT", "POST", "PATCH", "DELETE")


@pytest.mark.parametrize("runbook", RUNBOOKS)
def test_self_check_passes_reads_secrets_and_changes_nothing(runbook, arm, ml, capsys):
    ml.add_workspace(SUB1, "rg-a", "mlw-one")
    teams = FakeTeamsWorkflow(arm)
    vault = FakeKeyVault(arm, "kv-test")
    cred = arm.credential()
    KeyVaultSecrets(vault.url, cred).set("ci-governance-teams-workflow-url", teams.url)
    settings = {"scope": {"subscriptions": [SUB1]}, "secrets": {"key_vault": vault.url, "stored": ["teams.workflow_url"]}}
    main = importlib.import_module(f"runbooks.{runbook}").main
    before = len(arm.calls)
    code = main(["--self-check --settings-b64 " + encode_settings(settings)], credential=cred)
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and len(out) == 1, out
    assert out[0].startswith(f"SELF-CHECK PASSED {runbook}: ") and "1 secret(s) from Key Vault" in out[0] and f"1 workspace(s) readable in {SUB1}" in out[0]
    assert [c for c in arm.calls[before:] if c.method in WRITES] == [] and teams.messages == []


def test_self_check_names_the_step_that_failed(arm, ml, capsys):
    from runbooks.stop_compute_instances import main

    bad = {"scope": {"subscriptions": [SUB1]}, "stop": {"concurency": 4}}
    assert main(["--self-check", "--settings-b64", encode_settings(bad)], credential=arm.credential()) == 1
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert line.startswith("SELF-CHECK FAILED stop_compute_instances: validating the settings: ") and "concurency" in line
    missing = {"scope": {"subscriptions": [SUB1]}, "secrets": {"key_vault": "https://kv-none.vault.azure.net", "stored": ["teams.shared_secret"]}}
    FakeKeyVault(arm, "kv-none")
    assert main(["--self-check", "--settings-b64", encode_settings(missing)], credential=arm.credential()) == 1
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert "reading the secret settings from Key Vault" in line and "ci-governance-teams-shared-secret" in line and "was not found" in line
