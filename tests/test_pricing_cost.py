"""Cost avoided: the pure hours-until-morning rule, pricing a report against the fake Retail Prices
API (one lookup per size and region, unknown never zero, failures never fatal), and the stop sweep
putting money in its summary and its nightly card."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import List, Optional

import pytest

from fake_azure import Fault
from fake_azure.retail_prices import FakeRetailPrices
from fake_azure.teams import FakeTeamsWorkflow
from runbooks import stop_compute_instances
from shared.errors import SettingsError
from shared.models import EXEMPT, STOPPED, WOULD_STOP, PriceQuote
from shared.pricing.cost import CostEstimate, PriceLookups, avoided_text, hours_avoided, make_client, next_morning, price_results
from shared.report import CIResult, RunReport
from shared.sections import PricingSection
from shared.settings import encode_settings, settings_from_dict
from shared.teams.routing import iter_elements
from tests.cardcheck import assert_valid_card
from tests.conftest import SUB1, fast_stop_settings
from tests.summary import outcomes, summary_from

UTC = timezone.utc
# Linux pay-as-you-go list prices in fake_azure/data/retail_prices_catalog.json (westeurope).
DS3_V2_WESTEUROPE = 0.344
NC6S_V3_WESTEUROPE = 3.305


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def section(**values) -> PricingSection:
    return settings_from_dict({"pricing": values}).section("pricing", PricingSection)


# -- hours_avoided (pure) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "now, values, hours",
    [
        (at(2026, 11, 23, 19, 0), {}, 13.0),  # Monday evening -> Tuesday 08:00
        (at(2026, 11, 27, 19, 0), {}, 61.0),  # Friday evening -> Monday 08:00: the weekend counts
        (at(2026, 11, 27, 19, 0), {"weekdays_only": False}, 13.0),  # -> Saturday 08:00
        (at(2026, 11, 28, 10, 0), {}, 46.0),  # Saturday morning -> Monday 08:00
        (at(2026, 11, 24, 6, 0), {}, 2.0),  # before the morning -> the same morning
        (at(2026, 11, 24, 8, 0), {}, 24.0),  # exactly at the morning -> the next one
        (at(2026, 11, 23, 19, 0), {"horizon_hours": 4}, 4.0),  # capped
        (at(2026, 11, 23, 19, 0), {"horizon_hours": 20}, 13.0),  # the cap only ever shortens
        (at(2026, 11, 23, 19, 0), {"time_zone": "Europe/Berlin"}, 12.0),  # 08:00 CET is 07:00 UTC
        (at(2026, 11, 23, 19, 0), {"time_zone": "America/New_York", "morning_time": "07:30"}, 17.5),  # 07:30 EST is 12:30 UTC
    ],
)
def test_hours_avoided(now, values, hours):
    assert hours_avoided(now, section(**values)) == pytest.approx(hours)


def test_hours_avoided_counts_real_hours_across_daylight_saving_changes():
    berlin = section(time_zone="Europe/Berlin", weekdays_only=False)
    # Clocks go forward on 2026-03-29: 20:00 CET Saturday to 08:00 CEST Sunday is 11 real hours, not 12.
    assert hours_avoided(at(2026, 3, 28, 19, 0), berlin) == pytest.approx(11.0)
    assert next_morning(at(2026, 3, 28, 19, 0), berlin) == at(2026, 3, 29, 6, 0)
    # Clocks go back on 2026-10-25: 20:00 CEST Saturday to 08:00 CET Sunday is 13 real hours.
    assert hours_avoided(at(2026, 10, 24, 18, 0), berlin) == pytest.approx(13.0)


def test_hours_avoided_refuses_a_naive_now():
    with pytest.raises(ValueError, match="timezone-aware"):
        hours_avoided(datetime(2026, 11, 23, 19, 0), PricingSection())


@pytest.mark.parametrize(
    "values, message",
    [
        ({"currency": "usd"}, "currency"),
        ({"morning_time": "8:00"}, "morning_time"),
        ({"morning_time": "24:00"}, "morning_time"),
        ({"time_zone": "Mars/Olympus"}, "not a known time zone"),
        ({"horizon_hours": 0}, "horizon_hours"),
        ({"weekdays_only": "yes"}, "pricing.weekdays_only must be true or false"),
        ({"colour": "blue"}, "unknown setting"),
    ],
)
def test_bad_pricing_settings_are_refused_with_the_setting_named(values, message):
    with pytest.raises(SettingsError, match=message):
        section(**values)


# -- price_results against the fake Retail Prices API ------------------------------------------


def retail_client():
    """A real client on a plain session: the ``arm`` fixture's ``responses`` mock answers it."""
    return make_client(PricingSection())


class Item:
    """Any item with key, vm_size and location can be priced (CI records are)."""

    def __init__(self, name: str, vm_size: str = "STANDARD_DS3_V2", location: str = "westeurope"):
        self.key, self.vm_size, self.location = f"{SUB1}/rg-a/mlw-one/{name}", vm_size, location


def result(name: str, outcome: str = STOPPED, vm_size: str = "STANDARD_DS3_V2", location: str = "westeurope") -> CIResult:
    return CIResult(SUB1, "rg-a", "mlw-one", name, "Stopped", outcome, "stop confirmed", vm_size=vm_size, location=location)


def report_of(*results: CIResult, dry_run: bool = False) -> RunReport:
    report = RunReport("stop_compute_instances", dry_run, started_at=at(2026, 11, 23, 19, 0))
    report.results.extend(results)
    return report


def test_a_report_is_priced_per_ci_and_in_total_with_one_lookup_per_size_and_region(arm):
    prices = FakeRetailPrices(arm)
    report = report_of(
        result("ci-a"),
        result("ci-b", vm_size="Standard_DS3_v2"),  # same size, other spelling: no second lookup
        result("ci-gpu", vm_size="STANDARD_NC6S_V3"),
        result("ci-odd", vm_size="Standard_Nonexistent"),
        result("ci-exempt", outcome=EXEMPT),  # not stopped: nothing avoided
    )
    estimate = price_results(report, retail_client(), now=at(2026, 11, 23, 19, 0), section=PricingSection())

    first_pages = [r for r in prices.requests_seen if "$skip" not in r.query]
    assert len(first_pages) == 3  # DS3_v2, NC6s_v3, the unknown size
    assert estimate.hours == 13.0 and estimate.priced == 3 and estimate.unknown == 1
    assert estimate.items[f"{SUB1}/rg-a/mlw-one/ci-a"].amount.amount == pytest.approx(DS3_V2_WESTEUROPE * 13)
    expected_total = (2 * DS3_V2_WESTEUROPE + NC6S_V3_WESTEUROPE) * 13
    assert estimate.total.amount == pytest.approx(expected_total)

    by_name = {r.compute_instance: r for r in report.results}
    assert by_name["ci-gpu"].extra["cost"] == {
        "vm_size": "STANDARD_NC6S_V3",
        "region": "westeurope",
        "hours": 13.0,
        "hourly": NC6S_V3_WESTEUROPE,
        "amount": round(NC6S_V3_WESTEUROPE * 13, 2),
        "currency": "USD",
        "text": f"USD {NC6S_V3_WESTEUROPE * 13:.2f}",
    }
    assert by_name["ci-gpu"].detail == f"avoids ~USD {NC6S_V3_WESTEUROPE * 13:.2f}; stop confirmed"
    # unknown is shown as unknown, never as zero
    assert by_name["ci-odd"].extra["cost"]["amount"] is None and by_name["ci-odd"].extra["cost"]["text"] == "unknown"
    assert by_name["ci-odd"].detail == "avoided cost unknown (no price); stop confirmed"
    assert "cost" not in by_name["ci-exempt"].extra and by_name["ci-exempt"].detail == "stop confirmed"

    total = report.extra["cost_avoided"]
    assert total["total"] == round(expected_total, 2) and total["priced"] == 3 and total["unknown"] == 1
    assert total["until"] == "2026-11-24T08:00:00Z" and total["text"] == f"USD {expected_total:.2f} + 1 unknown"
    text = report.extra["cost_avoided_text"]
    assert text.startswith(f"Estimated cost avoided: USD {expected_total:.2f} + 1 unknown (4 compute instances, 13.0 h each")
    assert text.endswith("; price unknown for 1")


def test_a_dry_run_report_says_what_a_real_run_would_avoid(arm):
    FakeRetailPrices(arm)
    report = report_of(result("ci-a", outcome=WOULD_STOP), dry_run=True)
    price_results(report, retail_client(), now=at(2026, 11, 23, 19, 0), section=PricingSection())
    assert report.results[0].detail.startswith(f"would avoid ~USD {DS3_V2_WESTEUROPE * 13:.2f}")
    assert report.extra["cost_avoided_text"].startswith("Estimated cost a real run would avoid: ")


def test_prices_in_another_currency(arm):
    FakeRetailPrices(arm)
    eur = PricingSection(currency="EUR")
    estimate = price_results([Item("ci-a")], make_client(eur), now=at(2026, 11, 23, 19, 0), section=eur)
    assert estimate.currency == "EUR" and estimate.total.currency == "EUR"
    assert estimate.total.amount == pytest.approx(round(DS3_V2_WESTEUROPE * 0.92, 6) * 13)


def test_when_every_price_fails_the_total_is_unknown_not_zero(arm):
    FakeRetailPrices(arm)
    arm.inject(Fault(500, method="GET", path_contains="/api/retail/prices", times=None))
    report = report_of(result("ci-a"), result("ci-b", vm_size="STANDARD_NC6S_V3"))
    estimate = price_results(report, retail_client(), now=at(2026, 11, 23, 19, 0), section=PricingSection())
    assert estimate.priced == 0 and estimate.unknown == 2
    assert report.extra["cost_avoided"]["total"] is None and report.extra["cost_avoided"]["text"] == "unknown"
    assert "Estimated cost avoided: unknown" in report.extra["cost_avoided_text"]


class SlowClient:
    """Stands in for RetailPriceClient: one size answers at once, the other hangs."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls: List[str] = []
        self._lock = threading.Lock()

    def hourly_price(self, vm_size: str, region: str) -> Optional[PriceQuote]:
        with self._lock:
            self.calls.append(vm_size)
        if vm_size == "slow":
            self.release.wait(10)
            return None
        return PriceQuote(vm_size, region, "USD", 1.0, "meter", "2026-01-01")


def test_a_slow_lookup_is_bounded_and_left_unknown():
    client = SlowClient()
    fast_section = PricingSection(lookup_timeout_seconds=0.3)
    items = [Item("ci-a", vm_size="fast"), Item("ci-b", vm_size="slow"), Item("ci-c", vm_size="fast")]
    started = time.monotonic()
    try:
        estimate = price_results(items, client, now=at(2026, 11, 23, 19, 0), section=fast_section)
    finally:
        client.release.set()
    assert time.monotonic() - started < 2.0
    assert sorted(client.calls) == ["fast", "slow"]  # concurrent, each pair once
    assert estimate.priced == 2 and estimate.unknown == 1 and estimate.total.amount == pytest.approx(26.0)


class BrokenClient:
    def hourly_price(self, vm_size: str, region: str) -> Optional[PriceQuote]:
        raise RuntimeError("a client that breaks its never-raise promise")


def test_a_client_that_raises_leaves_the_price_unknown():
    estimate = price_results([Item("ci-a")], BrokenClient(), now=at(2026, 11, 23, 19, 0), section=PricingSection())
    assert estimate.unknown == 1 and estimate.total_text() == "unknown"


def test_lookups_started_early_are_reused():
    client = SlowClient()
    items = [Item("ci-a", vm_size="fast")]
    lookups = PriceLookups(client, items)
    estimate = price_results(items, lookups, now=at(2026, 11, 23, 19, 0), section=PricingSection())
    assert client.calls == ["fast"] and estimate.priced == 1


def test_avoided_text_for_nothing_priced_yet():
    empty = CostEstimate("USD", 13.0, at(2026, 11, 24, 8, 0))
    assert avoided_text(empty, dry_run=False) == "Estimated cost avoided: USD 0.00 (0 compute instances, 13.0 h each, until Tue 24 Nov 08:00 UTC, list prices)"


# -- the stop sweep, end to end ----------------------------------------------------------------


def seed(ml):
    ws = ml.add_workspace(SUB1, "rg-a", "mlw-one")
    ml.add_compute_instance(ws, "ci-cpu", state="Running", vm_size="STANDARD_DS3_V2")
    ml.add_compute_instance(ws, "ci-cpu2", state="Running", vm_size="STANDARD_DS3_V2")
    ml.add_compute_instance(ws, "ci-gpu", state="Running", vm_size="STANDARD_NC6S_V3")
    ml.add_compute_instance(ws, "ci-off", state="Stopped", vm_size="STANDARD_NC6S_V3")


def sweep(arm, now, capsys, teams=None, *extra, pricing=None):
    doc = {"scope": {"subscriptions": [SUB1]}, "stop": fast_stop_settings()}
    if teams is not None:
        doc["teams"] = {"workflow_url": teams.url}
    if pricing is not None:
        doc["pricing"] = pricing
    code = stop_compute_instances.main(["--settings-b64", encode_settings(doc), *extra], credential=arm.credential(), now=now)
    return code, summary_from(capsys.readouterr().out)


def test_the_sweep_reports_the_cost_avoided_per_ci_and_in_total_and_on_the_nightly_card(arm, ml, now, capsys):
    FakeRetailPrices(arm)
    teams = FakeTeamsWorkflow(arm)
    seed(ml)
    code, summary = sweep(arm, now, capsys, teams)  # Monday 19:00 UTC: 13 h until Tuesday 08:00
    assert code == 0 and outcomes(summary)["mlw-one/ci-gpu"] == "stopped"
    costs = {r["compute_instance"]: r["extra"].get("cost") for r in summary["results"]}
    assert costs["ci-gpu"]["amount"] == round(NC6S_V3_WESTEUROPE * 13, 2) and costs["ci-off"] is None
    expected = (2 * DS3_V2_WESTEUROPE + NC6S_V3_WESTEUROPE) * 13
    assert summary["cost_avoided"]["total"] == round(expected, 2) and summary["cost_avoided"]["unknown"] == 0
    card = teams.cards[-1]
    assert_valid_card(card)
    assert any(f"USD {expected:.2f}" in t for t in texts(card))
    # Routine "stopped" CIs are one line of names on the card (short on a phone); the per-CI cost is in the report above.
    assert any(t.startswith("\u2705 stopped (") for t in texts(card)) and any("ci-gpu" in t for t in texts(card))


def test_a_failing_prices_api_never_fails_the_sweep(arm, ml, now, capsys):
    seed(ml)  # no prices API registered at all: every lookup is a connection error
    code, summary = sweep(arm, now, capsys)
    assert code == 0 and summary["counts"] == {"already_stopped": 1, "stopped": 3}
    assert summary["cost_avoided"]["unknown"] == 3 and summary["cost_avoided"]["total"] is None


def test_pricing_can_be_switched_off(arm, ml, now, capsys):
    prices = FakeRetailPrices(arm)
    seed(ml)
    code, summary = sweep(arm, now, capsys, pricing={"enabled": False})
    assert code == 0 and "cost_avoided" not in summary and not prices.requests_seen


def test_a_bad_pricing_section_is_a_usage_error_before_any_call(arm, ml, now, capsys):
    seed(ml)
    code, summary = sweep(arm, now, capsys, pricing={"currency": "dollars"})
    assert code == 2 and "pricing" in summary["error"] and arm.count() == 0


def texts(card) -> List[str]:
    return [e["text"] for e in iter_elements(card) if isinstance(e.get("text"), str)]
