"""Retail VM prices: the client (shared.pricing.client) against recorded-shape pages and the fake API.

tests/data/retail_prices_page{1,2}.json follow the documented response (Learn, "Azure Retail Prices
REST API overview"): envelope BillingCurrency/CustomerEntityId/CustomerEntityType/Items/NextPageLink/
Count, items as in the documented example. Values are illustrative and the page size is shrunk to 4
so that paging is exercised. The Reservation row is there although the query asks for
priceType 'Consumption', to prove the client filters on its own as well.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from responses import matchers

from fake_azure.retail_prices import EXCHANGE_RATES, FakeRetailPrices, load_default_catalog, parse_filter
from fake_azure.server import FakeArmServer, Fault
from shared.models import Money, PriceQuote, estimate_cost, hours_until
from shared.pricing.client import API_VERSION, RETAIL_PRICES_URL, RetailPriceClient, choose_linux_payg, normalize_vm_size

DATA = Path(__file__).parent / "data"
PRICES_RE = re.compile(r"https://prices\.azure\.com(:443)?/api/retail/prices.*")
LOGGER = "shared.pricing.client"


def _page(name: str) -> Dict[str, Any]:
    return json.loads((DATA / f"retail_prices_{name}.json").read_text(encoding="utf-8"))


def _warnings(caplog: pytest.LogCaptureFixture) -> List[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


def _item(sku: str = "Standard_D4s_v3", region: str = "westeurope", price: float = 0.22, **over: Any) -> Dict[str, Any]:
    base = {
        "currencyCode": "USD",
        "tierMinimumUnits": 0.0,
        "retailPrice": price,
        "unitPrice": price,
        "armRegionName": region,
        "location": "EU West",
        "effectiveStartDate": "2024-03-01T00:00:00Z",
        "meterId": "00000000-0000-5000-8000-000000000001",
        "meterName": "D4s v3",
        "productId": "DZH318Z0TEST",
        "skuId": "DZH318Z0TEST/0001",
        "productName": "Virtual Machines DSv3 Series",
        "skuName": "D4s v3",
        "serviceName": "Virtual Machines",
        "serviceId": "DZH313Z7MMC8",
        "serviceFamily": "Compute",
        "unitOfMeasure": "1 Hour",
        "type": "Consumption",
        "isPrimaryMeterRegion": True,
        "armSkuName": sku,
    }
    base.update(over)
    return base


@pytest.fixture
def mock():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def _fake(mock: responses.RequestsMock, catalog: Optional[List[Dict[str, Any]]] = None, page_size: int = 3, latency: float = 0.0):
    server = FakeArmServer(latency=latency)
    fake = FakeRetailPrices(server, catalog, page_size=page_size)
    server.install(mock)
    return server, fake


# -- the recorded pages, through `responses` directly -----------------------------------------
def test_recorded_pages_pick_the_latest_linux_consumption_price(mock):
    page1, page2 = _page("page1"), _page("page2")
    odata = "serviceName eq 'Virtual Machines' and armRegionName eq 'eastus' and armSkuName eq 'Standard_D4s_v3' and priceType eq 'Consumption'"
    mock.add(
        "GET",
        RETAIL_PRICES_URL,
        json=page1,
        match=[matchers.query_param_matcher({"api-version": API_VERSION, "currencyCode": "'USD'", "$filter": odata})],
    )
    mock.add("GET", page1["NextPageLink"], json=page2)

    quote = RetailPriceClient().hourly_price("STANDARD_D4S_V3", "eastus")

    # Page 2 holds the Linux row (0.192, 2023) and an older one (0.2, 2019); Windows, Spot,
    # Low Priority, Reservation and DevTest rows are all cheaper or dearer distractors.
    assert quote == PriceQuote("Standard_D4s_v3", "eastus", "USD", 0.192, "D4s v3", "2023-02-01T00:00:00Z")
    assert [c.request.url.split("?")[0] for c in mock.calls] == [RETAIL_PRICES_URL, "https://prices.azure.com:443/api/retail/prices"]


def test_choose_linux_payg_rejects_each_distractor_on_its_own():
    linux = _item(price=0.22)
    distractors = [
        _item(price=0.4, productName="Virtual Machines DSv3 Series Windows"),
        _item(price=0.03, skuName="D4s v3 Spot", meterName="D4s v3 Spot"),
        _item(price=0.04, skuName="D4s v3 Low Priority", meterName="D4s v3 Low Priority"),
        _item(price=1200.0, type="Reservation", reservationTerm="1 Year"),
        _item(price=0.22, type="DevTestConsumption"),
        _item(price=0.25, productName="DSv3 Series Cloud Services"),
        _item(price=5.0, unitOfMeasure="1/Month"),
        _item(price=0.1, armSkuName="Standard_D8s_v3"),
    ]
    for distractor in distractors:
        assert choose_linux_payg([distractor], "Standard_D4s_v3") is None, distractor
    assert choose_linux_payg([*distractors, linux], "standard_d4s_v3") is linux


def test_latest_effective_start_date_wins_whatever_the_order():
    old = _item(price=0.25, effectiveStartDate="2021-01-01T00:00:00Z")
    new = _item(price=0.22, effectiveStartDate="2024-03-01T00:00:00Z")
    assert choose_linux_payg([new, old], "Standard_D4s_v3") is new
    assert choose_linux_payg([old, new], "Standard_D4s_v3") is new


# -- the fake: every size and region of the default catalog -----------------------------------
def test_default_catalog_quotes_sit_between_spot_and_windows(mock):
    _, fake = _fake(mock)
    client = RetailPriceClient()
    catalog = load_default_catalog()
    pairs = sorted({(i["armSkuName"], i["armRegionName"]) for i in catalog})
    assert len(pairs) == 15
    for sku, region in pairs:
        rows = [i for i in catalog if i["armSkuName"] == sku and i["armRegionName"] == region]
        quote = client.hourly_price(sku.upper(), region)
        assert quote is not None, (sku, region)
        windows = [i["retailPrice"] for i in rows if i["productName"].endswith("Windows")]
        cheap = [i["retailPrice"] for i in rows if i["skuName"].endswith(("Spot", "Low Priority"))]
        reserved = [i["retailPrice"] for i in rows if i["type"] == "Reservation"]
        assert windows and cheap and reserved
        assert max(cheap) < quote.hourly < min(windows) < min(reserved)
    assert all(r.query["api-version"] == API_VERSION for r in fake.requests_seen)


# -- caching ---------------------------------------------------------------------------------
def test_repeated_lookups_make_one_http_call(mock):
    server, fake = _fake(mock, page_size=100)
    client = RetailPriceClient()
    first = client.hourly_price("STANDARD_DS3_V2", "westeurope")
    for spelling in ("Standard_DS3_v2", "standard_ds3_v2", "STANDARD_DS3_V2"):
        assert client.hourly_price(spelling, "West Europe") == first
    assert first is not None and len(fake.requests_seen) == 1
    # Another region is another key; a new client has its own cache.
    client.hourly_price("STANDARD_DS3_V2", "eastus")
    RetailPriceClient().hourly_price("STANDARD_DS3_V2", "westeurope")
    assert len(fake.requests_seen) == 3


def test_concurrent_lookups_of_one_key_make_one_http_call(mock):
    # Latency keeps the first request in flight while the other seven threads arrive.
    server, fake = _fake(mock, page_size=100, latency=0.2)
    client = RetailPriceClient()
    barrier = threading.Barrier(8)
    results: List[Optional[PriceQuote]] = [None] * 8

    def look(index: int) -> None:
        barrier.wait()
        results[index] = client.hourly_price("STANDARD_NC6S_V3", "northeurope")

    threads = [threading.Thread(target=look, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(fake.requests_seen) == 1
    assert results[0] is not None and all(r == results[0] for r in results)


def test_concurrent_lookups_of_different_keys_run_in_parallel(mock):
    server, fake = _fake(mock, page_size=100, latency=0.3)
    client = RetailPriceClient()
    keys = [("STANDARD_DS3_V2", "eastus"), ("STANDARD_E4DS_V4", "eastus"), ("STANDARD_D4S_V3", "eastus"), ("STANDARD_NC6S_V3", "eastus")]
    started = datetime.now(timezone.utc)
    threads = [threading.Thread(target=client.hourly_price, args=key) for key in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    elapsed = (datetime.now(timezone.utc) - started).total_seconds()
    assert len(fake.requests_seen) == 4
    assert elapsed < 4 * 0.3  # serialised, they would take 1.2 s
    assert all(client.hourly_price(*key) is not None for key in keys)
    assert len(fake.requests_seen) == 4


# -- failures: None, one warning, cached as unknown, never raises ------------------------------
def _assert_unknown_once(client: RetailPriceClient, caplog, calls, size: str = "STANDARD_D4S_V3", region: str = "westeurope") -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    assert client.hourly_price(size, region) is None
    made = calls()
    assert client.hourly_price(size, region) is None
    assert calls() == made, "an unknown price must be cached for the run"
    warnings = _warnings(caplog)
    assert len(warnings) == 1 and "\n" not in warnings[0].getMessage()
    assert normalize_vm_size(size) in warnings[0].getMessage()


def test_connection_error(mock, caplog):
    mock.add("GET", PRICES_RE, body=requests.ConnectionError("connection reset"))
    _assert_unknown_once(RetailPriceClient(), caplog, lambda: len(mock.calls))
    assert "connection reset" in _warnings(caplog)[0].getMessage()


def test_server_error(mock, caplog):
    server, fake = _fake(mock)
    fault = server.inject(Fault(status=500, path_contains="/api/retail/prices", times=None))
    _assert_unknown_once(RetailPriceClient(), caplog, lambda: fault.hits)
    assert fault.hits == 1 and "HTTP 500" in _warnings(caplog)[0].getMessage()


def test_error_on_a_later_page(mock, caplog):
    page1 = _page("page1")
    mock.add("GET", RETAIL_PRICES_URL, json=page1)
    mock.add("GET", page1["NextPageLink"], status=503, body="busy")
    _assert_unknown_once(RetailPriceClient(), caplog, lambda: len(mock.calls), "STANDARD_D4S_V3", "eastus")
    assert len(mock.calls) == 2 and "HTTP 503" in _warnings(caplog)[0].getMessage()


@pytest.mark.parametrize(
    "body",
    ["{not json", "[]", '{"Items": null}', '{"Items": [], "NextPageLink": 7}'],
    ids=["malformed", "a-list", "items-null", "bad-next-link"],
)
def test_malformed_responses(mock, caplog, body):
    mock.add("GET", PRICES_RE, body=body, content_type="application/json")
    _assert_unknown_once(RetailPriceClient(), caplog, lambda: len(mock.calls))


def test_empty_items(mock, caplog):
    server, fake = _fake(mock, catalog=[])
    _assert_unknown_once(RetailPriceClient(), caplog, lambda: len(fake.requests_seen))
    assert "no Linux pay-as-you-go item" in _warnings(caplog)[0].getMessage()


def test_size_with_no_price(mock, caplog):
    server, fake = _fake(mock)
    _assert_unknown_once(RetailPriceClient(), caplog, lambda: len(fake.requests_seen), "STANDARD_M416MS_V2", "westeurope")
    assert fake.requests_seen[0].query["$filter"].count("Standard_M416ms_v2") == 1


def test_only_non_linux_rows(mock, caplog):
    rows = [_item(productName="Virtual Machines DSv3 Series Windows"), _item(skuName="D4s v3 Spot"), _item(type="Reservation")]
    server, fake = _fake(mock, catalog=rows)
    _assert_unknown_once(RetailPriceClient(), caplog, lambda: len(fake.requests_seen))


def test_too_many_pages(mock, caplog):
    rows = [_item(price=0.2 + i / 100, effectiveStartDate=f"2024-0{i + 1}-01T00:00:00Z") for i in range(5)]
    server, fake = _fake(mock, catalog=rows, page_size=1)
    _assert_unknown_once(RetailPriceClient(max_pages=3), caplog, lambda: len(fake.requests_seen))
    assert len(fake.requests_seen) == 3
    # Enough pages: the latest of the five rows.
    assert RetailPriceClient(max_pages=5).hourly_price("Standard_D4s_v3", "westeurope").hourly == pytest.approx(0.24)


def test_next_page_link_to_another_host_is_not_followed(mock, caplog):
    page = _page("page1")
    page["NextPageLink"] = "https://evil.example.com/api/retail/prices?$skip=4"
    mock.add("GET", PRICES_RE, json=page)
    _assert_unknown_once(RetailPriceClient(), caplog, lambda: len(mock.calls), "STANDARD_D4S_V3", "eastus")
    assert len(mock.calls) == 1


@pytest.mark.parametrize("size,region", [("Standard_D4s_v3' or armSkuName eq 'x", "eastus"), ("", "eastus"), ("Standard_D4s_v3", "west'europe")])
def test_bad_input_is_unknown_without_a_request(mock, caplog, size, region):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    assert RetailPriceClient().hourly_price(size, region) is None
    assert len(mock.calls) == 0 and len(_warnings(caplog)) == 1


# -- currency ----------------------------------------------------------------------------------
def test_currency_is_requested_and_quoted(mock):
    server, fake = _fake(mock)
    usd = RetailPriceClient().hourly_price("STANDARD_E4DS_V4", "westeurope")
    eur = RetailPriceClient(currency="eur").hourly_price("STANDARD_E4DS_V4", "westeurope")
    assert usd is not None and eur is not None
    assert (usd.currency, eur.currency) == ("USD", "EUR")
    assert eur.hourly == pytest.approx(usd.hourly * EXCHANGE_RATES["EUR"], abs=1e-6)
    assert [r.query["currencyCode"] for r in fake.requests_seen if "$skip" not in r.query] == ["'USD'", "'EUR'"]


def test_a_response_in_another_currency_is_unknown(mock, caplog):
    page = _page("page2")  # USD rows, whatever was asked
    mock.add("GET", PRICES_RE, json=page)
    _assert_unknown_once(RetailPriceClient(currency="GBP"), caplog, lambda: len(mock.calls), "STANDARD_D4S_V3", "eastus")
    assert "asked for GBP, got USD" in _warnings(caplog)[0].getMessage()


def test_currency_code_is_validated():
    with pytest.raises(ValueError):
        RetailPriceClient(currency="euro")


# -- normalize_vm_size ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "given,expected",
    [
        ("STANDARD_DS3_V2", "Standard_DS3_v2"),
        ("Standard_DS3_v2", "Standard_DS3_v2"),
        ("standard_nc6s_v3", "Standard_NC6s_v3"),
        ("Standard_NC6s_v3", "Standard_NC6s_v3"),
        ("STANDARD_E4DS_V4", "Standard_E4ds_v4"),
        ("STANDARD_NC24ADS_A100_V4", "Standard_NC24ads_A100_v4"),
        ("STANDARD_NC4AS_T4_V3", "Standard_NC4as_T4_v3"),
        ("STANDARD_E4-2DS_V4", "Standard_E4-2ds_v4"),
        ("STANDARD_DC8AS_CC_V5", "Standard_DC8as_cc_v5"),
        ("STANDARD_M128MS", "Standard_M128ms"),
        ("  Standard_D4s_v3 ", "Standard_D4s_v3"),
    ],
)
def test_normalize_vm_size(given, expected):
    assert normalize_vm_size(given) == expected
    assert normalize_vm_size(expected) == expected


@pytest.mark.parametrize("bad", ["", "   ", "D4s v3", "Standard_D4s_v3'", "Standard_D4s_v3)"])
def test_normalize_vm_size_rejects_non_sizes(bad):
    with pytest.raises(ValueError):
        normalize_vm_size(bad)


def test_upper_case_ml_size_finds_the_case_sensitive_price(mock):
    # The fake, like the 2023-01-01-preview API, compares filter values case-sensitively.
    server, fake = _fake(mock)
    assert RetailPriceClient().hourly_price("STANDARD_NC24ADS_A100_V4", "eastus") is not None
    assert "armSkuName eq 'Standard_NC24ads_A100_v4'" in fake.requests_seen[0].query["$filter"]


# -- estimate_cost, Money, hours_until -------------------------------------------------------------
def test_estimate_cost():
    quote = PriceQuote("Standard_D4s_v3", "eastus", "EUR", 0.2, "D4s v3", "2024-03-01T00:00:00Z")
    cost = estimate_cost(quote, 10.5)
    assert cost == Money(pytest.approx(2.1), "EUR")
    assert estimate_cost(quote, 0) == Money(0.0, "EUR")
    assert estimate_cost(None, 3) is None
    with pytest.raises(ValueError):
        estimate_cost(quote, -1)


def test_money_arithmetic_and_format():
    total = Money(10.0, "USD") + Money(2.3456, "USD")
    assert total.currency == "USD" and total.amount == pytest.approx(12.3456)
    assert total.format() == "USD 12.35"
    assert sum([Money(1.25, "EUR"), Money(2.5, "EUR")]) == Money(3.75, "EUR")
    assert Money(0, "GBP").format() == "GBP 0.00"
    with pytest.raises(ValueError, match="EUR"):
        Money(1.0, "USD") + Money(1.0, "EUR")
    with pytest.raises(TypeError):
        Money(1.0, "USD") + 1.0


def test_hours_until():
    now = datetime(2026, 3, 2, 18, 0, tzinfo=timezone.utc)
    assert hours_until(now, now + timedelta(hours=7, minutes=30)) == pytest.approx(7.5)
    assert hours_until(now, now - timedelta(hours=1)) == 0.0
    assert hours_until(now, now) == 0.0


# -- the fake itself -----------------------------------------------------------------------------------
def test_fake_evaluates_the_filter(mock):
    server, fake = _fake(mock, page_size=100)
    odata = "serviceName eq 'Virtual Machines' and armRegionName eq 'northeurope' and armSkuName eq 'Standard_E4ds_v4' and priceType eq 'Reservation'"
    body = requests.get(RETAIL_PRICES_URL, params={"api-version": API_VERSION, "$filter": odata}).json()
    assert body["Count"] == len(body["Items"]) == 1
    row = body["Items"][0]
    assert (row["armRegionName"], row["armSkuName"], row["type"], row["reservationTerm"]) == ("northeurope", "Standard_E4ds_v4", "Reservation", "1 Year")
    assert set(body) == {"BillingCurrency", "CustomerEntityId", "CustomerEntityType", "Items", "NextPageLink", "Count"}
    assert body["NextPageLink"] is None


def test_fake_filter_case_sensitivity_follows_api_version(mock):
    server, fake = _fake(mock, page_size=100)
    odata = "armRegionName eq 'eastus' and armSkuName eq 'standard_ds3_v2'"
    new = requests.get(RETAIL_PRICES_URL, params={"api-version": API_VERSION, "$filter": odata}).json()
    old = requests.get(RETAIL_PRICES_URL, params={"api-version": "2021-10-01-preview", "$filter": odata}).json()
    assert new["Items"] == [] and len(old["Items"]) == 5


def test_fake_pages_like_the_real_api(mock):
    server, fake = _fake(mock, page_size=2)
    odata = "armRegionName eq 'westeurope' and armSkuName eq 'Standard_D4s_v3'"
    url: Optional[str] = None
    seen: List[Dict[str, Any]] = []
    body = requests.get(RETAIL_PRICES_URL, params={"api-version": API_VERSION, "currencyCode": "'EUR'", "$filter": odata}).json()
    while True:
        seen.extend(body["Items"])
        assert body["Count"] == len(body["Items"]) <= 2
        url = body["NextPageLink"]
        if url is None:
            break
        parts = urlsplit(url)
        assert parts.netloc == "prices.azure.com:443" and "$skip=" in parts.query
        assert parse_qs(parts.query)["$filter"] == [odata] and parse_qs(parts.query)["currencyCode"] == ["'EUR'"]
        body = requests.get(url).json()
    assert len(seen) == 5 and len({i["skuId"] for i in seen}) == 5
    assert {i["currencyCode"] for i in seen} == {"EUR"}
    assert [r.query.get("$skip") for r in fake.requests_seen] == [None, "2", "4"]


@pytest.mark.parametrize(
    "odata",
    ["armSkuName eq 'a' or armSkuName eq 'b'", "contains(meterName, 'Spot')", "retailPrice eq '1'", "armSkuName eq 'a' and"],
)
def test_fake_rejects_filters_it_does_not_evaluate(mock, odata):
    _fake(mock)
    response = requests.get(RETAIL_PRICES_URL, params={"$filter": odata})
    assert response.status_code == 400


def test_parse_filter_unescapes_quotes():
    assert parse_filter("productName eq 'O''Brien' and priceType eq 'Consumption'") == [("productName", "O'Brien"), ("type", "Consumption")]
