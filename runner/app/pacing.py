"""The pace a run has learned, kept in its log so that a resume starts from it (issue 14 §6).

A run with no configured rate finds the server's limit from its 429s
(:mod:`runner.wire.adaptive`), and a resume that started from scratch met that limit again the
costly way: a slow start into it, 22 to 46 % of its requests 429d where a fresh run met 2 to
4 %. So a run writes what its controllers have learned (each product's limit, the account's
lowered in-flight cap) in a pace line every :data:`PACE_INTERVAL_S` seconds it has changed, and
once more before its footer, through the run's one checkpoint writer. A resume seeds its
controllers from the last valid one, trusted half as much after each ``resume_half_life_s`` of
the config since it was written (:func:`runner.wire.adaptive.trust`), and starts cold from four
half-lives on.
"""

from __future__ import annotations

from datetime import UTC, datetime

import anyio
import structlog

from runner.clock import Clock
from runner.kinds.base import Product
from runner.log.records import Pace, pace_record
from runner.log.writer import CheckpointWriter
from runner.wire.adaptive import trust
from runner.wire.limits import Limits

log = structlog.get_logger("bulkops.pacing")

PACE_INTERVAL_S = 5.0  # a run killed outright loses at most this much of what it learned

# What a pace line says, as written (rates rounded as the line rounds them): a line is written
# only when this changes.
_Learned = tuple[tuple[tuple[Product, float], ...], int | None]


class PaceRecorder:
    """Writes a run's learned pace to its log when it has changed since the last pace line."""

    def __init__(self, limits: Limits, writer: CheckpointWriter, clock: Clock) -> None:
        self._limits = limits
        self._writer = writer
        self._clock = clock
        self._written: _Learned = ((), None)  # nothing learned: no line

    def record(self) -> None:
        """Queue a pace line if the learned pace changed (never one after the writer closed:
        the footer is the last line)."""
        rates, in_flight = self._limits.learned()
        learned: _Learned = (tuple(sorted((p, round(r, 1)) for p, r in rates.items())), in_flight)
        if learned == self._written:
            return
        try:
            self._writer.put(pace_record(self._writer.seconds(), rates, in_flight))
        except anyio.ClosedResourceError:
            return
        self._written = learned

    async def run(self, interval: float = PACE_INTERVAL_S) -> None:
        """Record every ``interval`` seconds until cancelled."""
        while True:
            await self._clock.sleep(interval)
            self.record()


def seed_from_log(
    limits: Limits,
    pace: Pace | None,
    started: datetime,
    half_life_s: float,
    now: datetime | None = None,
) -> float:
    """Start ``limits`` from ``pace``, the last pace line of the log of a run that began at
    ``started``, by how far it still holds; returns that weight (0.0: started cold, as with no
    pace line)."""
    if pace is None:
        return 0.0
    weight = trust(pace_age(pace, started, now), half_life_s)
    if weight > 0.0:
        limits.seed(pace.rates, pace.in_flight, weight)
    log.info(
        "pace_resumed" if weight > 0.0 else "pace_not_resumed",
        weight=round(weight, 3),
        **{f"rate_{p.value}": r for p, r in pace.rates.items()},
        **({} if pace.in_flight is None else {"in_flight": pace.in_flight}),
    )
    return weight


def pace_age(pace: Pace, started: datetime, now: datetime | None = None) -> float:
    """Seconds since ``pace`` was written (the wall clock: it spans processes and reboots)."""
    at = (now or datetime.now(UTC)) - started
    return at.total_seconds() - pace.ts
