"""The queue between discovery and the deletion workers.

Discovery hands over a whole page at once and workers take one target at a time. anyio's memory
streams yield to the event loop on every send and every receive (a scheduling checkpoint each),
which at thousands of targets a second cost more than the rest of the hand-off; here a page goes
in with one call and a worker takes a target without yielding while any are queued.

Workers take from the queued pages in turn, one target from each. A page of messages is one
conversation's, which Twilio lets us delete at 30/s: draining pages one after the other would
put every worker behind one conversation's pace, while taking from all of them keeps as many
conversations going at once as there are pages queued.

A page whose next item would make its taker wait is passed over while another's would not, and
when every one would, the item that waits least is taken. A page's write-ahead lines reach the
disk one fsync (a few ms) after it is queued, and taking from it in turn sent the workers that
met it to wait for that fsync while older pages, long on disk, had work for them (at every
refill of a manifest's chunks about a quarter of the workers sat idle: 3.5 % of the slots' time
in ``overhead``). And a scope's pace books its slots ahead: a worker that takes an item of a
scope booked a second ahead sits that second out. Taken in turn by page, the scopes with more
pages queued drew more workers into their waits, and one with fewer ran below its rate while
they waited (a job of four Services, 30/s each: one at 17-22/s for five seconds, 7-15 % off
the whole run's rate).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from itertools import islice
from typing import Generic, TypeVar

import anyio

T = TypeVar("T")


class WorkQueue(Generic[T]):
    """Pages of work items, taken from in turn.

    ``put_many`` waits first for the queue to hold fewer than ``capacity`` items, then queues
    its page and, for a page longer than ``low``, waits until no more than ``low`` of it are
    left: each producer keeps one page in the queue, and a big page (a chunk of a manifest)
    lets its producer prepare the next one before the workers run dry. Waits are on anyio
    events, so both sides are cancellable.

    A producer waiting for room is woken once fewer than ``room`` items are left (default
    ``capacity``): with ``room`` well under it, a woken producer queues several pages in one go,
    whose write-ahead lines then share one fsync, instead of one page per fsync each time a
    single item is taken from a full queue.

    ``delay(item)``, asked of a page's next item, says how long its taker would wait for it
    (seconds; 0 or less: not at all, ``math.inf``: for something not under way yet); ``get``
    takes from the next page in turn whose item would not wait, and when every one would, from
    the page whose item waits least (the first in turn of those that wait as little).
    """

    def __init__(
        self,
        capacity: int,
        low: int,
        room: int | None = None,
        delay: Callable[[T], float] | None = None,
    ) -> None:
        self._delay = delay
        self._pages: deque[tuple[deque[T], anyio.Event]] = deque()
        self._count = 0
        self._capacity = capacity
        self._room = capacity if room is None else max(1, min(room, capacity))
        self._low = low
        self._closed = False
        self._readable = anyio.Event()
        self._writable = anyio.Event()
        self._writable.set()

    def __len__(self) -> int:
        return self._count

    async def put_many(self, items: Iterable[T]) -> None:
        """Queue one page of ``items`` (see the class for when this waits)."""
        while self._count >= self._capacity:
            if self._writable.is_set():
                self._writable = anyio.Event()
            await self._writable.wait()
        if self._closed:
            raise anyio.ClosedResourceError
        page = deque(items)
        if not page:
            return
        drained = anyio.Event()
        self._pages.append((page, drained))
        self._count += len(page)
        self._readable.set()
        if len(page) > self._low:
            await drained.wait()

    def close(self) -> None:
        """No more pages: ``get`` raises EndOfStream once the queue is empty."""
        self._closed = True
        self._readable.set()

    async def get(self) -> T:
        """The next item, from the next page in turn; raises anyio.EndOfStream when the queue
        is closed and empty."""
        while not self._pages:
            if self._closed:
                raise anyio.EndOfStream
            if self._readable.is_set():
                self._readable = anyio.Event()
            await self._readable.wait()
        pages = self._pages
        delay = self._delay
        if delay is not None and len(pages) > 1 and (least := delay(pages[0][0][0])) > 0:
            chosen = 0
            for index, (other, _) in enumerate(islice(pages, 1, None), 1):
                wait = delay(other[0])
                if wait < least:
                    chosen, least = index, wait
                    if wait <= 0:
                        break
            # The chosen page first, those passed over to the back (in turn after the pages
            # beyond it: the chosen one follows them once taken from, as every page does).
            pages.rotate(-chosen)
        page, drained = pages[0]
        item = page.popleft()
        self._count -= 1
        if page:
            self._pages.rotate(-1)
            if len(page) <= self._low:
                drained.set()
        else:
            self._pages.popleft()
            drained.set()
        if self._count < self._room:
            self._writable.set()
        return item
