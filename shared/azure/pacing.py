"""Client-side pacing of ARM writes, so a large sweep spends its time working, not in 429 back-off.

ARM throttles writes per subscription and principal with a token bucket (Learn,
azure-resource-manager/management/request-limits-and-throttling: 200 requests, refilled at 10
per second; reads: 250, 25 per second). Pacing a little under that keeps every request accepted
the first time; a 429 that happens anyway (another tool sharing the budget) is retried by
azure-core, honouring Retry-After.

Two ways to take a token: :meth:`TokenBucketPacer.acquire` blocks the calling thread;
:meth:`TokenBucketPacer.try_acquire` never blocks and says how long to wait instead, so one
dispatcher can serve many subscriptions without a throttled subscription holding up the others.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Dict


class TokenBucketPacer:
    """A blocking token bucket: :meth:`acquire` waits until a write may be sent."""

    def __init__(self, burst: float, per_second: float, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        if burst < 1 or per_second <= 0:
            raise ValueError("burst must be >= 1 and per_second > 0")
        self.burst = burst
        self.per_second = per_second
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._last = clock()
        self._lock = threading.Lock()
        self.waited = 0.0

    def try_acquire(self) -> float:
        """Take one token if one is available now and return 0.0; otherwise take nothing and
        return the seconds until one will be."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.per_second)
            self._last = now
            if self._tokens >= 1:
                self._tokens -= 1
                return 0.0
            return (1 - self._tokens) / self.per_second

    def acquire(self) -> float:
        """Take one token, sleeping as needed; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.burst, self._tokens + (now - self._last) * self.per_second)
                self._last = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    self.waited += waited
                    return waited
                delay = (1 - self._tokens) / self.per_second
            self._sleep(delay)
            waited += delay


class PerSubscriptionPacer:
    """One :class:`TokenBucketPacer` per subscription (ARM's limits are per subscription)."""

    def __init__(self, burst: float, per_second: float, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self._args = (burst, per_second, clock, sleep)
        self._pacers: Dict[str, TokenBucketPacer] = {}
        self._lock = threading.Lock()

    def pacer(self, subscription_id: str) -> TokenBucketPacer:
        """The subscription's bucket (created full on first use, like ARM's)."""
        key = subscription_id.lower()
        with self._lock:
            pacer = self._pacers.get(key)
            if pacer is None:
                pacer = self._pacers[key] = TokenBucketPacer(*self._args)
            return pacer

    def acquire(self, subscription_id: str) -> float:
        """Take one of the subscription's tokens, sleeping as needed; returns the seconds waited."""
        return self.pacer(subscription_id).acquire()

    def try_acquire(self, subscription_id: str) -> float:
        """Non-blocking :meth:`TokenBucketPacer.try_acquire` on the subscription's bucket."""
        return self.pacer(subscription_id).try_acquire()

    @property
    def waited(self) -> float:
        """Seconds all callers of :meth:`acquire` spent waiting, summed over subscriptions."""
        with self._lock:
            return sum(p.waited for p in self._pacers.values())
