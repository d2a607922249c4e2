"""What stopping a compute instance saves: list price x the hours it would otherwise have run.

Settings section ``pricing``::

    {"enabled": true, "currency": "USD", "morning_time": "08:00", "time_zone": "Europe/Berlin",
     "weekdays_only": true, "horizon_hours": null, "lookup_timeout_seconds": 20}

Assumption: a CI stopped tonight would otherwise have run until the next morning (``morning_time``
in ``time_zone``; with ``weekdays_only``, the next Monday-to-Friday morning, so a Friday-night stop
counts the weekend), capped at ``horizon_hours`` when set. The hourly price is the Linux
pay-as-you-go list price of the CI's VM size in its region (:mod:`shared.pricing.client`). A price that
cannot be looked up is *unknown*: counted and shown as unknown, never as zero, and never a failure.
"""

from __future__ import annotations

import logging
import re
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from shared.models import STOPPED, WOULD_STOP, Money, PriceQuote, hours_until
from shared.report import CIResult, RunReport
from shared.sections import PricingSection
from shared.times import format_instant, load_zone

if TYPE_CHECKING:  # the estimate types are pure; only make_client needs the HTTP client
    from shared.pricing.client import RetailPriceClient

log = logging.getLogger(__name__)

_HH_MM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
# Distinct (size, region) pairs are few (a fleet uses a handful of sizes); this bounds the sockets anyway.
LOOKUP_CONCURRENCY = 8
# One HTTP exchange with the prices API may take this long; a lookup follows at most a few pages.
REQUEST_TIMEOUT_SECONDS = 10.0
MAX_PAGES = 5

PricePair = Tuple[str, str]  # (vm_size, region) as the CI reports them


# -- pure: how long a stopped CI would otherwise have run -------------------------------------


def next_morning(now: datetime, section: PricingSection) -> datetime:
    """The first ``morning_time`` in ``time_zone`` strictly after ``now`` (a weekday one if
    ``weekdays_only``), as an aware UTC instant."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    zone = load_zone(section.time_zone)
    hour, minute = section.morning
    day = now.astimezone(zone).date()
    for offset in range(8):  # a week always holds a morning after now (even weekdays only)
        d = day + timedelta(days=offset)
        if section.weekdays_only and d.weekday() >= 5:
            continue
        candidate = datetime(d.year, d.month, d.day, hour, minute, tzinfo=zone).astimezone(timezone.utc)
        if candidate > now:
            return candidate
    raise AssertionError("unreachable: no morning within a week")  # pragma: no cover


def avoided_until(now: datetime, section: PricingSection) -> datetime:
    """Until when a CI stopped at ``now`` is assumed to have kept running: the next morning, or the horizon if sooner."""
    until = next_morning(now, section)
    if section.horizon_hours is not None:
        until = min(until, now + timedelta(hours=section.horizon_hours))
    return until


def hours_avoided(now: datetime, section: PricingSection) -> float:
    """Hours of running a stop at ``now`` avoids (pure; aware UTC arithmetic, so DST changes count right)."""
    return hours_until(now.astimezone(timezone.utc), avoided_until(now, section))


# -- estimates --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CICost:
    """The estimated cost of one CI running ``hours`` more; ``quote`` None means the price is unknown.

    The one cost type of the product: the sweep's "avoided" cost, the warning's overnight cost and an
    exemption's cost (which also knows ``until``, the ``currency`` asked for and, when the price is
    unknown, ``unknown_reason`` in words for the card).
    """

    key: str
    vm_size: str
    region: str
    hours: float
    quote: Optional[PriceQuote]
    until: Optional[datetime] = None
    currency: str = ""  # the currency asked for (the quote's when known)
    unknown_reason: str = ""

    @property
    def amount(self) -> Optional[Money]:
        return Money(self.quote.hourly * self.hours, self.quote.currency) if self.quote else None

    @property
    def text(self) -> str:
        """``"USD 4.47"`` or ``"unknown"``."""
        money = self.amount
        return money.format() if money else "unknown"

    @property
    def approx_text(self) -> str:
        """``"~USD 4.47"`` or ``"unknown (no price)"``: for notes next to other text."""
        return f"~{self.text}" if self.quote else "unknown (no price)"

    @property
    def estimate_text(self) -> str:
        """``"≈ USD 12.34 until Tue 24 Nov 07:00 UTC at USD 1.03/h (Standard_NC6s_v3, westeurope)"``, or why it is unknown."""
        money = self.amount
        if money is None or self.quote is None:
            return f"estimated cost unknown: {self.unknown_reason or 'no price'}"
        hourly = Money(self.quote.hourly, self.quote.currency)
        until = f" until {self.until.astimezone(timezone.utc).strftime('%a %d %b %H:%M UTC')}" if self.until else ""
        return f"\u2248 {money.format()}{until} at {hourly.format()}/h ({self.quote.vm_size}, {self.quote.region})"

    def to_dict(self) -> Dict[str, Any]:
        """For the JSON summary; a cost with ``until`` (an exemption's) also gives ``until`` and ``unknown_reason``."""
        money = self.amount
        out: Dict[str, Any] = {
            "vm_size": self.vm_size,
            "region": self.region,
            "hours": round(self.hours, 2),
            "hourly": self.quote.hourly if self.quote else None,
            "amount": round(money.amount, 2) if money else None,
            "currency": self.quote.currency if self.quote else (self.currency or None),
            "text": self.text,
        }
        if self.until is not None:
            out.update(
                {"until": format_instant(self.until), "text": self.estimate_text, "unknown_reason": None if money else (self.unknown_reason or "no price")}
            )
        return out


@dataclass(frozen=True)
class CostEstimate:
    """Costs of a set of CIs over one period (``hours``, ending ``until``)."""

    currency: str
    hours: float
    until: datetime
    items: Dict[str, CICost] = field(default_factory=dict)

    @property
    def total(self) -> Money:
        """Sum over the CIs whose price is known (the unknown ones are counted by :attr:`unknown`)."""
        return sum((c.amount for c in self.items.values() if c.amount is not None), Money(0.0, self.currency))

    @property
    def priced(self) -> int:
        return sum(1 for c in self.items.values() if c.quote is not None)

    @property
    def unknown(self) -> int:
        return len(self.items) - self.priced

    def total_text(self) -> str:
        """``"USD 35.20"``, ``"USD 35.20 + 1 unknown"`` or ``"unknown"`` (never a zero that hides unknowns)."""
        if not self.items:
            return self.total.format()
        if not self.priced:
            return "unknown"
        return self.total.format() + (f" + {self.unknown} unknown" if self.unknown else "")

    def to_dict(self) -> Dict[str, Any]:
        return {
            "currency": self.currency,
            "total": round(self.total.amount, 2) if self.priced or not self.items else None,
            "priced": self.priced,
            "unknown": self.unknown,
            "hours": round(self.hours, 2),
            "until": format_instant(self.until),
            "text": self.total_text(),
        }


def avoided_text(estimate: CostEstimate, dry_run: bool) -> str:
    """The one line the nightly card and the report show, e.g. "Estimated cost avoided: USD 35.20 (…)"."""
    n = len(estimate.items)
    lead = "Estimated cost a real run would avoid" if dry_run else "Estimated cost avoided"
    # Read by people on the card and in the job output: a short UTC time, not ISO 8601 (the summary's cost_avoided.until has that).
    period = f"{estimate.hours:.1f} h each, until {estimate.until.astimezone(timezone.utc):%a %d %b %H:%M} UTC"
    text = f"{lead}: {estimate.total_text()} ({n} compute instance{'s' if n != 1 else ''}, {period}, list prices)"
    if estimate.unknown:
        text += f"; price unknown for {estimate.unknown}"
    return text


# -- I/O-light: price lookups -----------------------------------------------------------------


def make_client(section: PricingSection, session: Any = None) -> RetailPriceClient:
    from shared.pricing.client import RetailPriceClient

    """A prices client for ``section``: bounded per request and per lookup."""
    return RetailPriceClient(session, currency=section.currency, timeout=min(REQUEST_TIMEOUT_SECONDS, section.lookup_timeout_seconds), max_pages=MAX_PAGES)


def _pair(item: Any) -> PricePair:
    return (str(getattr(item, "vm_size", "") or ""), str(getattr(item, "location", "") or ""))


def _pair_key(pair: PricePair) -> PricePair:
    # The client normalises spelling itself; this only avoids submitting one lookup twice.
    return (pair[0].strip().lower(), pair[1].replace(" ", "").strip().lower())


class PriceLookups:
    """Concurrent lookups of the distinct (size, region) pairs of ``items``, started at once.

    Start it early (before the stops) and read :meth:`quotes` later: the lookups overlap the
    sweep's own work. Lookups still running when :meth:`quotes` times out count as unknown.
    """

    def __init__(self, client: RetailPriceClient, items: Iterable[Any], concurrency: int = LOOKUP_CONCURRENCY):
        pairs: Dict[PricePair, PricePair] = {}
        for item in items:
            pairs.setdefault(_pair_key(_pair(item)), _pair(item))
        self._futures: Dict[PricePair, Future[Optional[PriceQuote]]] = {}
        if pairs:
            executor = ThreadPoolExecutor(max_workers=min(concurrency, len(pairs)), thread_name_prefix="price")
            self._futures = {key: executor.submit(client.hourly_price, *pair) for key, pair in pairs.items()}
            executor.shutdown(wait=False)  # never block the run on a slow lookup; threads end with their request

    def quotes(self, timeout: float) -> Dict[PricePair, Optional[PriceQuote]]:
        """Quotes by normalised (size, region); None for a failed or unfinished lookup."""
        done, pending = wait(list(self._futures.values()), timeout=timeout)
        if pending:
            log.warning("%d price lookup(s) did not finish within %.0f s: those prices are left unknown.", len(pending), timeout)
        # hourly_price never raises; should a client break that promise, its price is just unknown.
        return {key: (f.result() if f in done and f.exception() is None else None) for key, f in self._futures.items()}


def _priceable(report_or_items: Union[RunReport, Sequence[Any]]) -> List[Any]:
    if isinstance(report_or_items, RunReport):
        return [r for r in report_or_items.results if r.outcome in (STOPPED, WOULD_STOP)]
    return list(report_or_items)


def price_results(
    report_or_items: Union[RunReport, Sequence[Any]],
    client: Union[RetailPriceClient, PriceLookups],
    *,
    now: datetime,
    section: PricingSection,
) -> CostEstimate:
    """Estimate what running on from ``now`` would cost, per CI and in total.

    ``report_or_items`` is a sweep report (its stopped / would-stop CIs are priced, and the report
    is annotated: ``CIResult.extra["cost"]`` per CI, ``extra["cost_avoided"]`` and
    ``extra["cost_avoided_text"]`` on the report) or any items with ``key``, ``vm_size`` and
    ``location`` (CI records; nothing is annotated). ``client`` may be :class:`PriceLookups`
    started earlier for these items. Never raises for a price that cannot be found.
    """
    items = _priceable(report_or_items)
    lookups = client if isinstance(client, PriceLookups) else PriceLookups(client, items)
    quotes = lookups.quotes(section.lookup_timeout_seconds)
    hours = hours_avoided(now, section)
    costs = {}
    for item in items:
        size, region = _pair(item)
        costs[item.key] = CICost(item.key, size, region, hours, quotes.get(_pair_key((size, region))))
    estimate = CostEstimate(section.currency, hours, avoided_until(now, section), costs)
    if isinstance(report_or_items, RunReport):
        annotate_report(report_or_items, estimate)
    return estimate


def annotate_report(report: RunReport, estimate: CostEstimate) -> None:
    """Put ``estimate`` into the report: per CI (``extra["cost"]`` and a short note in its detail) and in total."""
    verb = "would avoid" if report.dry_run else "avoids"
    for result in report.results:
        cost = estimate.items.get(result.key)
        if cost is not None:
            _annotate_result(result, cost, verb)
    report.extra["cost_avoided"] = estimate.to_dict()
    report.extra["cost_avoided_text"] = avoided_text(estimate, report.dry_run)


def _annotate_result(result: CIResult, cost: CICost, verb: str) -> None:
    result.extra["cost"] = cost.to_dict()
    note = f"{verb} {cost.approx_text}" if cost.quote else "avoided cost unknown (no price)"
    # In front, so that the card's clipped detail still shows it.
    result.detail = f"{note}; {result.detail}"
