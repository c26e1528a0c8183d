"""The first look for a limit that held before, above one just read lower (issue 12): a slow
climb, so that a limit still low answers it seconds later (not while the job settles onto the new
limit) and a limit that came back meanwhile is followed without a pause. Every 429 pauses the
whole product, as runner.wire.limits does (:func:`drive_paused`)."""

from __future__ import annotations

import random

import pytest

from runner.wire.adaptive import AdaptiveSettings, RateController
from tests.runner.wire.test_adaptive import Bucket, FakeClock, drive_paused

PAUSE_MAX = 1.2  # Retry-After 1 s plus at most 0.2 s of jitter (drive_paused)


def _dropped(seed: int) -> tuple[RateController, FakeClock, random.Random, float]:
    """A controller that held 200/s for 7 s, and the moment the limit falls."""
    clock = FakeClock()
    controller = RateController(clock)
    rng = random.Random(seed)
    drive_paused(controller, clock, Bucket(200, 20), 7, rng)
    return controller, clock, rng, clock.now


def _fresh(rate: float, now: float) -> Bucket:
    """A bucket made anew, full, at ``rate`` (as the emulator does when its limit changes)."""
    bucket = Bucket(rate, 20)
    bucket.stamp = now
    return bucket


def _count(times: list[float], start: float) -> int:
    return sum(1 for t in times if start <= t < start + 1.0)


@pytest.mark.parametrize("seed", range(6))
def test_the_first_look_after_a_drop_comes_after_the_job_has_settled(seed: int) -> None:
    """200/s, then 100/s: two 429s read it (the second from the bucket the pause refilled),
    and the look for 200/s that follows does not pause the job for 3 s after the second pause
    (it did 2.6 s after, at the edge of the 3 s the new pace takes to be seen as sustained),
    yet it still finds 100/s, and reads it again."""
    controller, clock, rng, drop = _dropped(seed)
    accepted, throttled = drive_paused(controller, clock, _fresh(100, drop), 7, rng)
    assert len(throttled) >= 3
    first, second, look = throttled[:3]
    assert first - drop < 0.5 and second - drop < 2.0
    settled = second + PAUSE_MAX
    assert look - settled >= 3.0
    # Every 1-s window from the second pause's end on holds 90 % of 100/s until the look.
    starts = [settled + 0.25 * i for i in range(int((look - 1.0 - settled) / 0.25) + 1)]
    assert min(_count(accepted, s) for s in starts) >= 90
    limit = controller.learned()
    assert limit is not None and 95 <= limit <= 105


@pytest.mark.parametrize("seed", range(4))
def test_looks_after_one_that_found_the_limit_still_low_climb_fast(seed: int) -> None:
    """Only the first look is slow: once one has found the limit still low, the next climbs
    within `climb_s` again, so a limit that comes back before that look begins is reached
    soon (a slow climb would only delay it)."""
    controller, clock, rng, drop = _dropped(seed)
    _, throttled = drive_paused(controller, clock, _fresh(100, drop), 12, rng)
    s = AdaptiveSettings()
    look, next_look = throttled[2], throttled[3]
    assert next_look - look <= PAUSE_MAX + s.reprobe_after_s + s.climb_s + 0.2


@pytest.mark.parametrize("seed", range(4))
def test_a_limit_that_comes_back_during_the_first_look_is_followed_without_a_pause(
    seed: int,
) -> None:
    """200/s, 100/s for 5.5 s (the first look is climbing by then), 200/s again: the climb goes
    on to 200/s with no 429 and no pause, and 2 s after the raise 90 % of 200/s gets through.
    (A 0.6-s climb met 100/s 5.3 s after the drop and paused the job past the raise, and the
    next look came 2 s after that pause.)"""
    controller, clock, rng, drop = _dropped(seed)
    _, low_429s = drive_paused(controller, clock, _fresh(100, drop), 5.5, rng)
    assert len(low_429s) == 2
    raised = clock.now
    accepted, throttled = drive_paused(controller, clock, _fresh(200, raised), 4, rng)
    assert throttled == []
    assert min(_count(accepted, raised + 2 + 0.25 * i) for i in range(5)) >= 0.9 * 200
