"""Fake Azure Retail Prices API: ``GET https://prices.azure.com/api/retail/prices`` (no credentials).

Behaviour follows Microsoft Learn, "Azure Retail Prices REST API overview",
https://learn.microsoft.com/en-us/rest/api/cost-management/retail-prices/azure-retail-prices :
- ``$filter``: OData ``field eq 'value'`` clauses joined by ``and``, over the documented filter fields
  (``priceType`` filters the item's ``type``). Values compare case-sensitively from api-version
  2023-01-01-preview on, case-insensitively before. Anything else (or, contains(), ...) is answered
  with 400 here, because the client never sends it;
- ``currencyCode='EUR'`` converts prices with the illustrative rates in :data:`EXCHANGE_RATES`;
- ``meterRegion='primary'`` keeps primary meters only;
- pages of ``page_size`` items (the real API: 1,000) with ``NextPageLink`` spelled like the docs'
  example (``https://prices.azure.com:443/...&$skip=N``, every other parameter kept), null on the
  last page; ``Count`` is the number of items on the page.
The 400 body for a bad request is not documented; this fake answers the ARM error shape.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import quote

from fake_azure.server import FakeArmServer, FakeRequest, FakeResponse, arm_error

RETAIL_HOST = "https://prices.azure.com"
RETAIL_PATH = "/api/retail/prices"
CATALOG_PATH = Path(__file__).parent / "data" / "retail_prices_catalog.json"
CASE_SENSITIVE_FROM = "2023-01-01-preview"

# Illustrative conversion rates from USD (the catalog's currency); not Microsoft's.
EXCHANGE_RATES: Dict[str, float] = {"USD": 1.0, "EUR": 0.92, "GBP": 0.79, "CHF": 0.88, "JPY": 150.0}

# Documented filter fields, by lower-case name -> item key.
FILTER_FIELDS: Dict[str, str] = {
    "armregionname": "armRegionName",
    "location": "location",
    "meterid": "meterId",
    "metername": "meterName",
    "productid": "productId",
    "skuid": "skuId",
    "productname": "productName",
    "skuname": "skuName",
    "servicename": "serviceName",
    "serviceid": "serviceId",
    "servicefamily": "serviceFamily",
    "pricetype": "type",
    "armskuname": "armSkuName",
}

_CLAUSE = re.compile(r"\s*(?P<field>[A-Za-z]+)\s+eq\s+'(?P<value>(?:[^']|'')*)'\s*")
_AND = re.compile(r"and\b", re.IGNORECASE)


def load_default_catalog() -> List[Dict[str, Any]]:
    """The items of ``fake_azure/data/retail_prices_catalog.json`` (illustrative prices)."""
    with open(CATALOG_PATH, encoding="utf-8") as handle:
        return list(json.load(handle)["Items"])


def parse_filter(text: str) -> List[Tuple[str, str]]:
    """``"a eq 'x' and b eq 'y'"`` -> ``[("a", "x"), ("b", "y")]`` (item keys); ValueError otherwise."""
    clauses: List[Tuple[str, str]] = []
    pos = 0
    while True:
        match = _CLAUSE.match(text, pos)
        if not match:
            raise ValueError(f"unsupported $filter at offset {pos}: {text[pos:pos + 40]!r}")
        field = FILTER_FIELDS.get(match["field"].lower())
        if field is None:
            raise ValueError(f"field {match['field']!r} cannot be filtered on")
        clauses.append((field, match["value"].replace("''", "'")))
        pos = match.end()
        if pos == len(text):
            return clauses
        joiner = _AND.match(text, pos)
        if not joiner:
            raise ValueError(f"unsupported $filter at offset {pos}: {text[pos:pos + 40]!r}")
        pos = joiner.end()


@dataclass
class RetailRequest:
    """One request the fake answered: its URL and decoded query parameters."""

    url: str
    query: Dict[str, str]


class FakeRetailPrices:
    """Serves the Retail Prices API from ``catalog`` (default: the illustrative catalog file)."""

    def __init__(self, server: FakeArmServer, catalog: Optional[List[Dict[str, Any]]] = None, page_size: int = 3):
        if page_size < 1:
            raise ValueError("page_size must be >= 1")
        self.catalog: List[Dict[str, Any]] = list(catalog) if catalog is not None else load_default_catalog()
        self.page_size = page_size
        self.requests_seen: List[RetailRequest] = []
        self._lock = threading.Lock()
        # NextPageLink carries ":443" like the real one; the server treats it as the same host.
        server.route("GET", re.escape(RETAIL_PATH), self._prices, host=RETAIL_HOST, authenticated=False)

    def _prices(self, request: FakeRequest) -> FakeResponse:
        query = dict(request.query)
        with self._lock:
            self.requests_seen.append(RetailRequest(request.url, query))
        try:
            clauses = parse_filter(query["$filter"]) if query.get("$filter", "").strip() else []
            skip = int(query.get("$skip", "0"))
            if skip < 0:
                raise ValueError("$skip must be >= 0")
        except ValueError as exc:
            return arm_error(400, "BadRequest", str(exc))
        currency = query.get("currencyCode", "USD").strip("'").upper()
        if currency not in EXCHANGE_RATES:
            return arm_error(400, "BadRequest", f"currency {currency!r} is not supported by the fake")

        case_sensitive = query.get("api-version", "") >= CASE_SENSITIVE_FROM
        primary_only = query.get("meterRegion", "").strip("'").lower() == "primary"
        matched = [
            item
            for item in self.catalog
            if _matches(item, clauses, case_sensitive) and (not primary_only or item.get("isPrimaryMeterRegion"))
        ]
        page = [_in_currency(item, currency) for item in matched[skip : skip + self.page_size]]
        more = skip + self.page_size < len(matched)
        body = {
            "BillingCurrency": currency,
            "CustomerEntityId": "Default",
            "CustomerEntityType": "Retail",
            "Items": page,
            "NextPageLink": self._next_link(query, skip + self.page_size) if more else None,
            "Count": len(page),
        }
        return FakeResponse(200, body)

    @staticmethod
    def _next_link(query: Dict[str, str], skip: int) -> str:
        # Docs' example: https://prices.azure.com:443/api/retail/prices?$filter=serviceName%20eq%20%27Virtual%20Machines%27&$skip=1000
        params = [f"{key}={quote(value, safe='')}" for key, value in query.items() if key != "$skip"]
        return f"{RETAIL_HOST}:443{RETAIL_PATH}?" + "&".join([*params, f"$skip={skip}"])


def _matches(item: Dict[str, Any], clauses: List[Tuple[str, str]], case_sensitive: bool) -> bool:
    for field, value in clauses:
        actual = str(item.get(field, ""))
        same = actual == value if case_sensitive else actual.lower() == value.lower()
        if not same:
            return False
    return True


def _in_currency(item: Dict[str, Any], currency: str) -> Dict[str, Any]:
    out = copy.deepcopy(item)
    rate = EXCHANGE_RATES[currency]
    out["currencyCode"] = currency
    for key in ("retailPrice", "unitPrice"):
        if isinstance(out.get(key), (int, float)):
            out[key] = round(out[key] * rate, 6)
    for plan in out.get("savingsPlan") or []:
        for key in ("retailPrice", "unitPrice"):
            if isinstance(plan.get(key), (int, float)):
                plan[key] = round(plan[key] * rate, 6)
    return out
