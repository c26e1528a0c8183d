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
A job of several Services (``service: all`` or a list) lists each Service-scoped source (the v1
kinds') in every one of its Services at once, each with its own context: the Service's paths,
and its SID on every target found there, so that the target's delete goes to that Service and
is paced under its budget. ``all`` is read from ``/v1/Services`` once, when the first such source
needs it, and frozen: a resume drives the Services the log recorded, and a Service a source has
listed in full is not listed again. A listing that ``spans_services`` (an erasure request, whose
verdict is over every Service) is listed once instead, with one context per Service to look in.

Nothing a list reply says is trusted to widen the selection (:mod:`runner.kinds.listing`). Items
left out are counted; a source that left any out, or whose listing could not be followed
(:mod:`runner.wire.pagination`), ends as a discovery error naming its listing, so the run exits 1
rather than 0.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from runner.errors import AuthError, BadListing, PermanentError, RemoteError
from runner.internal import leaves
from runner.kinds.base import Product, Target
from runner.kinds.ids import SERVICE_SID
from runner.kinds.listing import ListedConversations, Rejections, item_id
from runner.kinds.v1 import V1_PAGE
from runner.plan.planner import ServiceSet
from runner.plan.selection import Explicit, Manifest, Source
from runner.wire.pagination import PageGuard, next_page_url, read_envelope
from runner.wire.requester import Requester

__all__ = [
    "CHUNK",
    "SERVICES_PATH",
    "Discovery",
    "Emit",
    "ListedConversations",
    "ListedServices",
    "chunks",
]

Emit = Callable[[Sequence[Target]], Awaitable[None]]

CHUNK = 100  # targets per emit for sources read from the spec or a manifest
SERVICES_PATH = "/v1/Services"


@dataclass(frozen=True, slots=True)
class ListedServices:
    """How a resume continues a Service-scoped source of a job of several Services: Services it
    has listed in full are not listed again, and each newly finished one is recorded (after its
    targets' lines, so the record implies them)."""

    done: Callable[[str], bool]
    record: Callable[[str], None]


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
        services: ServiceSet = None,
        frozen_services: Sequence[str] | None = None,
        frozen_rejected: int = 0,
        on_services: Callable[[list[str], int], None] = lambda _sids, _rejected: None,
        fanout: int = 32,
        skip_conversation: Callable[[str], bool] = lambda _sid: False,
        on_attributes: Callable[[str, object], None] | None = None,
    ) -> None:
        self.requester = requester
        # Legal holds judge each listed v1 conversation's attributes here, in memory (None: no
        # attribute hold, so attributes are not looked at).
        self.on_attributes = on_attributes or _no_attributes
        self.service = service
        self.fanout = fanout
        self.skip = skip_conversation
        self._several = services is not None
        # A list is what the spec says; `all` is what a resumed run found, or found once.
        found = services if isinstance(services, tuple) else frozen_services
        self._services: tuple[str, ...] | None = None if found is None else tuple(found)
        self._on_services = on_services
        self._services_lock = anyio.Lock()
        self._services_error: RemoteError | None = None  # listing /v1/Services failed
        self._services_rejected: BadListing | None = None  # … or left some out
        self._services_left_out = 0  # how many
        if found is frozen_services and frozen_rejected:
            # Frozen at the run's start, so never listed again: its gaps stay reported.
            self._services_rejected = BadListing(
                SERVICES_PATH,
                f"{frozen_rejected} left out when the job began (an invalid SID); the job's"
                " Services were frozen then",
            )

    async def run(
        self,
        source: Source,
        emit: Emit,
        listed: ListedConversations | None = None,
        services_listed: ListedServices | None = None,
    ) -> None:
        """Emit every target ``source`` selects, a page at a time.

        Raises BadListing at the end when any listed item was left out (the rest was emitted)
        or a listing could not be followed to its end, with the counts of each.
        """
        if isinstance(source, Explicit | Manifest):
            for chunk in chunks(source.targets if isinstance(source, Explicit) else source.rows()):
                await emit(chunk)
            return
        if not (self._several and source.kind.per_service):
            await self._list(source, emit, listed, self.service, tagged=False)
            return
        services = await self.services()
        if source.spans_services:
            # Listed once, looking in each Service itself (an erasure request's verdict is
            # over every Service); its progress is recorded per request, not per Service.
            await self._list(source, emit, listed, None, tagged=False, services=services)
            if self._services_rejected is not None:
                raise self._services_rejected
            return
        failures: list[RemoteError] = []

        async def one(service: str) -> None:
            # A lister's task groups deliver its errors as exception groups.
            try:
                await self._list(source, emit, listed, service, tagged=True)
            except* AuthError:
                raise
            except* RemoteError as group:
                # The other Services go on; the source ends failed.
                failures.extend(e for e in leaves(group) if isinstance(e, RemoteError))
            else:
                if services_listed is not None:
                    services_listed.record(service)

        # Each Service at once: each has its own 30/s budget, so one paced Service does not
        # hold back the others.
        async with anyio.create_task_group() as tg:
            for service in services:
                if services_listed is None or not services_listed.done(service):
                    tg.start_soon(one, service)
        if failures:
            raise failures[0]
        if self._services_rejected is not None:
            raise self._services_rejected

    @property
    def services_found(self) -> tuple[str, ...] | None:
        """The job's Services once known (listed, frozen or its list); None before."""
        return self._services

    async def services(self) -> tuple[str, ...]:
        """The job's Services: its list, or (``all``) the account's, listed once and frozen.

        Raises the RemoteError of a listing of ``/v1/Services`` that failed (for every source
        that needs it)."""
        async with self._services_lock:
            if self._services_error is not None:
                raise self._services_error
            if self._services is None:
                try:
                    self._services = await self._list_services()
                except AuthError:
                    raise
                except RemoteError as exc:
                    self._services_error = exc
                    raise
                self._on_services(list(self._services), self._services_left_out)
            return self._services

    async def _list_services(self) -> tuple[str, ...]:
        """Every Service of the account, each SID checked before it goes into a path."""
        ctx = _Context(self, _emit_nothing, None, None, tagged=False)
        found: dict[str, None] = {}  # in the order listed, each once
        async for page in ctx.v1_pages(SERVICES_PATH, "services", [("PageSize", str(V1_PAGE))]):
            before = ctx.rejected.total()
            for item in page:
                sid = item_id(item, "sid", SERVICE_SID, ctx.rejected)
                if sid is not None:
                    found[sid] = None
            ctx.rejected.note(SERVICES_PATH, before)
        # Services with a bad SID cannot be listed: the others are, and each Service-scoped
        # source then ends as a discovery error naming /v1/Services.
        self._services_rejected = ctx.rejected.error(SERVICES_PATH)
        self._services_left_out = ctx.rejected.total()
        return tuple(found)

    async def _list(
        self,
        source: Source,
        emit: Emit,
        listed: ListedConversations | None,
        service: str | None,
        *,
        tagged: bool,
        services: Sequence[str] | None = None,
    ) -> None:
        assert not isinstance(source, Explicit | Manifest)
        ctx = _Context(self, emit, listed, service, tagged=tagged, services=services)
        try:
            await source.list(ctx)
        except BadListing as exc:
            ctx.rejected.failed(exc)
        failure = ctx.rejected.error(source.path(service))
        if failure is not None:
            raise failure


def _no_attributes(_sid: str, _attributes: object) -> None:
    """No attribute hold: a listed conversation's attributes are not looked at."""


async def _emit_nothing(_targets: Sequence[Target]) -> None:
    return None


class _Context:
    """One source's listing: the :class:`~runner.kinds.listing.ListContext` its lister gets."""

    def __init__(
        self,
        discovery: Discovery,
        emit: Emit,
        listed: ListedConversations | None,
        service: str | None,
        *,
        tagged: bool,
        services: Sequence[str] | None = None,
        rejected: Rejections | None = None,
    ) -> None:
        self._discovery = discovery
        self._emit = emit
        self.listed = listed
        self.rejected = Rejections() if rejected is None else rejected
        self.service = service
        self._tag = service if tagged else None
        self.fanout = discovery.fanout
        self.skip = discovery.skip
        self.saw_attributes = discovery.on_attributes
        self._services: tuple[_Context, ...] | None = None
        if services is not None:
            # One per Service, counting into this source's rejections.
            self._services = tuple(
                _Context(discovery, emit, listed, sid, tagged=True, rejected=self.rejected)
                for sid in services
            )

    def services(self) -> Sequence[_Context] | None:
        """One context per Service of a job of several, for a listing that spans them."""
        return self._services

    async def emit(self, targets: Sequence[Target]) -> None:
        """Hand a page of selected targets to the run (each marked with the Service it was
        found in, in a job of several)."""
        tag = self._tag
        if tag is not None:
            targets = [Target(t.kind, t.id, t.parent, tag) for t in targets]
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
