"""What a job selects, in the runner's own terms: one :class:`Source` per spec target.

The spec layer speaks YAML (kinds, `where:` blocks, relative times); the planner turns it into
these frozen values with every time already resolved, so discovery and tests never see a
duration again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from runner.kinds.catalog import Resource, Target


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

    resource: Resource
    targets: tuple[Target, ...]


@dataclass(frozen=True, slots=True)
class Manifest:
    """IDs in a manifest file (validated in full before the run starts)."""

    resource: Resource
    rows: Callable[[], Iterator[Target]]  # streams the rows again, re-checking each one
    count: int


@dataclass(frozen=True, slots=True)
class ListConversations:
    """Conversations found by listing."""

    query: ConversationQuery


@dataclass(frozen=True, slots=True)
class ListChildren:
    """Messages or participants of some v1 conversations: all, a list, or those matching a query."""

    resource: Resource  # MESSAGE or PARTICIPANT
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


def source_resource(source: Source) -> Resource:
    """The resource a source yields."""
    if isinstance(source, Explicit | Manifest | ListChildren):
        return source.resource
    if isinstance(source, ListConversations):
        return Resource.CONVERSATION_V1 if source.query.api == "v1" else Resource.CONVERSATION_V2
    if isinstance(source, ListConfigurations):
        return Resource.CONFIGURATION
    return Resource.MEMORY_STORE


def phase(source: Source) -> int:
    """Discovery order: v1 conversations first, so their children can be skipped as covered;
    then messages, participants and v2 conversations; configurations; Memory stores last, as
    configurations may point at them."""
    resource = source_resource(source)
    if resource is Resource.CONVERSATION_V1:
        return 0
    if resource is Resource.CONFIGURATION:
        return 2
    if resource is Resource.MEMORY_STORE:
        return 3
    return 1
