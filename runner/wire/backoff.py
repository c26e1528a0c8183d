"""Retry timing: full-jitter exponential backoff and Retry-After parsing (pure functions)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


@dataclass(frozen=True, slots=True)
class Backoff:
    """Full-jitter exponential backoff: attempt n waits uniform(0, min(cap, base * 2**n)).

    Full jitter (rather than equal or none) is what keeps many workers that failed together from
    retrying together; see the AWS architecture blog "Exponential Backoff And Jitter".
    """

    base: float
    cap: float

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The wait before retry number ``attempt`` (0-based)."""
        ceiling = min(self.cap, self.base * (2 ** min(attempt, 32)))
        return rng.uniform(0.0, ceiling)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date; None if absent.

    A malformed header is treated as absent so the caller falls back to backoff, and a date in the
    past means "now" (0 s) rather than a negative sleep.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():  # "²".isdigit() is true, but int() refuses it
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now or datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())


def jittered(delay: float, rng: random.Random, spread: float = 0.2) -> float:
    """``delay`` plus up to ``spread`` of it (50 ms at least): paused workers never wake as one."""
    return delay + rng.uniform(0.0, max(0.05, delay * spread))
