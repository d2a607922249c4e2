"""A realistic fleet to show every kind of CI the sweep meets, seeded relative to 'now'."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Dict, List

from fake_azure.ml import FakeMachineLearning
from shared.tags import TagNames
from shared.times import format_instant

SUB_RESEARCH = "8f1c2d3e-4a5b-4c6d-8e7f-901234567890"
SUB_PRODUCT = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


@dataclass(frozen=True)
class Expected:
    """What the sweep should do with a seeded CI (the sandbox checks its report against this)."""

    workspace: str
    name: str
    outcome: str


def seed_fleet(ml: FakeMachineLearning, now: datetime, names: TagNames = TagNames()) -> List[Expected]:
    """Create 2 subscriptions, 4 workspaces and a dozen CIs; return the expected outcomes."""
    vision = ml.add_workspace(SUB_RESEARCH, "rg-ml-research", "mlw-vision", "westeurope")
    nlp = ml.add_workspace(SUB_RESEARCH, "rg-ml-research", "mlw-nlp", "westeurope")
    forecast = ml.add_workspace(SUB_PRODUCT, "rg-ml-product", "mlw-forecasting", "northeurope")
    fraud = ml.add_workspace(SUB_PRODUCT, "rg-ml-product", "mlw-fraud", "northeurope")

    def user(n: int) -> tuple:
        return (f"00000000-0000-4000-8000-{n:012d}", TENANT)

    def exempt(until: datetime, by: str, reason: str) -> Dict[str, str]:
        return {names.exempt_until: format_instant(until), names.exempt_by: by, names.exempt_reason: reason}

    seeds = [
        (vision, "ci-alice-gpu", dict(state="Running", vm_size="STANDARD_NC6S_V3", assigned_user=user(1), tags={"team": "vision"}), "stopped"),
        (vision, "ci-bob", dict(state="Stopped", vm_size="STANDARD_DS3_V2", assigned_user=user(2)), "already_stopped"),
        (
            vision,
            "ci-carol-train",
            dict(
                state="Running",
                vm_size="STANDARD_NC24ADS_A100_V4",
                assigned_user=user(3),
                tags=exempt(now + timedelta(hours=10), "carol@contoso.com", "48h fine-tuning run, checkpoint at 06:00"),
            ),
            "exempt",
        ),
        (
            nlp,
            "ci-dave",
            dict(
                state="Running", vm_size="STANDARD_E4DS_V4", assigned_user=user(4), tags=exempt(now - timedelta(hours=3), "dave@contoso.com", "demo yesterday")
            ),
            "stopped",
        ),
        (
            nlp,
            "ci-erin",
            dict(
                state="Running", vm_size="STANDARD_DS3_V2", assigned_user=user(5), tags={names.exempt_until: "next friday", names.exempt_by: "erin@contoso.com"}
            ),
            "stopped",
        ),
        (nlp, "ci-frank-job", dict(state="JobRunning", vm_size="STANDARD_DS3_V2", assigned_user=user(6)), "skipped"),
        (forecast, "ci-grace", dict(state="Running", vm_size="STANDARD_D4S_V3", assigned_user=user(7)), "stopped"),
        (forecast, "ci-heidi", dict(state="Starting", vm_size="STANDARD_DS3_V2", assigned_user=user(8)), "skipped"),
        (forecast, "ci-ivan", dict(state="SetupFailed", vm_size="STANDARD_DS3_V2", assigned_user=user(9)), "skipped"),
        (fraud, "ci-judy", dict(state="Running", vm_size="STANDARD_E4DS_V4", assigned_user=user(10), tags={"cost-center": "CC-4711"}), "stopped"),
        (fraud, "ci-shared-demo", dict(state="Running", vm_size="STANDARD_DS3_V2", assigned_user=user(11)), "skipped"),  # excluded by policy
        (fraud, "ci-mallory", dict(state="Stopping", vm_size="STANDARD_DS3_V2", assigned_user=user(12)), "already_stopped"),
    ]
    expected = []
    for ws, name, fields, outcome in seeds:
        ml.add_compute_instance(ws, name, **fields)
        expected.append(Expected(ws.name, name, outcome))
    ml.add_compute_instance(forecast, "cpu-cluster", compute_type="AmlCompute", vm_size="STANDARD_DS3_V2")  # not a CI: ignored
    return expected


def sandbox_settings(workflow_url: str) -> dict:
    """Settings the sandbox runs with, shaped exactly like a production settings file."""
    return {
        "scope": {"subscriptions": [SUB_RESEARCH, SUB_PRODUCT]},
        "teams": {"workflow_url": workflow_url},
        "stop": {"exclude": ["mlw-fraud/ci-shared-*"], "confirm_interval_seconds": 0.2, "confirm_timeout_seconds": 30},
    }
