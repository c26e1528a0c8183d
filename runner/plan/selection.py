"""What a job selects, in the runner's own terms: one :class:`Source` per spec target.

The spec layer speaks YAML (kinds, `where:` blocks, relative times); the planner turns it into
these frozen values with every time already resolved, so discovery and tests never see a
duration again. IDs written in the spec or a manifest are the same for every kind; a ``where``
becomes its kind's own :class:`~runner.kinds.listing.Listing`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from runner.kinds.base import ResourceKind, Target
from runner.kinds.listing import Listing


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


Source = Explicit | Manifest | Listing


def source_kind(source: Source) -> ResourceKind:
    """The kind a source yields (the first, for a selector's listing that yields several)."""
    return source.kind


def source_kinds(source: Source) -> tuple[ResourceKind, ...]:
    """Every kind a source may yield."""
    return source.kinds() if isinstance(source, Listing) else (source.kind,)


def phase(source: Source) -> int:
    """Discovery order, the phase of the kind a source yields: v1 conversations first, so that
    their children can be skipped as covered."""
    return source.kind.phase
