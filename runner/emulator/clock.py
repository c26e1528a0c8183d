"""The emulated wall clock: real UTC time plus an offset the admin API can advance.

Dates and the 24 h idempotency TTL read this clock, so a test can age a key by a day without
waiting; rate windows and operation delays use the loop's monotonic clock instead.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


class WallClock:
    """UTC wall time shifted by an offset that only moves forward."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def now(self) -> float:
        """Emulated seconds since the epoch."""
        return time.time() + self.offset_s

    def advance(self, seconds: float) -> None:
        """Move emulated time forward (never back, so TTLs cannot un-expire)."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self.offset_s += seconds


def iso(epoch_s: float) -> str:
    """Twilio's date-time rendering, e.g. ``2015-12-16T22:18:37Z``."""
    # time.gmtime, not datetime: a listing renders two of these per item, at 2.5x the cost.
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(epoch_s)))


def parse_iso(text: str) -> float | None:
    """Parse an ISO 8601 date or date-time (``Z`` or offset); ``None`` when malformed."""
    candidate = text.strip()
    if candidate.endswith(("Z", "z")):
        candidate = candidate[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(candidate)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
