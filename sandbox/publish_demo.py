"""``python -m sandbox publish``: the real publish.py against the fake Automation account, as an admin sees it.

Three runs of ``deployment.cli.main`` (what ``publish.py`` runs), each printed in full:

1. a first deploy: the Python 3.10 packages the runbooks need (this environment's installed dependency
   closure of requirements-runtime.txt, standing in for pip's resolution against PyPI; their sizes are
   installed sizes, larger than the wheels) imported under the fake's limit of 5 per 30 s on a virtual clock, the secrets stored in a fake Key Vault, the five
   runbooks proven by one self-check job each (the real runbooks, run by the fake Automation with a
   managed identity), then schedules, links and webhooks;
2. the same command again: nothing changes;
3. a settings change (stop concurrency and a rotated shared secret): job schedules recreated, webhook
   parameters patched, one secret written, the runbooks proven again.

Then it checks what an admin relies on: exit codes, every self-check passed, no write on the re-run,
no secret in any job schedule, webhook or job parameter, and the runbooks on the new environment.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.metadata
import json
import re
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Set

import responses
from azure.mgmt.automation import AutomationClient

from deployment.cli import Dependencies, main
from deployment.model import PackageSpec
from deployment.packaging import SasContainerUploader
from deployment.secrets import KeyVaultSecrets
from fake_azure import FakeArmServer
from fake_azure.automation import FakeAutomation
from fake_azure.clock import VirtualClock
from fake_azure.keyvault import FakeKeyVault
from fake_azure.ml import FakeMachineLearning
from fake_azure.platform import PESSIMISTIC
from fake_azure.teams import FakeTeamsWorkflow
from sandbox.fleet import sandbox_settings, seed_fleet

ROOT = Path(__file__).resolve().parents[1]
SUB, RG, ACCT = "33333333-3333-4333-8333-333333333333", "rg-automation", "aa-governance"
PRINCIPAL = "aaaaaaaa-0000-4000-8000-0000000000aa"
SHARED_SECRET = "sandbox-shared-secret-0123456789abcdef"
RUNBOOKS = ("create_compute_instance", "handle_exemption_request", "start_compute_instances", "stop_compute_instances", "warn_before_stop")




def runtime_closure(requirements: Path = ROOT / "requirements-runtime.txt") -> List[PackageSpec]:
    """The installed dependency closure of the runtime requirements (extras and markers that do not apply
    to Linux/CPython 3.10 left out), as the wheels publish.py would import. Offline: names and versions
    come from this environment, the files are named as PyPI would serve them."""
    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    env = {**default_environment(), "extra": "", "sys_platform": "linux", "platform_system": "Linux", "python_version": "3.10"}
    todo = [Requirement(line.split("#")[0].strip()).name for line in requirements.read_text().splitlines() if line.strip() and not line.startswith(("#", "-"))]
    seen: Dict[str, importlib.metadata.Distribution] = {}
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in seen:
            continue
        dist = importlib.metadata.distribution(name)
        seen[name] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate(env):
                todo.append(req.name)
    specs = []
    for name, dist in sorted(seen.items()):
        version = dist.version
        filename = f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
        size = sum(f.size or 0 for f in dist.files or [])
        digest = base64.b16encode(f"{name}=={version}".encode()).decode().lower().ljust(64, "0")[:64]
        specs.append(PackageSpec(name, version, filename, digest, f"https://files.pythonhosted.org/packages/sandbox/{filename}", size=size or None))
    return specs


class _Blob:
    """Stands in for the blob container behind the wheel SAS URL (Put Blob answers 201)."""

    def put(self, url: str, data: bytes, headers: dict, timeout: float) -> Any:
        class _R:
            status_code = 201

        return _R()


def run_publish(extra_args: List[str]) -> int:
    clock = VirtualClock()
    server = FakeArmServer()
    automation = FakeAutomation(server, platform=PESSIMISTIC, import_rate_limited=True, rate_clock=clock.now)
    automation.add_account(SUB, RG, ACCT, principal_id=PRINCIPAL)
    ml = FakeMachineLearning(server)
    teams = FakeTeamsWorkflow(server)
    # Key Vault Secrets User for the account's identity, Secrets Officer for the publisher ("admin"): nobody else.
    vault = FakeKeyVault(server, "kv-governance", readers={PRINCIPAL, "admin"}, writers={"admin"})
    seed_fleet(ml, datetime.now(timezone.utc))
    packages = runtime_closure()
    automation.require("*", [p.name for p in packages])  # a job fails with ModuleNotFoundError if one is missing
    deps = Dependencies(
        client_factory=lambda sub: AutomationClient(server.credential(), sub, polling_interval=0),
        resolver=lambda requirements: list(packages),
        uploader_factory=lambda sas: SasContainerUploader(sas, session=_Blob()),  # type: ignore[arg-type]
        sleep=clock.sleep,
        clock=clock.now,
        package_poll_seconds=20,
        job_poll_seconds=15,
        secret_store_factory=lambda url: KeyVaultSecrets(url, server.credential()),
    )
    settings = sandbox_settings(teams.url)
    settings["teams"]["shared_secret"] = SHARED_SECRET
    settings["exemption"] = {"require_shared_secret": "X-CI-Governance-Secret"}
    settings["secrets"] = {"key_vault": vault.url}
    problems: List[str] = []
    with tempfile.TemporaryDirectory() as tmp, responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        server.install(mock)
        path = Path(tmp) / "settings.json"
        argv = [
            "--subscription", SUB, "--resource-group", RG, "--automation-account", ACCT, "--settings", str(path),
            "--stop-time", "19:00", "--time-zone", "Europe/Amsterdam",
            "--wheel-container-sas", "https://stsandbox.blob.core.windows.net/wheels?sv=2022-11-02&sp=rcw&sig=sandbox", *extra_args,
        ]  # fmt: skip

        def step(title: str, expect_writes: Optional[bool]) -> str:
            path.write_text(json.dumps(settings, indent=2))
            print("=" * 100)
            shown = ["<settings.json>" if a == str(path) else ("<container SAS URL>" if "sig=" in a else a) for a in argv]
            print(f"{title}\n$ python publish.py " + " ".join(shown))
            print("-" * 100)
            lines: List[str] = []
            before, started = len(server.calls), time.monotonic()
            virtual = clock.t

            def out(line: str) -> None:
                lines.append(line)
                print(line)

            code = main(argv, deps, out=out, err=out)
            writes = [c for c in server.calls[before:] if c.method in ("PUT", "POST", "PATCH", "DELETE") and "/jobs/" not in c.path]
            print("-" * 100)
            took = f"{time.monotonic() - started:.1f} s, {clock.t - virtual:.0f} s on the virtual clock"
            print(f"exit code {code}; {len(writes)} write(s) besides the self-check jobs; {took}")
            if code != 0:
                problems.append(f"{title}: exit code {code}")
            if expect_writes is False and writes:
                problems.append(f"{title}: expected no write, saw {[c.method + ' ' + c.path for c in writes]}")
            return "\n".join(lines)

        first = step("1. First deploy into an empty Automation account", True)
        passed = [n for n in RUNBOOKS if f"self-check {n}: passed" in first]
        if len(passed) != len(RUNBOOKS):
            problems.append(f"first deploy: self-checks passed for {passed} only")
        if not re.search(r"\d+/\d+ imports sent; next:", first):
            problems.append("first deploy: no import progress line")
        second = step("2. The same command again", False)
        if "Nothing to do" not in second:
            problems.append("re-run: expected 'Nothing to do'")
        settings["stop"]["concurrency"] = 4
        settings["teams"]["shared_secret"] = SHARED_SECRET + "-rotated"
        third = step("3. A settings change: stop.concurrency 4 and a rotated shared secret", True)
        if third.count(": passed:") != len(RUNBOOKS) or "value changed" not in third:
            problems.append("settings change: expected the secret written and every self-check passed")
        problems += _secrets_in_job_inputs(automation.account(SUB, RG, ACCT), {SHARED_SECRET, SHARED_SECRET + "-rotated", teams.url.split("sig=")[-1]})
        if vault.value("ci-governance-teams-shared-secret") != SHARED_SECRET + "-rotated":
            problems.append("the rotated shared secret is not in Key Vault")
        if {who for _, who in vault.reads} != {PRINCIPAL, "admin"}:
            problems.append(f"Key Vault was read by {sorted({who for _, who in vault.reads})}, not by the account's identity and the publisher only")
    print("=" * 100)
    if problems:
        print("Sandbox publish FAILED:\n  " + "\n  ".join(problems))
        return 1
    print(
        f"Sandbox publish passed: {len(packages) + 1} packages imported within the limit, {len(RUNBOOKS)} runbooks proven twice by self-check jobs,"
        " an unchanged re-run wrote nothing, and no secret is in any job input."
    )
    return 0


def _secrets_in_job_inputs(acct: Any, secrets: Set[str]) -> List[str]:
    problems = []
    sources = [("job schedule", js.parameters) for js in acct.job_schedules.values()]
    sources += [("webhook", w.parameters or {}) for w in acct.webhooks.values()] + [("job", j.parameters) for j in acct.jobs.values()]
    for kind, params in sources:
        decoded = " ".join(params.values())
        for token in decoded.split():
            with contextlib.suppress(ValueError):
                decoded += base64.b64decode(token, validate=True).decode("utf-8", "replace")
        if any(secret in decoded for secret in secrets):
            problems.append(f"a {kind} parameter carries a secret")
    return problems
