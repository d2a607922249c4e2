"""Builders the tests share: requests as Teams and Azure Automation deliver them, settings documents,
runbook runs and what they answered. One module, so a test file imports builders from here and never
from another test file."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List, Optional
from urllib.parse import unquote

from azure.mgmt.automation import AutomationClient

from deployment.cli import Dependencies, main
from deployment.model import PackageSpec
from deployment.packaging import SasContainerUploader
from deployment.secrets import KeyVaultSecrets
from fake_azure.automation import FakeAutomation
from fake_azure.clock import VirtualClock
from fake_azure.keyvault import FakeKeyVault
from fake_azure.ml import FakeMachineLearning
from fake_azure.platform import LEGACY, PESSIMISTIC
from runbooks import create_compute_instance, handle_exemption_request
from shared.settings import encode_settings
from shared.tags import TagNames
from shared.teams.routing import iter_elements
from tests.cardcheck import assert_valid_card
from tests.conftest import SUB1, SUB2, TENANT, fast_stop_settings
from tests.summary import summary_from

# -- Azure Automation's delivery of a webhook request ---------------------------------------------


def envelope_argv(body_text, *, escaped, order, params=("--settings-b64 e30=",), headers=None):
    """argv as Azure Automation builds it for a Python runbook (the fake's own envelope builder)."""
    from types import SimpleNamespace

    from fake_azure.automation import FakeAutomation

    fake = SimpleNamespace(platform=PESSIMISTIC.but(webhook_body_escaped=escaped))
    hdrs = {"Content-Type": "application/json", "User-Agent": "azure-logic-apps/1.0 (workflow abc; version 1)", "X-Secret": "s3cr3t"}
    text = FakeAutomation.webhook_envelope(fake, SimpleNamespace(name="teams-hook"), headers or hdrs, body_text, "https://x.webhook.we.azure-automation.net")
    own = [p for value in params for p in value.split()]
    return own + text.split() if order == "before" else text.split() + own


def armoured(body) -> str:
    return json.dumps({"b64": base64.b64encode(json.dumps(body).encode("utf-8")).decode("ascii")})


# -- the exemption runbook ----------------------------------------------------------------------


N = TagNames()


OWNER = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"


STRANGER = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"


LEAD = "cccccccc-cccc-4ccc-8ccc-cccccccccccc"


SECRET_HEADER = "X-CI-Governance-Secret"


SECRET = "s3cret-value"


WS_KEY = f"{SUB1}/rg-a/mlw-one"


OTHER_TAGS = {"team": "vision", "cost-center": "42"}


def make_ml(arm, **options) -> FakeMachineLearning:
    # LEGACY (CI tags writable) unless a test says otherwise: most tests here check the details of the
    # CI-tag route (other tags kept, idempotency, approvers); every platform variant, the workspace
    # fallback included, is covered by tests/test_exemption_platforms.py.
    options.setdefault("platform", LEGACY)
    ml = FakeMachineLearning(arm, stop_seconds=0.05, start_seconds=0.05, create_seconds=0.05, **options)
    ws = ml.add_workspace(SUB1, "rg-a", "mlw-one")
    ml.add_compute_instance(ws, "ci-ada", state="Running", tags=dict(OTHER_TAGS), assigned_user=(OWNER, TENANT))
    ml.add_compute_instance(ws, "ci-shared", state="Running", tags={"team": "shared"})
    ml.add_compute_instance(ws, "gpu-cluster", compute_type="AmlCompute")
    return ml


def responder(oid: str = OWNER, upn: str = "ada@contoso.com") -> Dict[str, str]:
    return {"objectId": oid, "tenantId": TENANT, "email": upn, "userPrincipalName": upn, "displayName": "Ada"}


def body(who: Optional[Dict[str, str]] = None, message_id: str = "msg-1", **data: Any) -> Dict[str, Any]:
    fields = {
        "action": "request_exemption",
        "workspace": WS_KEY,
        "compute_instance": "ci-ada",
        "until_date": "2026-11-24",
        "until_time": "08:00",
        "time_zone": "Europe/Berlin",
        "reason": "training run ends tomorrow morning",
    }
    fields.update(data)
    return {
        "data": {k: v for k, v in fields.items() if v is not None},
        "responder": who or responder(),
        "responseTime": "2026-11-23T19:00:00Z",
        "messageId": message_id,
        "submitActionId": "Request exemption",
    }


def webhook(payload: Any, headers: Optional[Dict[str, str]] = None) -> str:
    raw = payload if isinstance(payload, str) else json.dumps(payload)
    return json.dumps({"WebhookName": "teams-exemptions", "RequestBody": raw, "RequestHeader": headers or {"Content-Type": "application/json"}})


def settings_doc(teams, **exemption: Any) -> Dict[str, Any]:
    teams_section: Dict[str, Any] = {"workflow_url": teams.url}
    if exemption.get("require_shared_secret"):
        teams_section["shared_secret"] = SECRET
    return {
        "scope": {"subscriptions": [SUB1, SUB2]},
        "teams": teams_section,
        "exemption": {"readback_delay_seconds": 0, **exemption},
        "stop": fast_stop_settings(),
    }


def run(arm, now, capsys, *argv: str, doc: Dict[str, Any]):
    code = handle_exemption_request.main(["--settings-b64", encode_settings(doc), *argv], credential=arm.credential(), now=now)
    return code, summary_from(capsys.readouterr().out)


def tags(ml, name: str = "ci-ada") -> Dict[str, str]:
    return dict(ml.compute(SUB1, "rg-a", "mlw-one", name).tags)


def card_texts(card: Dict[str, Any]) -> List[str]:
    return [e["text"] for e in iter_elements(card) if e.get("type") in ("TextBlock", "TextRun") and isinstance(e.get("text"), str)]


def is_admin_notice(card: Dict[str, Any]) -> bool:
    return str(card.get("fallbackText", "")).startswith("CI governance, for admins")


def answers(teams) -> List[Any]:
    """(query, card) of the answers to people: not the approval cards, not the admins' notices."""
    return [(q, c) for q, c in teams.addressed_cards if q.get("audience") != "approvers" and not is_admin_notice(c)]


def admin_notices(teams) -> List[Dict[str, Any]]:
    return [c for q, c in teams.addressed_cards if is_admin_notice(c) and "recipient" not in q]


def only_card(teams, to: Optional[str] = "ada@contoso.com") -> Dict[str, Any]:
    """The one answer card; it went back to the person who asked (``to``), never to a shared channel."""
    found = answers(teams)
    assert len(found) == 1, f"expected one answer card, got {len(found)}"
    query, card = found[0]
    if to is not None:
        assert query.get("recipient") == to and query.get("recipient_type") == "upn", query
    assert_valid_card(card)
    return card


# -- the create runbook --------------------------------------------------------------------------

CREATE_WS_KEY = f"{SUB1}/rg-ml/mlw-one"


ADA = "00000000-0000-4000-8000-000000000001"


BOB = "00000000-0000-4000-8000-000000000002"


BOSS = "00000000-0000-4000-8000-0000000000b0"


def create_settings(**create):
    section = {
        "allowed_sizes": ["Standard_DS3_v2", "Standard_E4ds_v4", "Standard_NC6s_v3"],
        "sizes_needing_approval": ["STANDARD_NC*"],
        "approvers": ["boss@contoso.com"],
        "polling_interval_seconds": 0.02,
        "timeout_seconds": 10,
        **create,
    }
    return {"scope": {"subscriptions": [SUB1]}, "teams": {"shared_secret": "s3cret"}, "create": section}


def cli(name="ci-ada", size="Standard_DS3_v2", *extra, user=ADA, requester="ada@contoso.com"):
    return [
        "--workspace-key",
        CREATE_WS_KEY,
        "--name",
        name,
        "--size",
        size,
        "--user-object-id",
        user,
        "--user-tenant-id",
        TENANT,
        "--requester",
        requester,
        "--cost-center",
        "CC-4711",
        *extra,
    ]


def teams_body(**data):
    body = {
        "data": {
            "action": "request_compute_instance",
            "workspace": CREATE_WS_KEY,
            "name": "ci-ada",
            "size": "Standard_DS3_v2",
            "idle_minutes": "45",
            "cost_center": "CC-4711",
        },
        "responder": {"objectId": ADA, "tenantId": TENANT, "userPrincipalName": "ada@contoso.com", "email": "ada@contoso.com", "displayName": "Ada"},
        "responseTime": "2026-11-23T09:00:00Z",
        "messageId": "1732352400000",
    }
    body["data"].update(data)
    return body


def create_run(arm, capsys, args, doc=None):
    code = create_compute_instance.main(["--settings-b64", encode_settings(doc or create_settings()), *args], credential=arm.credential())
    out = capsys.readouterr().out
    return code, summary_from(out), out


def only_result(summary):
    assert len(summary["results"]) == 1
    return summary["results"][0]


# -- publish.py against a fake Automation account --------------------------------------------------


SUB, RG, ACCT = "33333333-3333-4333-8333-333333333333", "rg-automation", "aa-governance"


ML_SUB1, ML_SUB2 = "5b1e7c3a-0d2f-4e6a-9b8c-1f2e3d4c5b6a", "6c2f8d4b-1e3a-4f7b-8c9d-2a3b4c5d6e7f"


PRINCIPAL = "aaaaaaaa-0000-4000-8000-000000000001"


RUNBOOKS = ("stop_compute_instances", "start_compute_instances", "warn_before_stop", "handle_exemption_request", "create_compute_instance")


SAS = "https://stgov.blob.core.windows.net/wheels?sv=2022-11-02&sp=rcw&sig=SECRETSIG"


THIRD_PARTY = [
    PackageSpec(
        "azure-core", "1.41.0", "azure_core-1.41.0-py3-none-any.whl", "a" * 64, "https://files.pythonhosted.org/packages/aa/azure_core-1.41.0-py3-none-any.whl"
    ),
    PackageSpec(
        "cryptography",
        "44.0.0",
        "cryptography-44.0.0-cp39-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "b" * 64,
        "https://files.pythonhosted.org/packages/bb/cryptography-44.0.0-cp39-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    ),
]


WRITES = ("PUT", "POST", "PATCH", "DELETE")


def stub_runbook(name: str, body: str = "") -> str:
    """A runbook that answers --self-check as the real ones do (one PASSED line), else runs ``body``."""
    return f"import sys\nif '--self-check' in sys.argv:\n    print('SELF-CHECK PASSED {name}: stub')\n    sys.exit(0)\nprint('{name}', sys.argv[1:])\n{body}"




class Harness:
    """A project directory, a settings file and an Automation account, with publish.py run against them."""

    def __init__(self, tmp_path: Path, arm, automation: FakeAutomation):
        self.arm, self.automation = arm, automation
        self.project = tmp_path / "project"
        (self.project / "shared").mkdir(parents=True)
        (self.project / "runbooks").mkdir()
        (self.project / "pyproject.toml").write_text('[project]\nname = "ci-governance"\nversion = "0.1.0"\nrequires-python = ">=3.10"\n')
        (self.project / "shared" / "__init__.py").write_text('"""shared."""\n')
        (self.project / "shared" / "util.py").write_text("VALUE = 1\n")
        (self.project / "runbooks" / "__init__.py").write_text("")
        for name in RUNBOOKS:
            self.write_runbook(name, stub_runbook(name))
        self.settings_path = tmp_path / "settings.json"
        self.settings = {"scope": {"subscriptions": [ML_SUB1, ML_SUB2], "resource_groups": []}, "stop": {"concurrency": 8}}
        self.write_settings()
        self.uploads: list = []
        self.packages = list(THIRD_PARTY)
        # The account's own virtual clock when it has one (its import limit then runs on the same time).
        owner = getattr(automation.rate_clock, "__self__", None)
        self.clock = owner if isinstance(owner, VirtualClock) else VirtualClock()
        self.vault = FakeKeyVault(arm, "kv-governance", readers={PRINCIPAL, "admin"})

    def write_runbook(self, name: str, content: str) -> None:
        (self.project / "runbooks" / f"{name}.py").write_text(content)

    def write_settings(self) -> None:
        self.settings_path.write_text(json.dumps(self.settings, indent=2))

    def put(self, url, data, headers, timeout):
        """Stands in for requests.Session.put: the blob service accepting a Put Blob."""
        assert headers["x-ms-blob-type"] == "BlockBlob"
        self.uploads.append((unquote(url.split("?")[0].rsplit("/", 1)[-1]), data))
        return SimpleNamespace(status_code=201)

    def deps(self) -> Dependencies:
        return Dependencies(
            client_factory=lambda sub: AutomationClient(self.arm.credential(), sub, polling_interval=0),
            resolver=lambda requirements: list(self.packages),
            uploader_factory=lambda sas_url: SasContainerUploader(sas_url, session=self),  # type: ignore[arg-type]
            sleep=self.clock.sleep,
            clock=self.clock.now,
            package_poll_seconds=0,
            job_poll_seconds=0,
            secret_store_factory=lambda url: KeyVaultSecrets(url, self.arm.credential()),
        )

    def run(self, *extra: str, account: str = ACCT, sas: bool = True):
        out, err = [], []
        argv = ["--subscription", SUB, "--resource-group", RG, "--automation-account", account, "--settings", str(self.settings_path)]
        argv += ["--project-dir", str(self.project), "--time-zone", "Europe/Amsterdam", *(["--wheel-container-sas", SAS] if sas else []), *extra]
        before = len(self.arm.calls)
        self.stamps = []  # (virtual time, line) of everything printed

        def show(line: str) -> None:
            self.stamps.append((self.clock.now(), line))
            out.append(line)

        code = main(argv, self.deps(), out=show, err=err.append)
        calls = self.arm.calls[before:]
        return code, "\n".join(out), "\n".join(err), [c for c in calls if c.method in WRITES]

    @property
    def account(self):
        return self.automation.account(SUB, RG, ACCT)
