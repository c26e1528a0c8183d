"""Twilio's layered limits: account concurrency, per-conversation and per-Service APS, and an
optional per-product request-rate bucket.

APS limits are token buckets whose burst equals the rate: a client pacing exactly N/s never
empties the bucket (no false 429 from timer jitter), while a sustained N+k/s does within a second.
Only accepted actions take a token; a 429 costs nothing, as Twilio says a throttled request "is
never processed".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

THROTTLE_KINDS: Final = ("account_concurrency", "conversation_aps", "service_aps", "product_rate")


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` banked; times from a monotonic clock."""

    rate: float
    burst: float
    tokens: float
    stamp: float

    @classmethod
    def full(cls, rate: float, burst: float, now: float) -> TokenBucket:
        return cls(rate, burst, burst, now)

    def take(self, now: float) -> float:
        """Take one token: 0.0 on success, else the seconds until one is available."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class KeyedBuckets:
    """One bucket per key (conversation SID, Service SID, product), created full on first use.

    Buckets left idle long enough to refill are dropped on a periodic sweep, so a purge over a
    million conversations does not keep a million buckets.
    """

    def __init__(self) -> None:
        self._buckets: dict[str, TokenBucket] = {}
        self._next_sweep = 0.0

    def take(self, key: str, rate: float, burst: float, now: float) -> float:
        """Take a token from ``key``'s bucket (re-shaped if the settings changed)."""
        if now >= self._next_sweep:
            self._sweep(now)
        bucket = self._buckets.get(key)
        if bucket is None or bucket.rate != rate or bucket.burst != burst:
            bucket = self._buckets[key] = TokenBucket.full(rate, burst, now)
        return bucket.take(now)

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + 5.0
        idle = [k for k, b in self._buckets.items()
                if b.tokens + (now - b.stamp) * b.rate >= b.burst]
        for key in idle:
            del self._buckets[key]

    def clear(self) -> None:
        """Forget every bucket (after a settings change)."""
        self._buckets.clear()


class Concurrency:
    """Requests in flight for the account."""

    def __init__(self) -> None:
        self.in_flight = 0

    def enter(self, cap: int | None) -> bool:
        """Admit a request unless ``cap`` are already in flight; the caller must ``leave``."""
        if cap is not None and self.in_flight >= cap:
            return False
        self.in_flight += 1
        return True

    def leave(self) -> None:
        self.in_flight -= 1


class PauseBook:
    """The pauses the emulator asked for, to count requests sent into them (``sent_during_pause``).

    A 429's Retry-After asks its client to send nothing to that scope (a conversation, a
    Service, a product or the account) until it runs out. A request that arrives in that window
    breaks the request only if its client could have known: one sent before the client read the
    429 was already in flight. A client reads a response before it sends the next request on
    the same connection (HTTP/1.1, no pipelining), so a pause counts from the first request
    that arrives on the 429's own connection after it; any request of the scope that arrives
    from then on (that one included) until the pause ends was sent into it. A 429 without
    Retry-After asks for no particular pause and records none.
    """

    def __init__(self) -> None:
        # connection -> the pauses answered on it that its client has not yet shown it read
        self._unread: dict[object, list[tuple[str, str, float]]] = {}
        # (kind, key) -> (known from, until): the scope's pause, once its client has read it
        self._known: dict[tuple[str, str], tuple[float, float]] = {}
        self._next_sweep = 0.0

    def forget(self) -> None:
        """The client that read these pauses is gone (a test killed its process): a new one
        never read them, so nothing it sends counts as sent into them."""
        self._unread.clear()
        self._known.clear()

    def asked(self, connection: object, kind: str, key: str, until: float) -> None:
        """A 429 on ``connection`` asked for no request of ``kind``/``key`` before ``until``."""
        self._unread.setdefault(connection, []).append((kind, key, until))

    def arrived(self, connection: object, now: float) -> None:
        """A request arrived on ``connection``: its client has read every answer sent on it."""
        if now >= self._next_sweep:
            self._sweep(now)
        unread = self._unread.pop(connection, None)
        if not unread:
            return
        for kind, key, until in unread:
            if until <= now:
                continue
            since, end = self._known.get((kind, key), (now, 0.0))
            # One window per scope: a pause read while the last one still runs extends it.
            self._known[(kind, key)] = (since if end > now else now, max(end, until))

    def inside(self, kind: str, key: str, arrived: float) -> bool:
        """Whether a request of ``kind``/``key`` that arrived at ``arrived`` went into a pause."""
        window = self._known.get((kind, key))
        return window is not None and window[0] <= arrived < window[1]

    def clear(self) -> None:
        """Lift every pause (the limits or the Retry-After settings changed)."""
        self._unread.clear()
        self._known.clear()

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + 5.0
        self._known = {k: w for k, w in self._known.items() if w[1] > now}
        for connection in [c for c, p in self._unread.items() if all(u <= now for *_, u in p)]:
            del self._unread[connection]
