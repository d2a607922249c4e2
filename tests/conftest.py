"""Shared fixtures: the fake Azure control plane installed under the real SDKs."""

from __future__ import annotations

import os
import sys
from datetime import datetime, timezone

import pytest
import responses

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from fake_azure import FakeArmServer  # noqa: E402
from fake_azure.ml import FakeMachineLearning  # noqa: E402

SUB1 = "11111111-1111-4111-8111-111111111111"
SUB2 = "22222222-2222-4222-8222-222222222222"
TENANT = "99999999-9999-4999-8999-999999999999"


@pytest.fixture
def arm():
    """A FakeArmServer intercepting all HTTP (anything else fails with ConnectionError)."""
    server = FakeArmServer()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        server.install(mock)
        yield server


@pytest.fixture
def ml(arm):
    """The fake Azure ML provider with fast operations (50 ms)."""
    return FakeMachineLearning(arm, stop_seconds=0.05, start_seconds=0.05, create_seconds=0.05)


@pytest.fixture
def now():
    return datetime(2026, 11, 23, 19, 0, tzinfo=timezone.utc)


def fast_stop_settings(**stop):
    """A ``stop`` settings section that confirms quickly (for end-to-end tests)."""
    return {"confirm_interval_seconds": 0.02, "confirm_timeout_seconds": 10, **stop}
