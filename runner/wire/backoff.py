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


# Longer than any pause worth telling apart (31,700 years): a header beyond it reads as this,
# so a Retry-After of 400 digits is a finite float that retry.max_pause refuses, not an
# OverflowError inside a worker.
RETRY_AFTER_CEILING = 1e12


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date; None if absent.

    A malformed header is treated as absent so the caller falls back to backoff, a date in the
    past means "now" (0 s) rather than a negative sleep, and whatever the text, the answer is
    None or a finite number of seconds between 0 and :data:`RETRY_AFTER_CEILING`.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():  # "²".isdigit() is true, but int() refuses it
        # Compared as text first: int() of over 4,300 digits raises, float() of 309 overflows.
        digits = text.lstrip("0") or "0"
        if len(digits) > len(str(int(RETRY_AFTER_CEILING))):
            return RETRY_AFTER_CEILING
        return min(float(int(digits)), RETRY_AFTER_CEILING)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now or datetime.now(UTC)
    try:
        seconds = (when - current).total_seconds()
    except OverflowError:  # an offset that pushes the date out of datetime's range
        return None
    return min(max(0.0, seconds), RETRY_AFTER_CEILING)


def jittered(delay: float, rng: random.Random, spread: float = 0.2) -> float:
    """``delay`` plus up to ``spread`` of it (50 ms at least): paused workers never wake as one."""
    return delay + rng.uniform(0.0, max(0.05, delay * spread))
