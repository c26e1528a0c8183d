"""Adaptive rate control: find the pace a server allows from its 429s (pure logic, clock injected).

Twilio does not publish every limit, and a limit may change under a running job, so a product
with no configured rate is paced by a controller that learns it, and a configured rate becomes a
ceiling the controller never exceeds but may stay under.

The shape is TCP's: slow start, then CUBIC (RFC 9438) in requests per second.

* **Slow start.** Before the first 429 the pace doubles every ``doubling_s`` from ``initial``,
  but never beyond twice what actually got through; past ``unbounded`` it is switched off (the
  server is evidently not rate-limiting).
* **Multiplicative decrease.** A 429 sets ``w_max`` to the lower of the current pace and the
  rate the server actually *accepted* over the last ``window_s`` (while over a limit, what gets
  through is the limit itself, so events land near it instead of halving blindly), but no lower
  than ``max_cut`` of the pace, and the pace drops to ``beta * w_max``. One decrease per
  congestion event: 429s for requests sent before the last decrease (plus ``hold_s`` for the
  server's bucket to refill) are already answered by it.
* **Cubic increase.** ``rate(t) = w_max * (1 + c * (t - K)**3)`` with ``K = cbrt((1-beta)/c)``:
  quickly back to ``w_max``, flat around it (few probes where the last 429 was), then ever
  faster beyond it, so a raised limit is found within seconds.

Pacing is by numbered tickets against credit that accrues at the pace: waiting workers leave
one by one, in order, never as a herd, and a new pace applies at once to everyone waiting.

The ``Twilio-Concurrent-Requests`` header (Twilio's 20429 page says to watch it) separates a
concurrency 429 from a rate 429: one that reports more requests in flight than any accepted
response ever did hit the account's in-flight cap, not a rate. :class:`ConcurrencyController`
then shrinks our in-flight cap by the excess instead of slowing the pace, and lets it grow back
by one per ``concurrency_regrow_s``.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class AdaptiveSettings:
    """Tuning of :class:`RateController`; the defaults are what the benchmarks were run with."""

    initial: float = 100.0
    doubling_s: float = 0.2
    unbounded: float = 20_000.0
    beta: float = 0.95
    cubic: float = 0.2
    hold_s: float = 0.15
    max_cut: float = 0.8
    window_s: float = 1.0
    floor: float = 1.0
    catch_up_s: float = 0.05
    min_concurrency_signal: int = 8
    concurrency_regrow_s: float = 1.0


_MAX_DOUBLINGS = 64.0  # initial * 2**64: past any rate, far from a float's range


class Verdict(enum.Enum):
    """What a 429 did to the controller."""

    RATE = "rate"  # the pace was decreased
    CONCURRENCY = "concurrency"  # the in-flight cap was decreased
    ABSORBED = "absorbed"  # part of a congestion event already answered


class _Delivered:
    """The rate of accepted responses over the last ``window_s`` (or since the first one).

    While a client is over a server's limit, what gets through in a window of W seconds is the
    limit times W plus at most the server's burst, so a one-second window reads the limit
    within a burst's worth; shorter windows are dominated by the burst.
    """

    def __init__(self, window_s: float) -> None:
        self._window = window_s
        self._times: deque[float] = deque()
        self._first: float | None = None

    def add(self, now: float) -> None:
        if self._first is None:
            self._first = now
        self._times.append(now)
        self._trim(now)

    def rate(self, now: float, since: float = -math.inf) -> float:
        """Accepted per second over the window (0.0 before the first acceptance), counting
        only from ``since`` when that is later (the end of a pause, which delivered nothing
        because nothing was sent, not because the server allowed nothing)."""
        self._trim(now)
        if self._first is None or not self._times:
            return 0.0
        start = max(self._first, since)
        span = min(self._window, now - start)
        if start > now - self._window:
            count = sum(1 for t in self._times if t >= start)
        else:
            count = len(self._times)
        return count / max(span, 0.05)

    def _trim(self, now: float) -> None:
        horizon = now - self._window
        while self._times and self._times[0] < horizon:
            self._times.popleft()


class RateController:
    """The pace of one product host, learnt from its 429s."""

    def __init__(
        self,
        clock: Clock,
        *,
        ceiling: float | None = None,
        settings: AdaptiveSettings | None = None,
    ) -> None:
        self._clock = clock
        self._s = settings or AdaptiveSettings()
        self.ceiling = ceiling
        self._k = math.cbrt((1.0 - self._s.beta) / self._s.cubic)
        self._started: float | None = None  # the first reservation: a slow start starts there
        # Slow start only when nothing is known; a configured rate is trusted until a 429.
        self._slow_start = ceiling is None
        self._w_max: float | None = None
        self._epoch = -math.inf  # when the last decrease happened
        self._issued = 0  # tickets handed out
        self._credit = 0.0  # slots accrued at the pace so far (ticket n is due at n + 1)
        self._stamp = clock()
        self._held = -math.inf  # no credit accrues before this (the end of a pause)
        self._delivered = _Delivered(self._s.window_s)
        self.decreases = 0

    def rate(self) -> float | None:
        """The current pace in requests/s, or None when nothing needs pacing here (no limit
        found yet, or the pace is at the configured ceiling, which is paced elsewhere)."""
        now = self._clock()
        s = self._s
        if self._w_max is None:
            if not self._slow_start:
                return None
            if self._started is None:
                self._started = now
            # The exponent is capped: a run bounded by latency or concurrency (never throttled,
            # never near `unbounded`) stays in slow start for its whole life, and 2.0**1024
            # overflows a float after 205 s of it.
            doublings = min((now - self._started) / s.doubling_s, _MAX_DOUBLINGS)
            pace = s.initial * math.pow(2.0, doublings)
            # No further than twice what actually got through: a run still starting up (or
            # bounded by latency and concurrency) must not bank a pace it never tried.
            pace = min(pace, 2.0 * max(s.initial, self._delivered.rate(now)))
            if pace >= s.unbounded:
                self._slow_start = False
                return None
            return pace
        # Not before the epoch: during a pause (see hold) the pace is where the curve starts.
        since = max(0.0, now - self._epoch)
        pace = self._w_max * (1.0 + s.cubic * math.pow(since - self._k, 3))
        if pace >= (self.ceiling if self.ceiling is not None else s.unbounded):
            return None
        return max(s.floor, pace)

    def reserve(self) -> int | None:
        """Take a ticket for the next sending slot (None: nothing to wait for); the caller
        then sleeps :meth:`delay` until it is 0, asking again after every sleep."""
        pace = self._accrue()
        if pace is None:
            return None
        ticket = self._issued
        self._issued += 1
        return ticket

    def delay(self, ticket: int) -> float:
        """Seconds until ``ticket`` may be used, at the pace of now (0.0: use it now).

        Tickets are numbered, and the pace accrues credit, so ticket n is due when n+1 slots'
        worth has accrued: waiters leave one by one in order, and a change of pace moves every
        waiter's turn at once — nobody keeps a slot reserved at a pace that no longer holds.
        """
        pace = self._accrue()
        if pace is None:
            return 0.0
        wait = (ticket + 1 - self._credit) / pace
        # Under a millisecond is now: a pace easing while we sleep must not turn the caller's
        # sleep-and-ask loop into ever shorter sleeps.
        return wait if wait >= 0.001 else 0.0

    def _accrue(self) -> float | None:
        now = self._clock()
        pace = self.rate()
        if pace is None:
            self._credit = float(self._issued)
        else:
            self._credit += pace * max(0.0, now - max(self._stamp, self._held))
            # An idle spell banks at most `catch_up_s` worth of slots (at least one), so timer
            # jitter costs nothing and a pause is not followed by a burst.
            self._credit = min(self._credit, self._issued + max(1.0, pace * self._s.catch_up_s))
        self._stamp = now
        return pace

    def accepted(self) -> None:
        """A request got an answer other than 429."""
        self._delivered.add(self._clock())

    def hold(self, until: float) -> None:
        """Accrue no credit before ``until`` (the end of a pause of this product): a pause is
        not an idle spell, and the waiters queued through it must leave at the pace when it
        ends, not all at once on the slots it would otherwise have banked. The cubic curve
        restarts there too: its climb back to ``w_max`` is for sending time, and a pause
        longer than ``K`` would otherwise end with the pace already probing above the limit
        that caused it (and a 429 that pauses the product once more)."""
        self._held = max(self._held, until)
        if self._w_max is not None:
            self._epoch = max(self._epoch, until)

    def throttled(self, sent_at: float) -> Verdict:
        """A request sent at ``sent_at`` (clock time) got a 429 caused by a rate limit."""
        now = self._clock()
        s = self._s
        if sent_at < self._epoch + s.hold_s:
            return Verdict.ABSORBED
        current = self.rate()
        delivered = self._delivered.rate(now, since=self._held)
        candidates = [c for c in (current, delivered or None, self.ceiling) if c is not None]
        w_max = min(candidates) if candidates else s.initial
        pace = current if current is not None else self.ceiling
        if pace is not None:
            # One event moves at most to `max_cut` of the pace (the configured ceiling, when
            # the pace was at it): a window that still holds a ramp or a start-up reads low,
            # and a few events in a row converge just as well.
            w_max = max(w_max, s.max_cut * pace)
        if self._slow_start and current is not None:
            # The pace doubled every `doubling_s`: the previous pace was not yet too fast, and
            # the short window lags a ramp, so neither alone should set how far to fall back.
            w_max = max(w_max, current / 2)
        self._w_max = max(s.floor, w_max)
        self._epoch = now
        self._slow_start = False
        self.decreases += 1
        return Verdict.RATE


class ConcurrencyController:
    """The account's in-flight cap, lowered by 429s that the concurrency header explains."""

    def __init__(
        self, limit: int, clock: Clock, *, settings: AdaptiveSettings | None = None
    ) -> None:
        self._clock = clock
        self._s = settings or AdaptiveSettings()
        self._max = limit
        self._limit = limit
        self._ok = 0  # the most requests in flight the server ever accepted us with
        self._epoch = -math.inf

    @property
    def limit(self) -> int:
        """Requests we may have in flight now; regrows by one per ``concurrency_regrow_s``."""
        if self._limit < self._max:
            now = self._clock()
            grown = int((now - self._epoch) / self._s.concurrency_regrow_s)
            if grown > 0:
                self._limit = min(self._max, self._limit + grown)
                self._epoch = now
        return self._limit

    def accepted(self, concurrent: int | None) -> None:
        """A non-429 answer reporting ``concurrent`` requests in flight (None: no header)."""
        if concurrent is not None and concurrent > self._ok:
            self._ok = concurrent

    def exceeded(self, concurrent: int | None) -> bool:
        """Whether a 429 reporting ``concurrent`` in flight may have been about concurrency:
        more than any accepted answer ever reported (any count, before the first one). Looser
        than :meth:`throttled`, which shrinks the cap only on a clear signal: a pause of the
        whole account costs little, sending into one breaks the server's Retry-After."""
        return concurrent is not None and concurrent > self._ok

    def throttled(self, sent_at: float, concurrent: int | None) -> Verdict | None:
        """A 429: None unless the header says it was the in-flight cap (then it is handled)."""
        if (
            concurrent is None
            or concurrent < self._s.min_concurrency_signal
            or concurrent <= self._ok
            or self._ok == 0
        ):
            return None
        if sent_at < self._epoch:
            return Verdict.ABSORBED
        # The server has never accepted this many at once: shrink our share by the excess.
        self._limit = max(1, min(self.limit, self._ok) - (concurrent - self._ok))
        self._epoch = self._clock()
        return Verdict.CONCURRENCY
