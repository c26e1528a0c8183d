"""Adaptive rate control: find the pace a server allows from its 429s (pure logic, clock injected).

Twilio does not publish every limit, and a limit may change under a running job, so a product
with no configured rate is paced by a controller that learns it, and a configured rate becomes a
ceiling the controller never exceeds but may stay under.

Every 429 pauses the whole product for its Retry-After (:mod:`runner.wire.pauses`): about a
second of nothing sent, so a 429 costs as much as a second of sending, and the controller spends
them sparingly. The shape is TCP's slow start, then a plateau and a CUBIC-like (RFC 9438) probe.

* **Slow start.** Before the first 429 the pace doubles from ``initial`` every
  ``doubling_rtts`` round trips (TCP's slow start and BBR's startup double every one), but
  no slower than every ``doubling_s`` and no faster than every ``min_doubling_s`` nor than
  ``doubling_requests`` at the pace (the 429 reads the limit from the requests it spans), and
  never beyond twice what actually got through; past ``unbounded`` it is switched off (the
  server is evidently not rate-limiting). The round trip is what a 429 takes to come back: the pace
  grows by a fixed factor in the time the server takes to say it is too fast, whether that is
  Twilio's 100 ms (a doubling every ``doubling_s``) or a server next door's millisecond.
* **The limit a 429 reveals.** The server's bucket was full when sending last started (the
  run's start, or the end of a pause), and a 429 says the requests it accepted since have used
  up its burst: ``w_max`` is the largest rate at which a bucket holding ``burst_s`` of it (of
  the highest limit found: a lowered limit keeps its bucket) would have run dry on them. One
  decrease per congestion event: 429s for requests sent before the last decrease (plus
  ``hold_s`` for the server's bucket to refill) are already answered by it, and so are 429s
  for requests sent before a pause that is not over. A 429 more than ``window_s`` after the
  pause is read from every acceptance since it, when that explains it by a higher limit than
  the last window does: a plateau barely over the limit empties the bucket only after seconds.
* **Plateau.** The pace then stays at ``beta * w_max``, just under the limit, for
  ``probe_after_s`` (a probe beyond it costs a pause), or only ``reprobe_after_s`` (doubled
  after the second probe in a row that found nothing higher) when a limit ``1 / max_cut`` times
  higher held before (a lowered limit may come back, and finding it is worth a pause) or the
  limit is a guess (a 429 at a configured rate, or at the plateau long after the last pause: too
  fast, but not by how much).
* **The way back up.** A 429 that is not about a learned limit (a storm, a server's hiccup)
  reads a limit far under the pace that held before it. That pace is kept (``_high``), and
  after the short plateau the pace climbs back to it within ``climb_s``, slowly at first (a
  limit that is still low is met with little excess), and once it has held there for
  ``window_s`` it is the limit again; a slow start cut off by such a 429 goes on from where it
  was. A limit that really fell meets the climb with a 429 that reads it exactly (the bucket was
  full at the pause's end), and the plateau under it holds. The first look above a limit read
  that way climbs over ``look_climb_s`` instead (see ``RateController._climb``): right after a
  drop the limit is the likeliest to still be low, and a slow climb is answered by it seconds
  later, with little excess, not while the job settles onto the new limit.
* **Probe.** Beyond the limit, ``rate(t) = beta * w_max + cubic * w_max * t**3``: slow just
  above the plateau, so the 429 it ends with reads the limit closely, then ever faster, so a
  raised limit is found within seconds. A probe's 429 never lowers ``w_max``: the plateau under
  it held.

Pacing is by numbered tickets against credit that accrues at the pace: waiting workers leave
one by one, in order, never as a herd, and a new pace applies at once to everyone waiting (who
sleeps no longer than the plateau lasts, and ``recheck_s`` while the pace climbs). A turn that
goes unused, its request sent back by a pause, is given back to the next ticket.

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
    doubling_rtts: float = 4.0
    min_doubling_s: float = 0.01
    # And no faster than this many requests at the pace: a slow start's 429 reads the limit to
    # about one request in those it spans, so a doubling must span enough of them wherever the
    # limit is. At a 50-ms doubling whatever the pace, a 200/s limit was read from ~45
    # requests, 1-3 % off either way (a plateau over the limit and a second pause, or one too
    # low: under 0.95 of the limit in 5 of 16 runs of `bench rate-unknown`); 40 requests keep
    # 0.2 s at 200/s (as doubling_s did), 0.05 s at 800/s, and the round trip's pace beyond:
    # 0.5 s from 100/s to `unbounded` against a server next door (1.5 s at a fixed 0.2 s).
    doubling_requests: float = 40.0
    # The slow start's cap (twice what got through lately) is read over half a doubling, but
    # never over less than this: a shorter window is often empty between the event loop's
    # batches of answers, and an empty one caps the pace at twice `initial` (a 2,000/s fanout
    # held at 200/s now and then: 0.73 of its bound).
    min_cap_window_s: float = 0.025
    unbounded: float = 20_000.0
    beta: float = 0.99
    cubic: float = 0.05
    hold_s: float = 0.15
    max_cut: float = 0.8
    window_s: float = 1.0
    floor: float = 1.0
    catch_up_s: float = 0.05
    min_concurrency_signal: int = 8
    concurrency_regrow_s: float = 1.0
    probe_after_s: float = 30.0
    reprobe_after_s: float = 2.0
    burst_s: float = 0.1
    climb_s: float = 0.6
    recheck_s: float = 0.05
    look_climb_s: float = 3.0


def _bisect(below: Callable[[float], bool], count: int, seconds: float) -> float:
    """The rate where ``below(rate)`` stops holding (it holds for every rate under it), to 30
    halvings of a range twice ``count`` requests over ``seconds``."""
    low, high = 0.0, 2.0 * count / max(seconds, 0.01) + 1.0
    for _ in range(30):
        mid = (low + high) / 2
        if below(mid):
            low = mid
        else:
            high = mid
    return low


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
        self.window = window_s
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
        times = self._times
        horizon = now - self.window
        if self._first is None or not times:
            return 0.0
        start = self._first if self._first > since else since
        span = min(self.window, now - start)
        if start > horizon and times[0] < start:
            count = sum(1 for t in times if t >= start)
        else:
            # Every acceptance in the window came at or after `start` (always so when nothing
            # narrows it: the first acceptance is the oldest), counted without a pass over them.
            count = len(times)
        # Not under 50 ms (nor the window): one acceptance just now is no rate of thousands.
        least = 0.05 if self.window > 0.05 else self.window
        return count / (span if span > least else least)

    def times(self, now: float, since: float) -> list[float]:
        """When the acceptances of the window from ``since`` on came."""
        self._trim(now)
        return [t for t in self._times if t >= since]

    def _trim(self, now: float) -> None:
        horizon = now - self.window
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
        self._started: float | None = None  # the first reservation: a slow start starts there
        self._doublings = 0.0  # the slow start's doublings so far, up to _ramped
        self._ramped: float | None = None  # when they were last brought up to date
        self._rtt: float | None = None  # smoothed round trip of accepted requests (slow start)
        self._doubling = self._s.doubling_s  # seconds per doubling, by the round trip
        # Slow start only when nothing is known; a configured rate is trusted until a 429.
        self._slow_start = ceiling is None
        self._w_max: float | None = None
        self._high = 0.0  # the highest limit that held a while: a lowered limit may come back
        self._restart = False  # _high is where a slow start was cut off (see throttled)
        self._misses = 0  # probes in a row that found no higher limit
        # The plateau's share of beta * w_max: under 1 after a slow start (see throttled).
        self._margin = 1.0
        self._guessed = False  # w_max is a guess (see the module's docstring), not a limit found
        # w_max was read (from a bucket known full) well under a limit that held, and nothing
        # has looked above it since: the first look climbs slowly (see _climb).
        self._fresh = False
        self._epoch = -math.inf  # when the last decrease happened
        # When the last decrease happened: the epoch moves on to the end of its pause (see hold),
        # this does not.
        self._decreased = -math.inf
        self._issued = 0  # tickets handed out
        self._credit = 0.0  # slots accrued at the pace so far (ticket n is due at n + 1)
        self._stamp = clock()
        self._held = -math.inf  # no credit accrues before this (the end of a pause)
        self._pace: float | None = None  # the pace at the last accrual
        self._tokens = 1.0  # departures the pace allows now (see _leave)
        self._counted = 0  # acceptances since the last pause (see _since_pause)
        self._counting_from: float | None = None  # the first of them
        self._delivered = _Delivered(self._s.window_s)
        # What got through lately, for the slow start's cap: TCP's slow start grows by what was
        # acknowledged in the last round trip, not over a second. Over the one-second window the
        # cap trails an exponential pace (it doubled about every 0.43 s, not every doubling_s:
        # 3 s to reach 20,000/s); over half a doubling it binds only where answers truly lag the
        # pace (a run bounded by latency or in-flight slots).
        self._lately = _Delivered(self._doubling / 2)
        self.decreases = 0

    def rate(self) -> float | None:
        """The current pace in requests/s, or None when nothing needs pacing here (no limit
        found yet, or the pace is at the configured ceiling, which is paced elsewhere)."""
        return self._rate_at(self._clock())

    def _rate_at(self, now: float) -> float | None:
        """:meth:`rate` at ``now``, the clock read by the caller."""
        s = self._s
        if self._w_max is None:
            if not self._slow_start:
                return None
            if self._started is None:
                self._started = now
            ramped = self._ramped
            if ramped is None:
                self._ramped = now
            elif now > ramped:
                # The exponent is capped: a run bounded by latency or concurrency (never
                # throttled, never near `unbounded`) stays in slow start for its whole life, and
                # 2.0**1024 overflows a float after 205 s of it.
                doubling = self._doubling_at(s.initial * math.pow(2.0, self._doublings))
                self._doublings = min(_MAX_DOUBLINGS, self._doublings + (now - ramped) / doubling)
                self._ramped = now
            pace = s.initial * math.pow(2.0, self._doublings)
            # No further than twice what actually got through: a run still starting up (or
            # bounded by latency and concurrency) must not bank a pace it never tried.
            delivered = self._lately.rate(now)
            cap = 2.0 * (delivered if delivered > s.initial else s.initial)
            if pace > cap:
                pace = cap
            if pace >= s.unbounded:
                self._slow_start = False
                return None
            return pace
        if self._high > self._w_max:
            back = self._quiet() + self._climb() + s.window_s
            if now - self._epoch >= back:
                # Climbed back to the limit that held before, and it held again for a window:
                # it is the limit once more, and probes above it are rare again.
                self._w_max, self._epoch = self._high, self._epoch + back
                self._misses, self._guessed, self._fresh = 0, False, False
                if self._restart:
                    # Only a slow start's pace, never a limit: the slow start goes on from it.
                    self._doublings = math.log2(max(1.0, self._high / s.initial))
                    self._started = now - s.doubling_s * self._doublings
                    self._ramped = now
                    self._w_max, self._high, self._restart = None, 0.0, False
                    self._slow_start = True
                    return self._rate_at(now)
        # Not before the epoch: during a pause (see hold) the pace is where the plateau starts.
        pace = self._curve(max(0.0, now - self._epoch))
        if pace >= (self.ceiling if self.ceiling is not None else s.unbounded):
            return None
        return max(s.floor, pace)

    def _curve(self, since: float) -> float:
        """The pace ``since`` seconds after the last decrease (or pause): flat just under the
        limit found for :meth:`_quiet` seconds, then a cubic probe above it."""
        assert self._w_max is not None
        s = self._s
        pace = s.beta * self._margin * self._w_max
        probing = since - self._quiet()
        if probing <= 0:
            return pace
        if self._high > self._w_max:
            # Back up to the limit that held before within `climb_s` however far under it the
            # pace fell (a storm's or a hiccup's low reading costs seconds, not minutes), slowly
            # at first (a limit that is still low is met with little excess), and no further:
            # beyond it is a probe, which waits until the limit is back (see rate).
            gap = s.beta * (self._high - self._w_max)
            return pace + gap * min(1.0, math.pow(probing / self._climb(), 3))
        return pace + s.cubic * self._w_max * math.pow(probing, 3)

    def _found(self, since: float, now: float) -> float:
        """The limit that explains a 429 now: the largest rate at which a bucket, full at
        ``since`` (the run's start or a pause's end, at most ``window_s`` ago) and holding
        ``burst_s`` of it (of the highest limit found: a lowered limit keeps its bucket), would
        have run dry by now on the acceptances since then."""
        start, full, times = self._span(since, now)
        times.append(now)
        # The last one (the 429) found less than a token.
        return _bisect(lambda rate: self._drain(times, start, full, rate)[1] < 0.0, len(times),
                       now - start)

    def _kept(self, since: float, now: float) -> float:
        """The lowest rate at which that bucket would have held every acceptance since
        ``since`` (each found a token): with :meth:`_found`, the limits the acceptances and
        the 429 allow."""
        start, full, times = self._span(since, now)
        return _bisect(lambda rate: self._drain(times, start, full, rate)[0] < 0.0,
                       len(times) + 1, now - start)

    def _span(self, since: float, now: float) -> tuple[float, bool, list[float]]:
        """Where a reading of the limit starts (``since``, at most ``window_s`` back), whether
        the server's bucket was full there, and the acceptances since."""
        start = max(since, now - self._s.window_s)
        # Since a decrease that no pause followed, the bucket refilled from empty. (The
        # decrease, not the epoch: a climb back that held moves the epoch on, and the bucket
        # was not emptied there.)
        full = self._decreased <= since
        start = max(start, self._decreased)
        return start, full, self._delivered.times(now, start)

    def _drain(
        self, times: list[float], start: float, full: bool, rate: float
    ) -> tuple[float, float]:
        """A bucket of ``rate`` (full at ``start``, else empty) taking a token at each of
        ``times``: the fewest it held after any of them, and what it held after the last
        (a debt carried: below 0, one found less than a token)."""
        burst = self._bucket(rate)
        tokens, last, fewest = (burst if full else 0.0), start, math.inf
        for t in times:
            tokens = min(burst, tokens + (t - last) * rate) - 1.0
            fewest = min(fewest, tokens)
            last = t
        return fewest, tokens

    def _bucket(self, limit: float) -> float:
        """Requests the server's bucket holds if its limit is ``limit``: ``burst_s`` of it, or
        of the highest limit found (a lowered limit keeps its bucket), at least one. A slow
        start's pace that a storm cut off (``_restart``) is no limit the server held: its
        bucket is no measure of the server's."""
        kept = 0.0 if self._restart else self._high
        return max(1.0, self._s.burst_s * max(limit, kept, self._w_max or 0.0))

    def _climb(self) -> float:
        """Seconds the climb back to the limit that held before takes: ``climb_s``, but
        ``look_climb_s`` for the first look above a limit just read lower from a full bucket.

        A limit read that way is exact, and right after it fell it is the likeliest to still
        hold: a slow climb meets it with an excess the server's bucket absorbs for longer (the
        pace, only a little above the limit for seconds, gets the limit through meanwhile), so
        the look's 429 and its pause come seconds later and not while the job is settling onto
        the new limit, and a limit that comes back during those seconds is followed at once. A
        look after one that found the limit still low, a climb from a guess, a slow start cut
        off by a storm, a resumed run's climb to its learned pace: fast, as before (a slow climb
        would only delay finding a limit that came back before the look began). The cost: a
        storm in mid-run reads like a drop, and is climbed back from over ``look_climb_s``."""
        s = self._s
        return s.look_climb_s if self._fresh else s.climb_s

    def _quiet(self) -> float:
        """Seconds at the plateau before probing above the limit found: every probe costs a
        pause of the whole product (a 429), so it is rare, unless a higher limit held before
        (a lowered limit is likely to come back, and is worth finding soon)."""
        assert self._w_max is not None
        s = self._s
        if self._guessed or self._high > self._w_max / s.max_cut:
            # Twice as long after each further probe that found nothing higher (it may never
            # return), but the first miss is not doubled: a limit that returns a second after
            # a probe would otherwise wait twice as long to be found.
            misses = max(0, self._misses - 1)
            return min(s.probe_after_s, s.reprobe_after_s * math.pow(2.0, misses))
        return s.probe_after_s

    def reserve(self, now: float | None = None) -> int | None:
        """Take a ticket for the next sending slot (None: nothing to wait for); the caller
        then sleeps :meth:`delay` until it is 0, asking again after every sleep (or asks
        :meth:`due` first). ``now``: the clock, when the caller has just read it."""
        pace = self._accrue(now)
        if pace is None:
            return None
        ticket = self._issued
        self._issued += 1
        return ticket

    def due(self, ticket: int) -> bool:
        """Whether ``ticket``, just reserved, may be used at once: :meth:`delay` would say 0.0
        now, judged on the credit and pace the reservation has just brought up to date (the
        common case, with no second look at the clock and the pace). False when it is not
        sure: the caller then sleeps :meth:`delay` as always. True means the request leaves:
        the departure is counted (see :meth:`_leave`)."""
        pace = self._pace
        if pace is None:
            return True
        if ticket + 1 - self._credit >= 0.001 * pace:
            return False
        return self._leave(pace) == 0.0

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
        if wait < 0.001:  # its turn (a millisecond early is now)
            return self._leave(pace)
        # A rising pace moves every turn earlier, but only for a waiter that asks again: one
        # asleep until its turn at the old pace would wake late, with the credit of the turns it
        # missed banked, and leave with every other such waiter in a burst that empties the
        # server's bucket. So nobody sleeps past the end of a plateau, nor long in a climb.
        # (Never under recheck_s, so never under the millisecond that is now: a pace easing
        # while we sleep must not turn the caller's sleep-and-ask loop into ever shorter sleeps.)
        return min(wait, max(self._s.recheck_s, self._steady_for()))

    def _leave(self, pace: float) -> float:
        """A request whose turn has come leaves now (0.0, counted), or in the seconds returned:
        what leaves is bounded by the pace itself, at most ``catch_up_s`` of it at once (at
        least one slot) over what left before — a token bucket on the departures, filled at
        the pace by :meth:`_accrue` as the credit is.

        The credit alone does not bound them: it is counted against the tickets handed out,
        and a ticket's holder sleeps until the turn it was given. A turn given back (a request
        that met a pause queues again) moves every later turn one slot earlier, and nobody
        asleep hears of it: after a pause that sent 38 waiters back, 37 slots were banked
        among sleepers, who left together when the plateau's end woke them all at once, 35
        requests in 4 ms into a server's bucket of 4 (a cold resume's ledger, 3 s in). The
        bound makes such late turns leave at the pace instead; with nobody late, the credit
        (which banks the same ``catch_up_s``) binds first, and this one never does. (Filled at
        the pace of each moment, not spaced by the pace at each departure as ATM's GCRA is: a
        slow start's pace dips and recovers within milliseconds, and a departure spaced at a
        dip's pace held the next ones back after it.)"""
        tokens = self._tokens
        if tokens > 1.0 - 0.001 * pace:  # (a millisecond early is now)
            self._tokens = tokens - 1.0
            return 0.0
        return (1.0 - tokens) / pace

    def give_back(self) -> None:
        """A ticket's turn goes unused (its request queued again, see
        :meth:`runner.wire.limits.Limits.acquire`): the next ticket may have it."""
        self._credit += 1.0

    def _steady_for(self) -> float:
        """Seconds the pace holds still from now (0.0 while it climbs: a slow start, a climb
        back, a probe)."""
        if self._w_max is None:
            return 0.0 if self._slow_start else math.inf
        return max(0.0, self._epoch + self._quiet() - self._clock())

    def _accrue(self, now: float | None = None) -> float | None:
        if now is None:
            now = self._clock()
        pace = self._rate_at(now)
        self._pace = pace
        if pace is None:
            self._credit = float(self._issued)
        else:
            # (Comparisons, not min/max: this runs for every request.)
            since = self._stamp if self._stamp > self._held else self._held
            tokens = self._tokens
            if now > since:
                gained = pace * (now - since)
                self._credit += gained
                tokens += gained
            # An idle spell banks at most `catch_up_s` worth of slots (at least one), so timer
            # jitter costs nothing and a pause is not followed by a burst.
            bank = pace * self._s.catch_up_s
            if bank < 1.0:
                bank = 1.0
            most = self._issued + bank
            if self._credit > most:
                self._credit = most
            self._tokens = tokens if tokens < bank + 1.0 else bank + 1.0
        self._stamp = now
        return pace

    def accepted(self, sent_at: float | None = None) -> None:
        """A request sent at ``sent_at`` (clock time; None: not known) got an answer other than
        429."""
        now = self._clock()
        self._delivered.add(now)
        if now >= self._held:
            if self._counting_from is None:
                self._counting_from = now
            self._counted += 1
        if self._slow_start:
            self._lately.add(now)
            if sent_at is not None and now >= sent_at:
                self._timed(now, now - sent_at)

    def _timed(self, now: float, rtt: float) -> None:
        """A round trip of ``rtt`` seconds, answered ``now``, in slow start: the doubling
        follows the smoothed one (RFC 6298's 1/8 gain), the doublings so far brought up to date
        at the one they had."""
        srtt = rtt if self._rtt is None else self._rtt + (rtt - self._rtt) / 8
        self._rtt = srtt
        s = self._s
        doubling = min(s.doubling_s, max(s.min_doubling_s, s.doubling_rtts * srtt))
        if doubling != self._doubling:
            self._rate_at(now)  # the doublings so far, at the old doubling
            self._doubling = doubling
            self._lately.window = max(doubling / 2, s.min_cap_window_s)

    def _doubling_at(self, pace: float) -> float:
        """Seconds per doubling of the slow start at ``pace``: by the round trip, but never
        under ``doubling_requests`` at that pace (nor over ``doubling_s``)."""
        s = self._s
        least = s.doubling_requests / pace
        if least > s.doubling_s:
            least = s.doubling_s
        return least if least > self._doubling else self._doubling

    def hold(self, until: float) -> None:
        """Accrue no credit before ``until`` (the end of a pause of this product): a pause is
        not an idle spell, and the waiters queued through it must leave at the pace when it
        ends, not all at once on the slots it would otherwise have banked. The plateau
        restarts there too: its quiet time is sending time, and the bucket the server refilled
        meanwhile is where :meth:`_found` starts counting."""
        self._held = max(self._held, until)
        self._counted, self._counting_from = 0, None
        if self._w_max is not None:
            self._epoch = max(self._epoch, until)

    def _since_pause(self, now: float) -> float | None:
        """The limit that explains a 429 now by every acceptance since the last pause (the
        window keeps only a second of them): the largest rate at which the server's bucket,
        full when they began, would have run dry on them (None: too few to tell)."""
        first = self._counting_from
        if first is None or self._counted < 2 or now <= first or first < self._decreased:
            return None  # (nor when no pause followed the last decrease: no bucket known full)
        span, sent = now - first, self._counted + 1.0
        # Full at `first`, refilled at the limit since, short of one at the 429:
        # sent = limit * span + bucket(limit), solved for each of the bucket's two forms.
        rate = (sent - self._bucket(0.0)) / span
        if self._bucket(rate) > self._bucket(0.0):  # a bucket of burst_s of that rate itself
            rate = sent / (span + self._s.burst_s)
        return rate if rate > 0.0 else None

    def throttled(self, sent_at: float) -> Verdict:
        """A request sent at ``sent_at`` (clock time) got a 429 caused by a rate limit."""
        now = self._clock()
        s = self._s
        # Counted from the decrease, not from the end of its pause: a request sent after a pause
        # met a bucket the server refilled meanwhile, so its 429 is news (a limit that fell far
        # under the pace empties that bucket again within `hold_s` of the pause's end, and
        # absorbing that 429 kept the pace, and the pauses, for good).
        if sent_at < self._decreased + s.hold_s:
            return Verdict.ABSORBED
        if sent_at < self._held:
            # Sent before a pause that is not over (one this controller was not taught: a
            # conversation's own limit, the account's in-flight cap): the bucket it found
            # empty refills during that pause, and what got through since the last one says
            # nothing of it. The first 429 after the pause reads the limit from a full bucket.
            return Verdict.ABSORBED
        current = self.rate()  # also brings the slow start up to date: it ends past `unbounded`
        guessed = fresh = False
        margin = 1.0
        if self._slow_start and self._started is not None:
            w_max = self._found(self._started, now)
            # The 429 allows any limit up to `w_max` (the top: the server's bucket is sized
            # from it), the acceptances before it any from `_kept` up; a doubling spans
            # ~`doubling_requests`, so the two are about one request in those apart. A
            # plateau at `beta` of the top read a 200/s limit up to 2.5 % high, still over it,
            # and drained the server's bucket ~15 s later: a second 429 and a second pause (in
            # 4 of 8 `bench rate-unknown` runs: 0.93 of the limit against 0.96). The plateau
            # after a slow start stands under the middle of the two instead.
            margin = (min(self._kept(self._started, now), w_max) + w_max) / 2 / max(w_max, 1e-9)
            # The pace that ran long enough to prove itself: the server's bucket (`burst_s` of
            # its limit) hides a pace above the limit for about that long, so a pace is proven
            # only `burst_s` back, however many doublings a fast slow start fit in since (at one
            # every 50 ms, two: the pace at the 429 is about 3.7 times the limit).
            back = max(1.0, s.burst_s / self._doubling_at(current or s.unbounded))
            ran = max(s.initial, (current or 0.0) / math.pow(2.0, back))
            if w_max < s.max_cut * ran:
                # Far under what that pace explains: a storm or a hiccup as likely as a limit,
                # so the pace that ran before is climbed back to soon (see _quiet).
                self._high = max(self._high, ran)
                self._restart = True
        elif self._w_max is None:
            # At the configured ceiling (or past `unbounded`): the 429 says the pace is too
            # fast, but not by how much. What got through bounds it; a window that still
            # holds a start-up reads low, so one event moves at most to `max_cut` of the pace.
            delivered = self._delivered.rate(now, since=self._held)
            candidates = [c for c in (delivered or None, self.ceiling) if c is not None]
            w_max = min(candidates) if candidates else s.initial
            if self.ceiling is not None:
                w_max = max(w_max, s.max_cut * self.ceiling)
            guessed = True
        else:
            held_a_while = not self._guessed or now - self._epoch >= s.reprobe_after_s
            if held_a_while and self._w_max >= self._high:
                # A limit found (or one that held a while) was real, and may come back.
                self._high, self._restart = self._w_max, False
            w_max = self._found(self._held, now)
            if now - self._epoch >= self._quiet():
                # A probe: the plateau below it held, so the limit is no lower than it was.
                self._misses = self._misses + 1 if w_max <= self._w_max / s.beta else 0
                w_max = max(w_max, self._w_max)
            else:
                self._misses = 0
                # The limit fell while the pace held, but when is unknown (the bucket may have
                # been full for longer than the window says): a guess, soon probed above.
                guessed = now - self._held > s.window_s
                steady = self._since_pause(now) if guessed else None
                if steady is not None and steady > w_max:
                    # Everything that got through since the pause (whose end found the bucket
                    # full) explains the 429 by a higher limit than the last window does (as if
                    # the bucket had been full a second ago): a pace barely over the limit,
                    # which emptied the bucket slowly (a limit read a little high by a short
                    # slow start does it). That is the limit, not a guess probed above soon at
                    # the cost of a pause; and were it still too high (the limit fell in
                    # mid-plateau), the pace under it meets a 429 soon, read from a full bucket.
                    w_max, guessed = steady, False
                # Read from a bucket full at the pause's end, far under a limit that held (not a
                # slow start's pace a storm cut off): a drop, whose first look climbs slowly.
                fresh = (
                    not guessed
                    and not self._restart
                    and self._high > max(s.floor, w_max) / s.max_cut
                )
        self._w_max = max(s.floor, w_max)
        self._margin = margin
        self._guessed, self._fresh = guessed, fresh
        self._epoch = self._decreased = now
        self._slow_start = False
        self.decreases += 1
        return Verdict.RATE

    # -- a resumed run starts from what an earlier process learned (issue 14 §6) -----------

    def learned(self) -> float | None:
        """The limit found so far (requests/s), for a resume to start from; None while none was
        found (a slow start, or a configured ceiling that held)."""
        return self._w_max

    def seed(self, limit: float, weight: float) -> None:
        """Start from ``limit``, found by an earlier process of the run, trusted by ``weight``
        (1.0: found just now, toward 0.0 as it ages). The plateau starts under a limit between
        a cold start's (the ceiling, or ``initial``) and ``limit``, by ``weight``, and when that
        is under ``limit`` it climbs back to it after a short plateau, as after a storm: a
        limit that fell meanwhile meets that climb with a 429 that reads it. The server's
        bucket refilled while nobody sent, so a 429 counts from full (see :meth:`_found`).
        Before any request only."""
        s = self._s
        cold = self.ceiling if self.ceiling is not None else s.initial
        weight = min(1.0, max(0.0, weight))
        start = max(s.floor, cold + (limit - cold) * weight)
        if s.max_cut**0.25 * limit <= start < limit:
            start = limit  # within about 5 % under it: not worth a climb
        self._w_max = start
        self._high = limit if limit > start else 0.0
        self._restart = False
        # A guess until it has held `reprobe_after_s`: a 429 sooner says the limit fell
        # meanwhile, and the seed must not become a limit that held (one worth probing for
        # every few seconds, see throttled).
        self._guessed = True
        # Under `limit`: climbed back to it after the short plateau. At it: probed above
        # only after `probe_after_s`, as a limit found (each miss doubles the short one).
        self._misses = 0 if self._high else 2 + math.ceil(
            math.log2(max(1.0, s.probe_after_s / s.reprobe_after_s))
        )
        self._slow_start = False
        self._epoch = self._held = self._clock()


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

    # -- a resumed run starts from what an earlier process learned (issue 14 §6) -----------

    def learned(self) -> int | None:
        """The in-flight cap now, when concurrency 429s have lowered it (None: the configured
        cap holds), for a resume to start from."""
        limit = self.limit
        return limit if limit < self._max else None

    def seed(self, limit: int, weight: float) -> None:
        """Start with the cap ``limit`` an earlier process of the run had lowered it to, nearer
        the configured cap by the time since (``weight``: 1.0 just now, toward 0.0), never
        above it; it regrows from there as after a concurrency 429. Before any request only."""
        weight = min(1.0, max(0.0, weight))
        self._limit = max(1, min(self._max, round(self._max - (self._max - limit) * weight)))
        self._epoch = self._clock()


def trust(age_s: float, half_life_s: float) -> float:
    """How far a pace learned ``age_s`` seconds ago still holds: halved every ``half_life_s``,
    and 0.0 (start cold) from four half-lives on, or when ``half_life_s`` is 0 (never trusted).
    An age below 0 (clocks set back) is taken as now."""
    if half_life_s <= 0 or not math.isfinite(age_s):
        return 0.0
    weight = math.pow(0.5, max(0.0, age_s) / half_life_s)
    return weight if weight > 1 / 16 else 0.0
