"""What a job selects, in the runner's own terms: one :class:`Source` per spec target.

The spec layer speaks YAML (kinds, `where:` blocks, relative times); the planner turns it into
these frozen values with every time already resolved, so discovery and tests never see a
duration again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from runner.kinds.base import ResourceKind, Target
from runner.kinds.registry import by_name, by_spec


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Times strictly before ``before`` and at or after ``after``; None bounds are open."""

    before: datetime | None = None
    after: datetime | None = None

    def contains(self, when: datetime | None) -> bool:
        """Whether ``when`` lies in the window (an unknown time never matches a bounded one).

        A naive ``when`` is unknown too: without an offset it could be any instant of a day.
        """
        if self.before is None and self.after is None:
            return True
        if when is None or when.utcoffset() is None:
            return False
        if self.before is not None and not when < self.before:
            return False
        return self.after is None or when >= self.after


@dataclass(frozen=True, slots=True)
class ConversationQuery:
    """Conversations by state and age (v1 states are lower-case, v2 statuses upper-case)."""

    api: str  # "v1" | "v2"
    states: tuple[str, ...] = ()
    created: TimeWindow = TimeWindow()
    updated: TimeWindow = TimeWindow()


@dataclass(frozen=True, slots=True)
class Explicit:
    """IDs written in the spec."""

    kind: ResourceKind
    targets: tuple[Target, ...]


@dataclass(frozen=True, slots=True)
class Manifest:
    """IDs in a manifest file (validated in full before the run starts)."""

    kind: ResourceKind
    rows: Callable[[], Iterator[Target]]  # streams the rows again, re-checking each one
    count: int


@dataclass(frozen=True, slots=True)
class ListConversations:
    """Conversations found by listing."""

    query: ConversationQuery


@dataclass(frozen=True, slots=True)
class ListChildren:
    """Messages or participants of some v1 conversations: all, a list, or those matching a query."""

    kind: ResourceKind  # messages or participants
    within: tuple[str, ...] | ConversationQuery | None  # None = every conversation
    created: TimeWindow = TimeWindow()  # messages only


@dataclass(frozen=True, slots=True)
class ListConfigurations:
    """v2 configurations by age (filtered client-side: the list has no date filter)."""

    created: TimeWindow = TimeWindow()
    updated: TimeWindow = TimeWindow()


@dataclass(frozen=True, slots=True)
class ListStores:
    """Every Memory store (the list returns bare IDs; there is nothing to filter on)."""


Source = Explicit | Manifest | ListConversations | ListChildren | ListConfigurations | ListStores


def source_kind(source: Source) -> ResourceKind:
    """The kind a source yields."""
    if isinstance(source, Explicit | Manifest | ListChildren):
        return source.kind
    if isinstance(source, ListConversations):
        return by_spec("conversations", source.query.api)
    if isinstance(source, ListConfigurations):
        return by_name("configuration")
    return by_name("memory_store")


def phase(source: Source) -> int:
    """Discovery order, the phase of the kind a source yields: v1 conversations first, so that
    their children can be skipped as covered."""
    return source_kind(source).phase
