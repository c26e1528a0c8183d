"""The controller's reaction to a limit that falls under a running pace, with every 429 pausing
the whole product (as runner.wire.limits does): which 429s it answers, and what it reads."""

from __future__ import annotations

import random

from runner.wire.adaptive import RateController, Verdict
from tests.runner.wire.test_adaptive import Bucket, FakeClock, drive_paused


class Recorded(RateController):
    """A controller that keeps what each 429 did to it."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.verdicts: list[Verdict] = []

    def throttled(self, sent_at: float) -> Verdict:
        verdict = super().throttled(sent_at)
        self.verdicts.append(verdict)
        return verdict


def test_a_429_sent_after_the_pause_is_news_one_sent_before_the_decrease_is_not() -> None:
    """One decrease per congestion event counts from the decrease, not from the end of its
    pause: the server refilled its bucket during the pause, so a 429 right after it is news."""
    clock = FakeClock()
    controller = RateController(clock, ceiling=200)
    clock.now = 10.0
    assert controller.throttled(9.99) is Verdict.RATE
    controller.hold(11.1)  # Retry-After: 1 plus jitter
    clock.now = 11.2
    assert controller.throttled(10.0) is Verdict.ABSORBED  # in flight before the decrease
    assert controller.throttled(11.15) is Verdict.RATE  # sent 50 ms after the pause ended
    assert controller.decreases == 2


def test_a_limit_far_under_the_pace_is_read_by_the_429_after_the_first_pause() -> None:
    """200/s, then 30/s. The first 429 (0.12 s after the drop) cannot tell when the limit fell,
    so it reads only a bound far above 30/s; the pace that follows its pause empties the refilled
    bucket within 0.15 s, and that 429 reads 30/s, as closely as one request in those 0.12 s
    tells (the reading is the highest limit that explains it: 32.5/s from a pace of 194/s). A
    plateau that much over the limit empties the server's bucket only after 9 s, and that 429
    reads it from everything since the pause: 30/s. (The second 429 was once absorbed as part
    of the first event, which kept the pace at 178/s and a 429 and a pause every 1.2 s.)"""
    clock = FakeClock()
    controller = Recorded(clock)
    rng = random.Random(4)
    drive_paused(controller, clock, Bucket(200, 20), 7, rng)
    drop = clock.now
    before = len(controller.verdicts)
    accepted, throttled = drive_paused(controller, clock, Bucket(30, 20), 5, rng)
    assert controller.verdicts[before:][:2] == [Verdict.RATE, Verdict.RATE]
    assert len([t for t in throttled if t < drop + 2]) == 2
    # The plateau under the limit read (5 s on, the pace is in the first look's slow climb):
    # at most one request in the 0.12 s the refilled bucket lasted over it.
    limit = controller.learned()
    assert limit is not None and 0.9 * 30 <= 0.99 * limit <= 0.99 * (30 + 1 / 0.12)
    # From the end of the second pause, 30/s is kept (no 429 before the first climb back).
    resumed = throttled[1] + 1.2
    assert not [t for t in throttled if throttled[1] < t < resumed + 2]
    assert sum(1 for t in accepted if resumed <= t < resumed + 2) / 2 >= 0.9 * 30
    # Sent on at that plateau (between looks for the old limit, ever rarer), the server's bucket
    # runs dry at last, and that 429 reads 30/s.
    drive_paused(controller, clock, Bucket(30, 20), 40, rng)
    limit = controller.learned()
    assert limit is not None and 0.99 * limit <= 30 <= 1.01 * limit
