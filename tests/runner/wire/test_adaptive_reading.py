"""What a 429 reads of the server's limit when the run is not as tidy as a fake clock: a
server stalled by a busy machine, a pause the controller was not taught, a climb back that held.

Each of these read a limit far under the one the server kept, under CPU contention (the resume
pacing test recorded 23, 19.5 and 1.0/s of a 40/s limit, about one run in four with both cores
busy), and a resume then started from that reading.
"""

from __future__ import annotations

import random

from runner.wire.adaptive import RateController, Verdict
from tests.runner.wire.test_adaptive import Bucket, FakeClock, drive_paused


def _accept_at(controller: RateController, clock: FakeClock, pace: float, seconds: float) -> None:
    """Answers accepted at ``pace`` for ``seconds`` (what a server below its limit does)."""
    end = clock.now + seconds
    while clock.now + 1 / pace <= end:
        clock.now += 1 / pace
        controller.accepted()


def test_a_slow_starts_pace_is_not_taken_for_the_servers_bucket() -> None:
    """A slow start cut off at 44/s, far under its 100/s pace, keeps 100/s to climb back to
    (it may have been a storm); the limit is 40/s with a bucket of 4 (0.1 s of it). The plateau
    at 0.99 * 44/s empties that bucket, and that 429 reads 40/s: the server's bucket is judged
    by the limits it held, not by a slow start's pace (which made it 10 and read 31/s)."""
    clock = FakeClock()
    controller = RateController(clock)
    rng = random.Random(5)
    drive_paused(controller, clock, Bucket(44, 4.4), 0.5, rng)
    assert controller.decreases == 1
    first = controller.learned()
    assert first is not None and 40 < first < 48
    drive_paused(controller, clock, Bucket(40, 4), 4, rng)
    assert controller.decreases == 2
    limit = controller.learned()
    assert limit is not None and 0.95 * 40 <= limit <= 40.5


def test_a_429_sent_before_a_pause_it_was_not_taught_reads_nothing() -> None:
    """A pause the controller was not taught (a conversation's own limit held the product, or
    the account's in-flight cap held everything) ends after a 429 of a request sent before it
    comes: the bucket that 429 found refills during the pause, so it is absorbed. It read a
    window that begins in the future (201/s over a 40/s limit, and then 1.0/s)."""
    clock = FakeClock()
    controller = RateController(clock)
    drive_paused(controller, clock, Bucket(40, 4), 3, random.Random(6))
    learned = controller.learned()
    assert learned is not None
    _accept_at(controller, clock, 0.99 * learned, 1.0)
    sent = clock.now - 0.01
    controller.hold(clock.now + 1.2)  # the pause of a 429 the controller was not taught
    assert controller.throttled(sent) is Verdict.ABSORBED
    assert controller.learned() == learned


def test_a_climb_back_that_held_does_not_empty_the_bucket() -> None:
    """A resumed run seeded at half its learned 200/s climbs back to it, and once it held a
    window it is the limit again. A 429 after a server's stall (nothing answered for 0.3 s,
    then the bunched requests met its bucket) reads what got through from a full bucket (the
    climb back emptied nothing), near the pace, not 1/s from an empty one."""
    clock = FakeClock()
    controller = RateController(clock)
    controller.seed(200.0, 0.5)
    _accept_at(controller, clock, 150.0, 2.0)  # the short plateau
    while (pace := controller.rate()) is not None and clock.now < 10.0:
        _accept_at(controller, clock, pace, 0.05)  # the climb, and a window at the limit
        if controller.learned() == 200.0:
            break
    assert controller.learned() == 200.0
    _accept_at(controller, clock, 198.0, 0.2)
    clock.now += 0.3  # a stall: nothing answered
    assert controller.throttled(clock.now) is Verdict.RATE
    limit = controller.learned()
    assert limit is not None and limit >= 0.6 * 200


def test_a_plateau_barely_over_the_limit_reads_it_from_everything_since_the_pause() -> None:
    """A slow start that read 206/s of a limit that is 200/s (a short slow start reads a few
    per cent high) sets a plateau at 204/s, which empties the server's bucket only after about
    5 s. That 429 reads the limit from every acceptance since the pause (the bucket was full
    there): 200/s, kept for good. The last second alone read it a bucket low (182/s), as a
    guess probed above two seconds later, at the cost of another pause."""
    clock = FakeClock()
    controller = RateController(clock)
    rng = random.Random(7)
    drive_paused(controller, clock, Bucket(206, 20.6), 0.5, rng)
    first = controller.learned()
    assert first is not None and 0.99 * first > 200
    accepted, throttled = drive_paused(controller, clock, Bucket(200, 20), 25, rng)
    assert len(throttled) == 1, throttled
    limit = controller.learned()
    assert limit is not None and 199 <= limit <= 201
    assert sum(1 for t in accepted if throttled[0] + 2 <= t) / (clock.now - throttled[0] - 2) >= 195
