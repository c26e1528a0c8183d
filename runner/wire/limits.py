"""Pacing and capping requests the way Twilio limits them.

Three separate knobs, as Twilio has three separate limits (../shared/twilio-api.md §9):

* requests in flight per account (Twilio's 20429) and optionally per product: capacity limiters;
* actions per second per conversation (message/participant deletes) and per Service
  (conversation deletes): a keyed pacer that spaces requests evenly, so no burst ever exceeds
  the scope's rate;
* an optional request rate per product: aiolimiter with a burst of a twentieth of a second's worth,
  because a full second's burst lets every worker out at once and then starves them in
  lock-step against a server with a small bucket.

Which scopes a 429 pauses, and for how long, is decided in :mod:`runner.wire.pauses`. Here,
nothing is sent to a paused scope before its pause ends: a request checks every scope it
belongs to on entry and again as the very last step before it leaves, after every other wait
(pacer, rate, in-flight slots), because a 429 may arrive while it waits — and once more when
it has a connection to leave on (:meth:`Limits.clear_since`), as a wait for one may follow.
One that finds a scope paused there gives back its slots and queues again from the start, so
it also takes a fresh pacer slot and does not bunch with the others of its conversation when
the pause ends.
A pause longer than ``max_pause`` is not slept through: :class:`runner.errors.PausedTooLong`
is raised instead.

On top of these, each product is paced by a :class:`runner.wire.adaptive.RateController` that learns
the rate the server allows from its 429s (below the configured rate, if there is one), and the
account's in-flight cap shrinks when ``Twilio-Concurrent-Requests`` shows a 429 was about
concurrency. A 429 of a scoped delete teaches the product's controller only when its scope was
not itself busy: a conversation sending near its own 30/s was most likely throttled for that.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping

from aiolimiter import AsyncLimiter

from runner.clock import MONOTONIC, Clock
from runner.errors import PausedTooLong
from runner.kinds.base import Product
from runner.values import ProductLimit, Scope
from runner.wire.adaptive import AdaptiveSettings, ConcurrencyController, RateController, Verdict
from runner.wire.pauses import ACCOUNT, decide, refuse_beyond
from runner.wire.slots import Slots


class KeyedPacer:
    """Spaces requests of each key ``1/rate`` apart, and honours per-key pauses.

    Each caller reserves the next free slot before it sleeps, so concurrent callers of one key
    get successive slots instead of all waking at the same instant.
    """

    def __init__(self, rate: float, clock: Clock, *, max_pause: float = math.inf) -> None:
        self._interval = 1.0 / rate
        self._sleep = clock.sleep
        self._clock = clock.now
        self._max_pause = max_pause
        self._next: dict[Scope, float] = {}
        self._paused: dict[Scope, float] = {}
        self._paused_gen: dict[Scope, int] = {}  # the Limits' pause count when a key was paused
        self._hot: dict[Scope, bool] = {}
        self._sent: dict[Scope, float] = {}  # when each key's last request was let go
        self._calls = 0

    def ready(self, key: Scope, now: float) -> bool:
        """Take the slot of ``key`` at ``now`` when it is free and ``key`` is not paused (what
        :meth:`wait` does when it has nothing to wait for, without an event-loop round trip);
        False, nothing taken, when the caller must :meth:`wait`."""
        if self._next.get(key, now) > now or self._paused.get(key, now) > now:
            return False
        self._next[key] = now + self._interval
        self._let_go()
        return True

    def next_slot(self, key: Scope) -> float:
        """When ``key``'s next slot is free (clock time; 0.0: never used), its pause aside."""
        return self._next.get(key, 0.0)

    async def wait(self, key: Scope) -> None:
        """Return when a request of ``key`` may be sent."""
        while True:
            now = self._clock()
            paused = self._paused.get(key, now)
            if paused - now > self._max_pause:
                raise PausedTooLong(str(key), paused - now, self._max_pause)
            start = max(now, self._next.get(key, now), paused)
            self._next[key] = start + self._interval
            if start > now:
                await self._sleep(start - now)
            if self._clock() >= self._paused.get(key, 0.0):
                break
        self._let_go()

    def _let_go(self) -> None:
        """Count a request let go; every 4096th sweeps the keys gone quiet."""
        self._calls += 1
        if self._calls % 4096 == 0:
            self._sweep()

    def granted(self, key: Scope, now: float) -> None:
        """A request of ``key`` leaves now (after every other limit let it go, too)."""
        # Back to back with the previous one that left: the key runs at its full rate. Judged
        # when requests leave, not when they queue here: waiters queued behind a slower limit
        # (a product's rate) reserve slots at this key's rate without ever sending at it.
        self._hot[key] = now - self._sent.get(key, -math.inf) <= 1.5 * self._interval
        self._sent[key] = now

    def busy(self, key: Scope) -> bool:
        """Whether ``key`` has been sending at (about) its full rate just now."""
        return self._hot.get(key, False)

    def pause(self, key: Scope, until: float, generation: int = 0) -> None:
        """Send nothing for ``key`` before ``until`` (monotonic seconds); ``generation`` numbers
        the pause, for :meth:`paused_after`."""
        self._paused[key] = max(until, self._paused.get(key, 0.0))
        self._paused_gen[key] = generation

    def paused_after(self, key: Scope, generation: int) -> bool:
        """Whether ``key`` was paused after pause number ``generation``."""
        return self._paused_gen.get(key, 0) > generation

    def paused_until(self, key: Scope) -> float:
        """When ``key``'s pause ends (0.0: never paused)."""
        return self._paused.get(key, 0.0)

    def _sweep(self) -> None:
        # Keys of finished conversations would otherwise accumulate for the whole run.
        horizon = self._clock() - 5.0
        self._next = {k: t for k, t in self._next.items() if t > horizon}
        self._paused = {k: t for k, t in self._paused.items() if t > horizon}
        self._paused_gen = {k: g for k, g in self._paused_gen.items() if k in self._paused}
        self._sent = {k: t for k, t in self._sent.items() if t > horizon}
        self._hot = {k: h for k, h in self._hot.items() if k in self._sent}


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
        max_pause: float = math.inf,
    ) -> None:
        self._time: Clock = clock or MONOTONIC
        self._clock = self._time.now
        self._rng = rng
        self.max_pause = max_pause
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
            "conversation": KeyedPacer(per_conversation_rate, self._time, max_pause=max_pause),
            "service": KeyedPacer(per_service_rate, self._time, max_pause=max_pause),
        }
        self._product_paused: dict[Product, float] = {}
        self._account_paused = 0.0
        # The end of the latest pause of any scope: past it nothing is paused, so the check on
        # entry is one comparison while no 429 is being waited out.
        self._any_paused = 0.0
        # Pauses are numbered, and each scope remembers the number of its last one, so the
        # check before a request leaves is one comparison unless a 429 came in meanwhile.
        self._pauses = 0
        self._account_gen = 0
        self._product_gen: dict[Product, int] = {}

    async def acquire(self, product: Product, key: Scope | None) -> float:
        """Wait for the right to send one request of ``product`` in scope ``key``; returns the
        clock time it was granted, which :meth:`throttled` wants back if the answer is a 429.
        The caller must :meth:`release` it once the answer is in.

        Each step returns without yielding when it has nothing to wait for: at thousands of
        requests a second, event-loop round trips were most of bulkops' own cost per request.
        Raises :class:`PausedTooLong` rather than wait out a pause longer than ``max_pause``.
        """
        while True:
            now = self._clock()
            if self._any_paused > now:
                await self._wait_pauses(product, key)
                now = self._clock()
            seen = self._pauses
            # Whether any step below awaited: until one does, no other task has run, so no 429
            # can have paused a scope since the check above, and the clock still reads `now`.
            waited = False
            pacer: KeyedPacer | None = None
            if key is not None:
                pacer = self._pacer(key)
                if not pacer.ready(key, now):
                    await pacer.wait(key)
                    waited = True
            rate = self._product_rates.get(product)
            if rate is not None:
                await rate.acquire()
                waited = True
            control = self.controllers[product]
            ticket = control.reserve(None if waited else now)
            if ticket is not None and not control.due(ticket):
                if not await self._take_turn(control, ticket, product, key, seen):
                    continue
                waited = True
            if not self._account.take():
                await self._account.acquire()
                waited = True
            cap = self._product_caps.get(product)
            if cap is not None:
                try:
                    await cap.acquire()
                except BaseException:
                    self._account.release()
                    raise
                waited = True
            # The last step before the request leaves: a 429 that came in while it waited above
            # may have paused one of its scopes (the pause may even be over by now). Then it
            # gives its slots back and queues again, pacer included, so it neither goes into
            # the pause nor bunches with the others of its conversation when it ends.
            if not waited or self.clear_since(product, key, seen):
                if waited:
                    now = self._clock()
                if pacer is not None and key is not None:
                    pacer.granted(key, now)
                return now
            self.release(product)
            if ticket is not None:
                control.give_back()

    @property
    def pauses(self) -> int:
        """How many pauses have been made so far (for :meth:`clear_since`)."""
        return self._pauses

    def clear_since(self, product: Product, key: Scope | None, pauses: int) -> bool:
        """Whether no scope of a request of ``product`` in ``key`` was paused since
        :attr:`pauses` read ``pauses``: the last check of :meth:`acquire`, and asked once more
        when a request it granted has a connection to leave on (a wait for one may outlast
        that check: a connection being opened, the pool full; a 429 read meanwhile must keep
        it from being sent)."""
        return self._pauses == pauses or not self._paused_after(product, key, pauses)

    def delay(self, product: Product, key: Scope | None) -> float:
        """How long a request of ``product`` in scope ``key`` asked for now would wait for its
        scope's pace and for the pauses of its scopes (seconds; 0 or less: not at all). The
        workers choose their next target by it (see :class:`runner.engine.workqueue.WorkQueue`):
        the in-flight slots and the product's pace are the same for every target of a product,
        a scope's booked slots are not."""
        now = self._clock()
        free = 0.0 if key is None else self._pacer(key).next_slot(key)
        if self._any_paused > now:  # the key's own pause included
            free = max(free, self._paused_until(product, key))
        return free - now

    async def _take_turn(
        self, control: RateController, ticket: int, product: Product, key: Scope | None, seen: int
    ) -> bool:
        """Wait for ``ticket``'s turn at the pace; False, the turn given back, when a 429 paused
        one of the request's scopes meanwhile: it queues again at once instead of spending a
        turn after the pause only to be sent back at the last step (64 waiters at 100/s cost
        0.64 s of nothing sent after every pause)."""
        # Asked again after each sleep: the pace may have changed meanwhile (an Event would
        # need someone to set it when a pace changes; the turn is a deadline).
        while (delay := control.delay(ticket)) > 0:
            await self._time.sleep(delay)
            if self._pauses != seen and self._paused_after(product, key, seen):
                control.give_back()
                return False
        return True

    def release(self, product: Product) -> None:
        """Give back what :meth:`acquire` granted."""
        cap = self._product_caps.get(product)
        if cap is not None:
            cap.release()
        self._account.release()

    def accepted(
        self, product: Product, concurrent: int | None, sent_at: float | None = None
    ) -> None:
        """Record an answer other than 429 (``concurrent``: Twilio-Concurrent-Requests) to a
        request granted at ``sent_at`` (what :meth:`acquire` returned)."""
        self.controllers[product].accepted(sent_at)
        self._account_control.accepted(concurrent)
        if self._account.total != self._account_control.limit:
            self.regrow()

    def throttled(
        self,
        product: Product,
        key: Scope | None,
        wait: float,
        *,
        sent_at: float | None = None,
        concurrent: int | None = None,
    ) -> Verdict | None:
        """Record a 429: pause every scope it may have come from for ``wait`` seconds + jitter,
        and teach the controllers (a request granted at ``sent_at``); returns what they did.

        The account is paused when the 429 was about requests in flight (the concurrency
        header says more were in flight than the server ever accepted); otherwise the product,
        and the request's conversation or Service too. Raises :class:`PausedTooLong` (after
        pausing, so nothing else is sent meanwhile) when ``wait`` is beyond ``max_pause``.
        """
        now = self._clock()
        sent = now if sent_at is None else sent_at
        verdict = self._account_control.throttled(sent, concurrent)
        about_concurrency = verdict is not None or self._account_control.exceeded(concurrent)
        pause = decide(
            product, key, wait, now=now, rng=self._rng, about_concurrency=about_concurrency
        )
        until = pause.until
        scope_busy = False
        self._pauses += 1
        if key is not None:
            pacer = self._pacer(key)
            scope_busy = pacer.busy(key)
            pacer.pause(key, until, self._pauses)
        if verdict is not None:
            limit = self._account_control.limit
            if limit != self._account.total:
                self._account.total = limit
        elif not scope_busy:
            verdict = self.controllers[product].throttled(sent)
        # Held only after being taught: a hold moves the controller's epoch past the pause,
        # and a 429 sent before the epoch would read as part of an event already answered.
        if pause.account:
            self._account_paused = max(until, self._account_paused)
            self._account_gen = self._pauses
            held = list(self.controllers.values())
        else:
            self._product_paused[product] = max(until, self._product_paused.get(product, 0.0))
            self._product_gen[product] = self._pauses
            held = [self.controllers[product]]
        for control in held:
            control.hold(until)
        self._any_paused = max(until, self._any_paused)
        refuse_beyond(pause, self.max_pause)
        return verdict

    def regrow(self) -> None:
        """Let the account's in-flight cap grow back once concurrency 429s have stopped."""
        limit = self._account_control.limit
        if limit != self._account.total:
            self._account.total = limit

    def _paused_after(self, product: Product, key: Scope | None, generation: int) -> bool:
        """Whether a scope of a request of ``product`` in ``key`` was paused after pause
        number ``generation``."""
        return (
            self._account_gen > generation
            or self._product_gen.get(product, 0) > generation
            or (key is not None and self._pacer(key).paused_after(key, generation))
        )

    def _paused_until(self, product: Product, key: Scope | None) -> float:
        """When the last pause of any scope of a request of ``product`` in ``key`` ends."""
        until = max(self._account_paused, self._product_paused.get(product, 0.0))
        if key is not None:
            until = max(until, self._pacer(key).paused_until(key))
        return until

    async def _wait_pauses(self, product: Product, key: Scope | None) -> None:
        # Sleeping to a deadline (which a later 429 may push back) is the point here; an Event
        # would need a timer task per pause to set it.
        while (until := self._paused_until(product, key)) > (now := self._clock()):
            if until - now > self.max_pause:
                raise PausedTooLong(self._scope_of(product, key), until - now, self.max_pause)
            await self._time.sleep_until(until)

    def _scope_of(self, product: Product, key: Scope | None) -> str:
        """The scope whose pause ends last, for the message of :class:`PausedTooLong`."""
        scopes = [
            (self._account_paused, ACCOUNT),
            (self._product_paused.get(product, 0.0), f"product {product.value}"),
        ]
        if key is not None:
            scopes.append((self._pacer(key).paused_until(key), str(key)))
        return max(scopes)[1]

    def _pacer(self, key: Scope) -> KeyedPacer:
        return self._scoped[key.kind]

    # -- a resumed run starts from what an earlier process learned (issue 14 §6) -----------

    def learned(self) -> tuple[dict[Product, float], int | None]:
        """What the controllers have learned: each product's limit found, and the account's
        in-flight cap when concurrency 429s have lowered it."""
        rates = {p: r for p, c in self.controllers.items() if (r := c.learned()) is not None}
        return rates, self._account_control.learned()

    def seed(self, rates: Mapping[Product, float], in_flight: int | None, weight: float) -> None:
        """Start from what an earlier process of the run learned, trusted by ``weight`` (see
        :meth:`RateController.seed`); before any request only."""
        for product, limit in rates.items():
            self.controllers[product].seed(limit, weight)
        if in_flight is not None:
            self._account_control.seed(in_flight, weight)
            self.regrow()
