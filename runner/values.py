"""Plain values shared by several layers: settings the planner fills in and counters a run keeps.

They live at the bottom, beside :mod:`runner.errors`, so that a module holding one (the planner,
the sharding, the metrics) need not import the layer that uses it: the planner carries a
:class:`RetryPolicy` and a :class:`ProductLimit` without loading the HTTP client.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

__all__ = ["ProductLimit", "RetryPolicy", "Scope", "Tally"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long a request is retried: by attempts (faults) and by total time (faults and 429s)."""

    max_attempts: int = 8
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_elapsed: float = 900.0
    max_pause: float = 900.0


class Scope(NamedTuple):
    """One of Twilio's per-scope action limits a request counts against (30/s per conversation
    for message and participant deletes, per Service for conversation deletes).

    A kind says which scope its delete belongs to; the limits pace and pause each scope apart.
    A tuple, so that the hash taken for every request is C code.
    """

    kind: Literal["conversation", "service"]
    id: str

    def __str__(self) -> str:
        return f"{self.kind} {self.id}"


@dataclass(frozen=True, slots=True)
class ProductLimit:
    """An optional request rate (req/s), burst and in-flight cap for one product host."""

    rate: float | None = None
    burst: int | None = None
    concurrency: int | None = None


@dataclass
class Tally:
    """Counters of a run's traffic, for reports and metrics."""

    requests: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    throttled: int = 0
