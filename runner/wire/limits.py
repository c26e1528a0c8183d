"""Pacing and capping requests the way Twilio limits them.

Three separate knobs, as Twilio has three separate limits (../shared/twilio-api.md §9):

* requests in flight per account (Twilio's 20429) and optionally per product: capacity limiters;
* actions per second per conversation (message/participant deletes) and per Service
  (conversation deletes): a keyed pacer that spaces requests evenly, so no burst ever exceeds
  the scope's rate;
* an optional request rate per product: aiolimiter with a burst of a twentieth of a second's worth,
  because a full second's burst lets every worker out at once and then starves them in
  lock-step against a server with a small bucket.

A 429 pauses the whole scope it most likely came from: the conversation or Service for scoped
deletes, the product otherwise. Nothing is sent to a paused scope before its Retry-After.

On top of these, each product is paced by a :class:`runner.wire.adaptive.RateController` that learns
the rate the server allows from its 429s (below the configured rate, if there is one), and the
account's in-flight cap shrinks when ``Twilio-Concurrent-Requests`` shows a 429 was about
concurrency. A 429 of a scoped delete teaches the product's controller only when its scope was
not itself busy: a conversation sending near its own 30/s was most likely throttled for that.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import anyio
from aiolimiter import AsyncLimiter

from runner.kinds.catalog import Product
from runner.values import ProductLimit
from runner.wire.adaptive import AdaptiveSettings, ConcurrencyController, RateController, Verdict
from runner.wire.backoff import jittered
from runner.wire.slots import Slots

Clock = Callable[[], float]


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
        self._hot: dict[str, bool] = {}
        self._calls = 0

    async def wait(self, key: str) -> None:
        """Return when a request of ``key`` may be sent."""
        now = self._clock()
        # Back to back with the previous request of this key: the key runs at its full rate.
        self._hot[key] = self._next.get(key, now - 2 * self._interval) >= now - self._interval
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

    def busy(self, key: str) -> bool:
        """Whether ``key`` has been sending at (about) its full rate just now."""
        return self._hot.get(key, False)

    def pause(self, key: str, until: float) -> None:
        """Send nothing for ``key`` before ``until`` (monotonic seconds)."""
        self._paused[key] = max(until, self._paused.get(key, 0.0))

    def _sweep(self) -> None:
        # Keys of finished conversations would otherwise accumulate for the whole run.
        horizon = self._clock() - 5.0
        self._next = {k: t for k, t in self._next.items() if t > horizon}
        self._paused = {k: t for k, t in self._paused.items() if t > horizon}
        self._hot = {k: h for k, h in self._hot.items() if k in self._next}


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
        adaptive: AdaptiveSettings | None = None,
    ) -> None:
        # The event loop's own clock (asyncio's loop.time() is time.monotonic()), read directly:
        # anyio.current_time() costs a backend lookup on every call.
        self._clock: Clock = clock or time.monotonic
        self._rng = rng
        self._account = Slots(concurrency)
        self._account_control = ConcurrencyController(concurrency, self._clock, settings=adaptive)
        self._product_caps: dict[Product, Slots] = {}
        self._product_rates: dict[Product, AsyncLimiter] = {}
        self.controllers: dict[Product, RateController] = {}
        for product in Product:
            limit = products.get(product, ProductLimit())
            if limit.concurrency:
                self._product_caps[product] = Slots(limit.concurrency)
            if limit.rate:
                # A small bucket: bursts of `burst` (default a twentieth of a second's worth):
                # half the tenth of a second a server's bucket commonly holds, so requests that
                # reach it bunched up by the network still fit.
                burst = limit.burst or max(1, round(limit.rate / 20))
                self._product_rates[product] = AsyncLimiter(burst, burst / limit.rate)
            self.controllers[product] = RateController(
                self._clock, ceiling=limit.rate, settings=adaptive
            )
        self._scoped = {
            "conversation": KeyedPacer(per_conversation_rate, self._clock),
            "service": KeyedPacer(per_service_rate, self._clock),
        }
        self._product_paused: dict[Product, float] = {}

    async def acquire(self, product: Product, key: str | None) -> float:
        """Wait for the right to send one request of ``product`` in scope ``key``; returns the
        clock time it was granted, which :meth:`throttled` wants back if the answer is a 429.
        The caller must :meth:`release` it once the answer is in.

        Each step returns without yielding when it has nothing to wait for: at thousands of
        requests a second, event-loop round trips were most of bulkops' own cost per request.
        """
        if self._product_paused.get(product, 0.0) > self._clock():
            await self._wait_product_pause(product)
        if key is not None:
            await self._pacer(key).wait(key)
        rate = self._product_rates.get(product)
        if rate is not None:
            await rate.acquire()
        control = self.controllers[product]
        ticket = control.reserve()
        if ticket is not None:
            # Asked again after each sleep: the pace may have changed meanwhile (an Event would
            # need someone to set it when a pace changes; the turn is a deadline, not a signal).
            while (delay := control.delay(ticket)) > 0:  # noqa: ASYNC110
                await anyio.sleep(delay)
        await self._account.acquire()
        cap = self._product_caps.get(product)
        if cap is not None:
            try:
                await cap.acquire()
            except BaseException:
                self._account.release()
                raise
        return self._clock()

    def release(self, product: Product) -> None:
        """Give back what :meth:`acquire` granted."""
        cap = self._product_caps.get(product)
        if cap is not None:
            cap.release()
        self._account.release()

    def accepted(self, product: Product, concurrent: int | None) -> None:
        """Record an answer other than 429 (``concurrent``: Twilio-Concurrent-Requests)."""
        self.controllers[product].accepted()
        self._account_control.accepted(concurrent)
        if self._account.total != self._account_control.limit:
            self.regrow()

    def throttled(
        self,
        product: Product,
        key: str | None,
        wait: float,
        *,
        sent_at: float | None = None,
        concurrent: int | None = None,
    ) -> Verdict | None:
        """Record a 429: pause the scope it most likely came from for ``wait`` seconds + jitter,
        and teach the controllers (a request granted at ``sent_at``); returns what they did."""
        now = self._clock()
        until = now + jittered(wait, self._rng)
        scope_busy = False
        if key is not None:
            pacer = self._pacer(key)
            scope_busy = pacer.busy(key)
            pacer.pause(key, until)
        else:
            self._product_paused[product] = max(until, self._product_paused.get(product, 0.0))
        sent = now if sent_at is None else sent_at
        verdict = self._account_control.throttled(sent, concurrent)
        if verdict is not None:
            limit = self._account_control.limit
            if limit != self._account.total:
                self._account.total = limit
            return verdict
        if scope_busy:
            return None
        return self.controllers[product].throttled(sent)

    def regrow(self) -> None:
        """Let the account's in-flight cap grow back once concurrency 429s have stopped."""
        limit = self._account_control.limit
        if limit != self._account.total:
            self._account.total = limit

    async def _wait_product_pause(self, product: Product) -> None:
        # Sleeping to a deadline (which a later 429 may push back) is the point here; an Event
        # would need a timer task per pause to set it.
        while (until := self._product_paused.get(product, 0.0)) > self._clock():  # noqa: ASYNC110
            await anyio.sleep(until - self._clock())

    def _pacer(self, key: str) -> KeyedPacer:
        return self._scoped[key.partition(":")[0]]
