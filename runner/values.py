"""Plain values shared by several layers: settings the planner fills in and counters a run keeps.

They live at the bottom, beside :mod:`runner.errors`, so that a module holding one (the planner,
the sharding, the metrics, the display) need not import the layer that uses it: the planner
carries a :class:`RetryPolicy` and a :class:`ProductLimit` without loading the HTTP client.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, Literal, NamedTuple, TypeVar

__all__ = ["ProductLimit", "Progress", "RetryPolicy", "Scope", "Tally"]

K = TypeVar("K", bound=Hashable)
S = TypeVar("S", bound=Hashable)


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


@dataclass
class Progress(Generic[K, S]):
    """Live counters of a run: targets found by kind ``K``, outcomes by kind and state ``S``.

    Generic so that it stays below the kinds and the log: the engine keeps a
    ``Progress[Resource, State]``, and the display and the metrics read it without loading the
    engine (and, through it, the HTTP client).
    """

    found: Counter[K] = field(default_factory=Counter)
    outcomes: Counter[tuple[K, S]] = field(default_factory=Counter)
    skipped_done: int = 0  # already final in the checkpoint being resumed
    pending_operations: int = 0
    discovery_done: bool = False
    # What the live view adds to the counters: the final outcomes of the earlier runs of a
    # resumed log that this run does not drive again, the sources of each kind still being
    # listed (while one is, more may be found), the targets the job's ids and manifests name
    # (known before they are listed), the run's traffic, and which run this is.
    earlier: Counter[tuple[K, S]] = field(default_factory=Counter)
    listing: Counter[K] = field(default_factory=Counter)
    named: Counter[K] = field(default_factory=Counter)
    traffic: Tally = field(default_factory=Tally)
    job: str = ""
    checkpoint: str = ""

    def outcome(self, state: S) -> int:
        """How many targets of any kind ended in ``state``."""
        return sum(n for (_, s), n in self.outcomes.items() if s is state)
