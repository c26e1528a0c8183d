"""What every lister shares: time windows, the reading of list items, and the context a lister
runs in.

A kind lists its own resources (``Listing.list``) through a :class:`ListContext` that the engine's
discovery implements: pages of a v1 list or of a token-paged list, the emit of a page of targets
into the run, the job's Service, and a :class:`Rejections` count of what was left out. A lister
never talks HTTP itself, so the kinds stay below the wire.

Nothing a list reply says is trusted to widen the selection: every ID is checked against its
kind's pattern as it is read (:func:`listed_id`), every filter is checked again on each item
(:func:`windows`), an item whose timestamp or state cannot be read is never selected by a bound
(:func:`chosen`), and an item that names another conversation or Service is left out
(:func:`belongs`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import structlog

from runner.errors import BadListing
from runner.kinds.base import Product, Target
from runner.kinds.ids import IdPattern

if TYPE_CHECKING:
    from runner.kinds.base import ResourceKind

__all__ = [
    "ANY_TIME",
    "AscendingCheck",
    "ListContext",
    "ListedConversations",
    "Listing",
    "Rejections",
    "TimeWindow",
    "belongs",
    "chosen",
    "item_id",
    "listed_id",
    "parse_time",
    "windows",
]

log = structlog.get_logger("bulkops.discovery")


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


ANY_TIME = TimeWindow()  # no bound: every time, known or not


def parse_time(value: Any) -> datetime | None:
    """An ISO-8601 timestamp with an offset from a list item, or None when it is missing,
    unreadable or naive (Twilio always sends ``Z`` or an offset; a naive time could be any)."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.utcoffset() is not None else None


@dataclass
class Rejections:
    """What one source's listings left out, and why: counts only (items may hold PII)."""

    invalid_id: int = 0  # no ID, not text, or not of the kind's pattern
    foreign: int = 0  # names another conversation or Service than the one listed
    unreadable: int = 0  # a state or timestamp a filter needs is missing or unreadable
    failed_listings: int = 0  # conversations whose children could not be listed to the end
    first_failure: BadListing | None = None
    path: str = ""  # the first listing that left something out

    def total(self) -> int:
        """Items and listings left out so far."""
        return self.invalid_id + self.foreign + self.unreadable + self.failed_listings

    def note(self, path: str, before: int) -> None:
        """Log what the page of ``path`` left out since the count was ``before``."""
        if self.total() == before:
            return
        if not self.path:
            self.path = path
        log.warning(
            "discovery_items_rejected",
            path=path,
            invalid_id=self.invalid_id,
            foreign=self.foreign,
            unreadable=self.unreadable,
        )

    def failed(self, error: BadListing) -> None:
        """Count a conversation whose listing could not be followed to its end."""
        self.failed_listings += 1
        if self.first_failure is None:
            self.first_failure = error
        log.warning("discovery_listing_failed", path=error.path, error=str(error)[:200])

    def error(self, default_path: str) -> BadListing | None:
        """The discovery error that closes the source, or None when nothing was left out."""
        if not self.total():
            return None
        if self.first_failure is not None and self.total() == self.failed_listings == 1:
            return self.first_failure
        parts = [
            f"{count} {'item' if count == 1 else 'items'} {what}"
            for count, what in (
                (self.invalid_id, "with an invalid id"),
                (self.foreign, "of another conversation or Service"),
                (self.unreadable, "with a missing or unreadable state or date"),
            )
            if count
        ]
        text = ", ".join(parts) + " not selected" if parts else ""
        if self.failed_listings:
            first = self.first_failure.message if self.first_failure is not None else ""
            if self.failed_listings == 1:
                more = f"and the listing stopped: {first}"
            else:
                more = f"{self.failed_listings} listings stopped (the first: {first})"
            text = f"{text}; {more}" if text else more
        return BadListing(self.path or default_path, text)


def listed_id(value: Any, pattern: IdPattern, rejected: Rejections) -> str | None:
    """``value`` when it is an ID of ``pattern``; otherwise counted and None."""
    if isinstance(value, str) and pattern.matches(value):
        return value
    rejected.invalid_id += 1
    return None


def item_id(item: Any, field: str, pattern: IdPattern, rejected: Rejections) -> str | None:
    """The ID an item holds at ``field`` when it is one of ``pattern``; otherwise counted."""
    return listed_id(item.get(field) if isinstance(item, dict) else None, pattern, rejected)


def windows(item: dict[str, Any], bounds: Sequence[tuple[str, TimeWindow]]) -> bool | None:
    """Whether the item's timestamps lie in every bounded window: None when one it needs is
    unknown (an item that cannot be shown old enough is never selected)."""
    verdict: bool | None = True
    for field, window in bounds:
        if window.before is None and window.after is None:
            continue
        when = parse_time(item.get(field))
        if when is None:
            verdict = None
        elif not window.contains(when):
            return False
    return verdict


def chosen(verdict: bool | None, rejected: Rejections) -> bool:
    """Whether a verdict selects its item; an unknown one is counted as unreadable."""
    if verdict is None:
        rejected.unreadable += 1
    return verdict is True


def belongs(item: dict[str, Any], field: str, expected: str | None, rejected: Rejections) -> bool:
    """An item that names its conversation or Service must name the one it was listed under."""
    named = item.get(field)
    if expected is None or not isinstance(named, str) or named == expected:
        return True
    rejected.foreign += 1
    return False


class AscendingCheck:
    """Whether a conversation's messages, as read so far, came oldest first across ``cutoff``.

    Messages are requested ``Order=asc``, so once a whole page is at or past the cutoff, so is
    everything after it — but only if the server honoured the order. That is taken as shown when
    every timestamp read so far was known and none was older than the one before it, and the
    listing has already crossed the cutoff (an older message came first). A conversation whose
    first page is all newer proves nothing (pages reversed would look the same), so it is read
    to the end, as is any listing with an inversion or an unreadable timestamp.
    """

    def __init__(self, cutoff: datetime) -> None:
        self._cutoff = cutoff
        self._last: datetime | None = None
        self.ordered = True
        self._crossed = False

    def see(self, when: datetime | None) -> None:
        """Take the next item's timestamp, in the order the server gave it."""
        if when is None:
            self.ordered = False
            return
        if self._last is not None and when < self._last:
            self.ordered = False
        self._last = when
        if when < self._cutoff:
            self._crossed = True

    def page_ends_listing(self, times: list[datetime | None]) -> bool:
        """See a page's timestamps; whether nothing after this page can be older than the
        cutoff (the order shown so far, the cutoff crossed before, this page all past it)."""
        crossed_before = self._crossed
        for when in times:
            self.see(when)
        return (
            bool(times)
            and self.ordered
            and crossed_before
            and all(when is not None and when >= self._cutoff for when in times)
        )


@dataclass(frozen=True, slots=True)
class ListedConversations:
    """How a resume continues a children source from its recorded progress: conversations whose
    children a run has listed in full are not listed again, and each newly finished one is
    recorded (after its targets' lines, through the same log, so the record implies them)."""

    done: Callable[[str], bool]
    record: Callable[[str], Awaitable[None]]
    # A selector's request (by its position, never its contents) listed in full, with how many
    # things it found: 0 is a request found nowhere, reported not_found.
    settled: Callable[[str, int], Awaitable[None]] | None = None
    # What a request found in a Service (None: the job's one), recorded before any of it is
    # emitted; and what an earlier run recorded so, which a resume's count keeps (its own
    # lookups no longer find what that run deleted).
    found: Callable[[str, str | None, int], None] | None = None
    found_before: Callable[[str, str | None], int] = lambda _request, _service: 0


class ListContext(Protocol):
    """What a lister may use of the run it lists for (implemented by ``engine.discovery``)."""

    @property
    def service(self) -> str | None:
        """The job's Service SID (None for the account's default Service)."""
        ...

    @property
    def fanout(self) -> int:
        """How many conversations a children lister may drain at once."""
        ...

    @property
    def rejected(self) -> Rejections:
        """Where this source's left-out items and failed listings are counted."""
        ...

    @property
    def listed(self) -> ListedConversations | None:
        """A resume's record of conversations whose children were listed in full, if any."""
        ...

    def skip(self, conversation: str) -> bool:
        """Whether a conversation's children need no listing (this run deletes it)."""
        ...

    def saw_attributes(self, conversation: str, attributes: object) -> None:
        """A listed v1 conversation's ``attributes`` (untrusted), for the legal holds to judge
        in memory; never kept on a target."""
        ...

    async def emit(self, targets: Sequence[Target]) -> None:
        """Hand a page of selected targets to the run (waits while deletion falls behind)."""
        ...

    def v1_pages(
        self, path: str, key: str, params: list[tuple[str, str]]
    ) -> AsyncGenerator[list[Any]]:
        """The items of a v1 list (``next_page_url`` paging), a page at a time."""
        ...

    def token_pages(
        self, product: Product, path: str, key: str, params: list[tuple[str, str]], size: int
    ) -> AsyncGenerator[list[Any]]:
        """The items of a token-paged list (v2, Memory), a page at a time."""
        ...

    async def fetch(self, path: str) -> Any:
        """One v1 resource's reply body, or None when it does not exist (404)."""
        ...

    def services(self) -> Sequence[ListContext] | None:
        """For a listing that ``spans_services``, in a job of several Services: one context per
        Service, each listing its paths and marking its targets with its SID (sharing this
        context's counts); None in a job of one Service, which this context lists."""
        ...


class Listing(ABC):
    """A source found by listing: its kind's own query, and the lister that runs it."""

    __slots__ = ()

    # In a job of several Services, discovery lists a Service-scoped source once per Service.
    # A listing that spans Services is listed once instead, and looks in each itself
    # (``ctx.services()``): an erasure request is one verdict, found in any or in none.
    spans_services: ClassVar[bool] = False

    @property
    @abstractmethod
    def kind(self) -> ResourceKind:
        """The kind of the targets it selects."""

    @abstractmethod
    def path(self, service: str | None) -> str:
        """The collection it lists, as its discovery error names it."""

    def conversations(self) -> tuple[str, ...] | None:
        """The only conversations whose children it may select, or None if not limited so."""
        return None

    def kinds(self) -> tuple[ResourceKind, ...]:
        """Every kind of target it may emit: its own, or several for a selector's listing."""
        return (self.kind,)

    @abstractmethod
    async def list(self, ctx: ListContext) -> None:
        """Emit every target it selects, a page at a time, counting what it leaves out."""
