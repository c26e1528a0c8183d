"""Finding targets through the list endpoints, page by page, as a stream.

Each source emits targets a page at a time through ``emit`` (into the scheduler's bounded
stream), so listing waits whenever deletion falls behind and memory stays flat however much is
selected; a page admitted together is logged together, in one checkpoint line.
Pages are requested at the APIs' maximum size. Listing while deleting is safe because each
page is requested with the cursor the previous page gave (never by offset). Server-side date
filters are not used: v1's StartDate/EndDate have day granularity and v2/Memory have none, so
every time bound is applied here, on the item's own timestamp.

Each kind lists its own resources (its ``Listing``, in :mod:`runner.kinds`); this module gives
the listers their context: the pages of a list through the requester, the emit, the counts.
Nothing a list reply says is trusted to widen the selection (:mod:`runner.kinds.listing`). Items
left out are counted; a source that left any out, or whose listing could not be followed
(:mod:`runner.wire.pagination`), ends as a discovery error naming its listing, so the run exits 1
rather than 0.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any

from runner.errors import BadListing, PermanentError
from runner.kinds.base import Product, Target
from runner.kinds.listing import ListedConversations, Rejections
from runner.plan.selection import Explicit, Manifest, Source
from runner.wire.pagination import PageGuard, next_page_url, read_envelope
from runner.wire.requester import Requester

__all__ = ["CHUNK", "Discovery", "Emit", "ListedConversations", "chunks"]

Emit = Callable[[Sequence[Target]], Awaitable[None]]

CHUNK = 100  # targets per emit for sources read from the spec or a manifest


def chunks(targets: Iterable[Target], size: int = CHUNK) -> Iterator[list[Target]]:
    """``targets`` in lists of up to ``size``, streamed."""
    chunk: list[Target] = []
    for target in targets:
        chunk.append(target)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class Discovery:
    """Lists what each source selects."""

    def __init__(
        self,
        requester: Requester,
        service: str | None,
        *,
        fanout: int = 32,
        skip_conversation: Callable[[str], bool] = lambda _sid: False,
    ) -> None:
        self.requester = requester
        self.service = service
        self.fanout = fanout
        self.skip = skip_conversation

    async def run(
        self, source: Source, emit: Emit, listed: ListedConversations | None = None
    ) -> None:
        """Emit every target ``source`` selects, a page at a time.

        Raises BadListing at the end when any listed item was left out (the rest was emitted)
        or a listing could not be followed to its end, with the counts of each.
        """
        if isinstance(source, Explicit | Manifest):
            for chunk in chunks(source.targets if isinstance(source, Explicit) else source.rows()):
                await emit(chunk)
            return
        ctx = _Context(self, emit, listed)
        try:
            await source.list(ctx)
        except BadListing as exc:
            ctx.rejected.failed(exc)
        failure = ctx.rejected.error(source.path(self.service))
        if failure is not None:
            raise failure


class _Context:
    """One source's listing: the :class:`~runner.kinds.listing.ListContext` its lister gets."""

    def __init__(
        self, discovery: Discovery, emit: Emit, listed: ListedConversations | None
    ) -> None:
        self._discovery = discovery
        self._emit = emit
        self.listed = listed
        self.rejected = Rejections()
        self.service = discovery.service
        self.fanout = discovery.fanout
        self.skip = discovery.skip

    async def emit(self, targets: Sequence[Target]) -> None:
        """Hand a page of selected targets to the run."""
        await self._emit(targets)

    async def v1_pages(
        self, path: str, key: str, params: list[tuple[str, str]]
    ) -> AsyncGenerator[list[Any]]:
        """The items of a v1 list (``next_page_url`` paging), a page at a time."""
        guard = PageGuard(path)
        url = path
        first = True
        while True:
            guard.page()
            try:
                reply = await self._discovery.requester.send(
                    "GET", Product.CONVERSATIONS, url, params=params if first else None
                )
            except PermanentError as exc:
                if first or exc.status != 0:
                    raise
                # Refused before sending (the client's origin check): name the listing.
                raise BadListing(path, f"next page: {exc.message}") from exc
            first = False
            page = read_envelope(path, reply.body, key, "next_page_url")
            yield page.items
            if page.next is None:
                return
            url = guard.follow(next_page_url(path, page.next))

    async def fetch(self, path: str) -> Any:
        """One v1 resource's reply body, or None when it does not exist (404)."""
        try:
            reply = await self._discovery.requester.send("GET", Product.CONVERSATIONS, path)
        except PermanentError as exc:
            if exc.status == 404:
                return None
            raise
        return reply.body

    async def token_pages(
        self, product: Product, path: str, key: str, params: list[tuple[str, str]], size: int
    ) -> AsyncGenerator[list[Any]]:
        """The items of a token-paged list (v2, Memory), a page at a time."""
        guard = PageGuard(path)
        token: str | None = None
        while True:
            guard.page()
            query = [*params, ("pageSize", str(size))]
            if token:
                query.append(("pageToken", token))
            reply = await self._discovery.requester.send("GET", product, path, params=query)
            page = read_envelope(path, reply.body, key, "nextToken")
            yield page.items
            if page.next is None:
                return
            token = guard.follow(page.next)
