"""A controller seeded from a pace an earlier process learned (issue 14 §6), on a fake clock."""

from __future__ import annotations

import random

import pytest

from runner.wire.adaptive import ConcurrencyController, RateController, trust
from tests.runner.wire.test_adaptive import Bucket, FakeClock, drive_paused


@pytest.mark.parametrize(
    ("weight", "first_pace"),
    [
        pytest.param(1.0, 0.99 * 200, id="just-learned"),
        pytest.param(0.5, 0.99 * 150, id="one-half-life-old"),
        pytest.param(0.2, 0.99 * 120, id="older"),
    ],
)
def test_a_seeded_controller_meets_an_unchanged_limit_without_a_429(
    weight: float, first_pace: float
) -> None:
    """Seeded with the 200/s the server still allows, it starts under it (nearer the cold
    start's 100/s the older the seed) and is back at it within a few seconds, with no 429 —
    where a cold start's slow start meets the limit with one."""
    clock = FakeClock()
    seeded = RateController(clock)
    seeded.seed(200.0, weight)
    assert seeded.rate() == pytest.approx(first_pace, rel=0.01)
    accepted, throttled = drive_paused(seeded, clock, Bucket(200, 20), 10, random.Random(1))
    assert throttled == []
    assert sum(1 for t in accepted if t >= 4) / 6 >= 0.97 * 200

    cold_clock = FakeClock()
    cold = RateController(cold_clock)
    _, cold_throttled = drive_paused(cold, cold_clock, Bucket(200, 20), 10, random.Random(1))
    assert len(cold_throttled) >= 1


def test_a_seed_above_a_limit_that_fell_costs_one_429() -> None:
    """Seeded with 260/s where the server now allows 200/s, the first 429 reads the lower limit
    and the pace stays under it: the seed does not become a limit worth probing for."""
    clock = FakeClock()
    seeded = RateController(clock)
    seeded.seed(260.0, 1.0)
    accepted, throttled = drive_paused(seeded, clock, Bucket(200, 20), 10, random.Random(1))
    assert len(throttled) == 1
    assert len(accepted) / 10 >= 0.8 * 200


def test_a_seed_under_a_configured_rate_decays_toward_it() -> None:
    """With a configured rate (the ceiling), a cold start is the ceiling: a seed under it starts
    between the two by its weight; one above it never lifts the pace beyond it."""
    clock = FakeClock()
    control = RateController(clock, ceiling=300.0)
    control.seed(200.0, 0.5)
    assert control.rate() == pytest.approx(0.99 * 250)
    above = RateController(clock, ceiling=300.0)
    above.seed(450.0, 1.0)
    assert above.rate() is None  # the configured limiter paces at the ceiling


def test_a_seeded_in_flight_cap_regrows_and_never_exceeds_the_configured_one() -> None:
    """The in-flight cap starts where the log left it (by its weight), grows back one a second,
    and a cap above the configured one is the configured one."""
    clock = FakeClock()
    control = ConcurrencyController(64, clock)
    control.seed(40, 1.0)
    assert control.limit == 40
    assert control.learned() == 40
    clock.now += 3.0
    assert control.limit == 43
    wide = ConcurrencyController(16, clock)
    wide.seed(500, 1.0)
    assert wide.limit == 16
    assert wide.learned() is None


@pytest.mark.parametrize(
    ("age", "weight"),
    [
        pytest.param(0.0, 1.0, id="now"),
        pytest.param(-30.0, 1.0, id="clock-set-back"),
        pytest.param(300.0, 0.5, id="one-half-life"),
        pytest.param(900.0, 0.125, id="three-half-lives"),
        pytest.param(1200.0, 0.0, id="four-half-lives-cold"),
        pytest.param(float("nan"), 0.0, id="not-a-number"),
    ],
)
def test_trust_halves_every_half_life_and_ends_at_four(age: float, weight: float) -> None:
    """A learned pace is trusted half as much after each half-life, not at all from four on."""
    assert trust(age, 300.0) == pytest.approx(weight)
    assert trust(age, 0.0) == 0.0  # a half-life of 0: never trusted
