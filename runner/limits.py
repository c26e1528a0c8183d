"""Pacing and capping requests the way Twilio limits them.

Three separate knobs, as Twilio has three separate limits (../shared/twilio-api.md §9):

* requests in flight per account (Twilio's 20429) and optionally per product: capacity limiters;
* actions per second per conversation (message/participant deletes) and per Service
  (conversation deletes): a keyed pacer that spaces requests evenly, so no burst ever exceeds
  the scope's rate;
* an optional request rate per product: aiolimiter with a burst of a tenth of a second's worth,
  because a full second's burst lets every worker out at once and then starves them in
  lock-step against a server with a small bucket.

A 429 pauses the whole scope it most likely came from: the conversation or Service for scoped
deletes, the product otherwise. Nothing is sent to a paused scope before its Retry-After.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
from aiolimiter import AsyncLimiter

from runner.backoff import jittered
from runner.catalog import Product

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class ProductLimit:
    """An optional request rate (req/s), burst and in-flight cap for one product host."""

    rate: float | None = None
    burst: int | None = None
    concurrency: int | None = None


class KeyedPacer:
    """Spaces requests of each key ``1/rate`` apart, and honours per-key pauses.

    Each caller reserves the next free slot before it sleeps, so concurrent callers of one key
    get successive slots instead of all waking at the same instant.
    """

    def __init__(self, rate: float, clock: Clock) -> None:
        self._interval = 1.0 / rate
        self._clock = clock
        self._next: dict[str, float] = {}
        self._paused: dict[str, float] = {}
        self._calls = 0

    async def wait(self, key: str) -> None:
        """Return when a request of ``key`` may be sent."""
        while True:
            now = self._clock()
            start = max(now, self._next.get(key, now), self._paused.get(key, now))
            self._next[key] = start + self._interval
            if start > now:
                await anyio.sleep(start - now)
            if self._clock() >= self._paused.get(key, 0.0):
                break
        self._calls += 1
        if self._calls % 4096 == 0:
            self._sweep()

    def pause(self, key: str, until: float) -> None:
        """Send nothing for ``key`` before ``until`` (monotonic seconds)."""
        self._paused[key] = max(until, self._paused.get(key, 0.0))

    def _sweep(self) -> None:
        # Keys of finished conversations would otherwise accumulate for the whole run.
        horizon = self._clock() - 5.0
        self._next = {k: t for k, t in self._next.items() if t > horizon}
        self._paused = {k: t for k, t in self._paused.items() if t > horizon}


class Limits:
    """Every limit of one run, shared by all workers and pollers."""

    def __init__(
        self,
        *,
        concurrency: int,
        per_conversation_rate: float,
        per_service_rate: float,
        products: dict[Product, ProductLimit],
        rng: random.Random,
        clock: Clock | None = None,
    ) -> None:
        self._clock: Clock = clock or anyio.current_time
        self._rng = rng
        self._account = anyio.CapacityLimiter(concurrency)
        self._product_caps: dict[Product, anyio.CapacityLimiter] = {}
        self._product_rates: dict[Product, AsyncLimiter] = {}
        for product, limit in products.items():
            if limit.concurrency:
                self._product_caps[product] = anyio.CapacityLimiter(limit.concurrency)
            if limit.rate:
                # A small bucket: bursts of `burst` (default a tenth of a second's worth).
                burst = limit.burst or max(1, round(limit.rate / 10))
                self._product_rates[product] = AsyncLimiter(burst, burst / limit.rate)
        self._scoped = {
            "conversation": KeyedPacer(per_conversation_rate, self._clock),
            "service": KeyedPacer(per_service_rate, self._clock),
        }
        self._product_paused: dict[Product, float] = {}

    @asynccontextmanager
    async def slot(self, product: Product, key: str | None) -> AsyncIterator[None]:
        """Hold the right to send one request of ``product`` in scope ``key``."""
        await self._wait_product_pause(product)
        if key is not None:
            await self._pacer(key).wait(key)
        rate = self._product_rates.get(product)
        if rate is not None:
            await rate.acquire()
        cap = self._product_caps.get(product)
        async with self._account:
            if cap is None:
                yield
            else:
                async with cap:
                    yield

    def throttled(self, product: Product, key: str | None, wait: float) -> None:
        """Record a 429: pause the scope it most likely came from for ``wait`` seconds + jitter."""
        until = self._clock() + jittered(wait, self._rng)
        if key is not None:
            self._pacer(key).pause(key, until)
        else:
            self._product_paused[product] = max(until, self._product_paused.get(product, 0.0))

    async def _wait_product_pause(self, product: Product) -> None:
        # Sleeping to a deadline (which a later 429 may push back) is the point here; an Event
        # would need a timer task per pause to set it.
        while (until := self._product_paused.get(product, 0.0)) > self._clock():  # noqa: ASYNC110
            await anyio.sleep(until - self._clock())

    def _pacer(self, key: str) -> KeyedPacer:
        return self._scoped[key.partition(":")[0]]
