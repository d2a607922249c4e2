"""Hourly prices of Azure ML compute instance VM sizes, from the public Azure Retail Prices API.

Source: Microsoft Learn, "Azure Retail Prices REST API overview",
https://learn.microsoft.com/en-us/rest/api/cost-management/retail-prices/azure-retail-prices
- endpoint ``https://prices.azure.com/api/retail/prices``, no credentials;
- ``api-version=2023-01-01-preview``; from that version on, ``$filter`` *values are case sensitive*;
- ``$filter`` is OData ``field eq 'value'`` joined by ``and`` over documented fields (serviceName,
  armRegionName, armSkuName, priceType, ...); ``currencyCode='EUR'`` is a query parameter;
- response ``{"BillingCurrency", "CustomerEntityId", "CustomerEntityType", "Items": [...],
  "NextPageLink", "Count"}``; at most 1,000 items a page and ``NextPageLink`` (null on the last page)
  links to the next one. Each item carries currencyCode, retailPrice, unitPrice, armRegionName,
  effectiveStartDate, meterName, productName, skuName, unitOfMeasure, type, armSkuName, ...

Billing assumption: Azure ML bills a compute instance as the VM it runs on (no Azure ML surcharge),
so its hourly cost is the Linux pay-as-you-go price of its VM size in its region. Disks, networking,
reservations, savings plans and negotiated discounts are not counted: this is a list-price estimate.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any, Dict, Iterable, List, Optional, Tuple
from urllib.parse import urlsplit

import requests

from shared.models import PriceQuote

logger = logging.getLogger(__name__)

RETAIL_PRICES_URL = "https://prices.azure.com/api/retail/prices"
API_VERSION = "2023-01-01-preview"

_SIZE_CHARS = re.compile(r"^[A-Za-z0-9_-]+$")
_REGION_CHARS = re.compile(r"^[a-z0-9]+$")
_CURRENCY_CHARS = re.compile(r"^[A-Z]{3}$")
# The size part of an ARM name: family letters, vCPUs, optional constrained-core count, feature letters.
_SIZE_CORE = re.compile(r"^(?P<family>[A-Za-z]+)(?P<cpus>\d+)(?P<constrained>-\d+)?(?P<features>[A-Za-z]*)$")
# Suffix tokens that ARM spells in lower case (version "v3", confidential "cc"); the rest (A100, T4, H100) upper.
_LOWER_TOKENS = re.compile(r"^(v\d+|cc)$", re.IGNORECASE)
_TITLE_TOKENS = {"standard": "Standard", "basic": "Basic", "promo": "Promo"}
# Meters that are not the on-demand Linux VM price (seen in live responses alongside it).
_EXCLUDED_PRODUCT_WORDS = ("windows", "cloud services")
_EXCLUDED_SKU_WORDS = ("spot", "low priority")






def normalize_vm_size(size: str) -> str:
    """ARM's spelling of a VM size, e.g. ``"STANDARD_DS3_V2"`` -> ``"Standard_DS3_v2"``.

    Azure ML reports sizes in any case, but the Retail Prices API (2023-01-01-preview) compares
    ``$filter`` values case-sensitively, so the query needs ARM's casing. Raises ValueError on
    anything that is not a size name (it goes into an OData filter).
    """
    text = (size or "").strip()
    if not text or not _SIZE_CHARS.match(text):
        raise ValueError(f"not a VM size: {size!r}")
    tokens = text.split("_")
    out: List[str] = []
    for index, token in enumerate(tokens):
        lowered = token.lower()
        if lowered in _TITLE_TOKENS:
            out.append(_TITLE_TOKENS[lowered])
            continue
        core = _SIZE_CORE.match(token)
        if index == 1 and core:
            out.append(core["family"].upper() + core["cpus"] + (core["constrained"] or "") + core["features"].lower())
        elif _LOWER_TOKENS.match(token):
            out.append(lowered)
        else:
            out.append(token.upper())
    return "_".join(out)


def normalize_region(region: str) -> str:
    """ARM's region name, e.g. ``"West Europe"`` -> ``"westeurope"``; ValueError if it is not one."""
    text = (region or "").replace(" ", "").strip().lower()
    if not _REGION_CHARS.match(text):
        raise ValueError(f"not an Azure region: {region!r}")
    return text






def choose_linux_payg(items: Iterable[Any], arm_sku_name: str) -> Optional[Dict[str, Any]]:
    """The Linux pay-as-you-go item for ``arm_sku_name`` among Retail Prices items, or None.

    Drops Windows and Cloud Services products, Spot and Low Priority meters, non-``Consumption``
    types (Reservation rows say "1 Hour" but price the whole term; DevTestConsumption needs a
    Dev/Test subscription) and units other than "1 Hour". Of what is left, the latest
    ``effectiveStartDate`` wins (ISO-8601 UTC strings, which sort as text); then a primary meter.
    """
    wanted = arm_sku_name.lower()
    candidates = [item for item in items if isinstance(item, dict) and _is_linux_payg(item, wanted)]
    if not candidates:
        return None
    return max(candidates, key=lambda i: (str(i.get("effectiveStartDate") or ""), bool(i.get("isPrimaryMeterRegion"))))


def _is_linux_payg(item: Dict[str, Any], wanted_sku: str) -> bool:
    price = item.get("retailPrice")
    if isinstance(price, bool) or not isinstance(price, (int, float)) or price < 0:
        return False
    product = str(item.get("productName") or "").lower()
    sku = f"{item.get('skuName') or ''} {item.get('meterName') or ''}".lower()
    return (
        str(item.get("armSkuName") or "").lower() == wanted_sku
        and item.get("type") == "Consumption"
        and item.get("unitOfMeasure") == "1 Hour"
        and not any(word in product for word in _EXCLUDED_PRODUCT_WORDS)
        and not any(word in sku for word in _EXCLUDED_SKU_WORDS)
    )


class _LookupFailed(Exception):
    """Why one price lookup gave no price; becomes the warning line."""


class RetailPriceClient:
    """Looks up hourly VM prices, once per (size, region, currency) for the life of the client.

    Thread-safe: concurrent lookups of one key wait for a single HTTP exchange; different keys
    proceed in parallel. A lookup that fails returns None, logs one warning and is remembered
    as unknown, so a run neither retries it nor repeats the warning.
    """

    def __init__(
        self,
        session: Optional[requests.Session] = None,
        *,
        currency: str = "USD",
        base_url: str = RETAIL_PRICES_URL,
        timeout: float = 10,
        max_pages: int = 20,
    ) -> None:
        currency = currency.strip().upper()
        if not _CURRENCY_CHARS.match(currency):
            raise ValueError(f"not a currency code: {currency!r}")
        self._session = session if session is not None else requests.Session()
        self.currency = currency
        self.base_url = base_url
        self.timeout = timeout
        self.max_pages = max_pages
        self._cache: Dict[Tuple[str, str, str], Optional[PriceQuote]] = {}
        self._key_locks: Dict[Tuple[str, str, str], threading.Lock] = {}
        self._lock = threading.Lock()

    def hourly_price(self, vm_size: str, region: str) -> Optional[PriceQuote]:
        """The Linux pay-as-you-go price of ``vm_size`` in ``region``, or None if unknown. Never raises."""
        try:
            size, arm_region = normalize_vm_size(vm_size), normalize_region(region)
        except ValueError as exc:
            logger.warning("Retail price unknown for %r in %r: %s.", vm_size, region, exc)
            return None
        key = (size.lower(), arm_region, self.currency)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            # Another thread may have finished this key while we waited.
            with self._lock:
                if key in self._cache:
                    return self._cache[key]
            quote = self._lookup(size, arm_region)
            with self._lock:
                self._cache[key] = quote
        return quote

    def _lookup(self, size: str, region: str) -> Optional[PriceQuote]:
        try:
            item = choose_linux_payg(self._fetch_items(size, region), size)
            if item is None:
                raise _LookupFailed("no Linux pay-as-you-go item in the response")
            currency = str(item.get("currencyCode") or self.currency)
            if currency != self.currency:
                raise _LookupFailed(f"asked for {self.currency}, got {currency}")
            return PriceQuote(
                vm_size=size,
                region=region,
                currency=currency,
                hourly=float(item["retailPrice"]),
                meter=str(item.get("meterName") or ""),
                effective_from=str(item.get("effectiveStartDate") or ""),
            )
        except (_LookupFailed, requests.RequestException, ValueError) as exc:
            # ValueError covers malformed JSON (requests' JSONDecodeError is one).
            reason = str(exc) or type(exc).__name__
            logger.warning("Retail price unknown for %s in %s (%s): %s; its cost is left out of this run.", size, region, self.currency, reason)
            return None

    def _fetch_items(self, size: str, region: str) -> List[Any]:
        odata = f"serviceName eq 'Virtual Machines' and armRegionName eq '{region}' and armSkuName eq '{size}' and priceType eq 'Consumption'"
        params: Optional[Dict[str, str]] = {"api-version": API_VERSION, "currencyCode": f"'{self.currency}'", "$filter": odata}
        url: Optional[str] = self.base_url
        items: List[Any] = []
        pages = 0
        while url:
            if pages >= self.max_pages:
                raise _LookupFailed(f"still more pages after {self.max_pages}")
            self._check_same_host(url)
            response = self._session.get(url, params=params, timeout=self.timeout)
            if response.status_code != 200:
                raise _LookupFailed(f"HTTP {response.status_code} from {urlsplit(url).hostname}")
            body = response.json()
            if not isinstance(body, dict) or not isinstance(body.get("Items"), list):
                raise _LookupFailed("response has no Items list")
            items.extend(body["Items"])
            next_link = body.get("NextPageLink")
            if next_link is not None and not isinstance(next_link, str):
                raise _LookupFailed("NextPageLink is not a URL")
            # NextPageLink already carries every query parameter (docs: follow it as is).
            url, params, pages = next_link or None, None, pages + 1
        return items

    def _check_same_host(self, url: str) -> None:
        # Never follow a NextPageLink off the prices host (it may carry ":443", which is the same host).
        if urlsplit(url).hostname != urlsplit(self.base_url).hostname:
            raise _LookupFailed(f"NextPageLink points to another host: {urlsplit(url).hostname}")
