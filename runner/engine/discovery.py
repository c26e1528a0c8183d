"""Finding targets through the list endpoints, page by page, as a stream.

Each source emits targets a page at a time through ``emit`` (into the scheduler's bounded
stream), so listing waits whenever deletion falls behind and memory stays flat however much is
selected; a page admitted together is logged together, in one checkpoint line.
Pages are requested at the APIs' maximum size. Listing while deleting is safe because each
page is requested with the cursor the previous page gave (never by offset). Server-side date
filters are not used: v1's StartDate/EndDate have day granularity and v2/Memory have none, so
every time bound is applied here, on the item's own timestamp.

Nothing a list reply says is trusted to widen the selection: every ID is checked against its
kind's pattern as it is read, every filter of the spec is checked again on each item (a server
that ignores ``State`` selects nothing extra), an item whose timestamp or state cannot be read is
never selected by a bound, and a message or participant belongs to the conversation it was listed
under. Items left out are counted; a source that left any out, or whose listing could not be
followed (:mod:`runner.wire.pagination`), ends as a discovery error naming its listing, so the run
exits 1 rather than 0.
"""

from __future__ import annotations

from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Sequence,
)
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio
import structlog
from anyio.abc import ObjectReceiveStream

from runner.errors import BadListing, PermanentError
from runner.kinds.base import Product, Target
from runner.kinds.ids import ID_PATTERNS
from runner.kinds.registry import by_name, by_spec
from runner.kinds.v1 import conversations_prefix
from runner.plan.selection import (
    ConversationQuery,
    Explicit,
    ListChildren,
    ListConfigurations,
    ListConversations,
    ListStores,
    Manifest,
    Source,
    TimeWindow,
)
from runner.wire.pagination import AscendingCheck, PageGuard, next_page_url, read_envelope
from runner.wire.requester import Requester

log = structlog.get_logger("bulkops.discovery")

Emit = Callable[[Sequence[Target]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ListedConversations:
    """How a resume continues a children source from its recorded progress: conversations whose
    children a run has listed in full are not listed again, and each newly finished one is
    recorded (after its targets' lines, through the same log, so the record implies them)."""

    done: Callable[[str], bool]
    record: Callable[[str], Awaitable[None]]

V1_PAGE = 100  # the v1 spec's maximum PageSize
V2_PAGE = 1000  # the v2 spec's maximum pageSize
MEMORY_PAGE = 100  # Memory's ControlPlanePageSize maximum
CHUNK = 100  # targets per emit for sources read from the spec or a manifest
CONFIGURATIONS_PATH = "/v2/ControlPlane/Configurations"
STORES_PATH = "/v1/ControlPlane/Stores"


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


def _listed_id(value: Any, kind: str, rejected: Rejections) -> str | None:
    """``value`` when it is an ID of ``kind``; otherwise counted and None."""
    if isinstance(value, str) and ID_PATTERNS[kind].matches(value):
        return value
    rejected.invalid_id += 1
    return None


def _item_id(item: Any, field: str, kind: str, rejected: Rejections) -> str | None:
    return _listed_id(item.get(field) if isinstance(item, dict) else None, kind, rejected)


def _windows(item: dict[str, Any], bounds: Sequence[tuple[str, TimeWindow]]) -> bool | None:
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


def _conversation_verdict(
    item: dict[str, Any], query: ConversationQuery, created: str, updated: str
) -> bool | None:
    # Both APIs' state filters are sent to the server and checked again here: a server that
    # ignores State/status must not make a closed-only job delete active conversations.
    times = _windows(item, ((created, query.created), (updated, query.updated)))
    if times is False:
        return False
    if query.states:
        state = item.get("state" if query.api == "v1" else "status")
        if not isinstance(state, str):
            return None
        if state not in query.states:
            return False
    return times


def _chosen(verdict: bool | None, rejected: Rejections) -> bool:
    if verdict is None:
        rejected.unreadable += 1
    return verdict is True


def _belongs(item: dict[str, Any], field: str, expected: str | None, rejected: Rejections) -> bool:
    """An item that names its conversation or Service must name the one it was listed under."""
    named = item.get(field)
    if expected is None or not isinstance(named, str) or named == expected:
        return True
    rejected.foreign += 1
    return False


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
        self._req = requester
        self._service = service
        self._fanout = fanout
        self._skip = skip_conversation

    async def run(
        self, source: Source, emit: Emit, listed: ListedConversations | None = None
    ) -> None:
        """Emit every target ``source`` selects, a page at a time.

        Raises BadListing at the end when any listed item was left out (the rest was emitted)
        or a listing could not be followed to its end, with the counts of each.
        """
        rejected = Rejections()
        try:
            await self._emit_all(source, emit, listed, rejected)
        except BadListing as exc:
            rejected.failed(exc)
        failure = rejected.error(self._listing_path(source))
        if failure is not None:
            raise failure

    def _listing_path(self, source: Source) -> str:
        """The collection a source lists, as its discovery error names it."""
        prefix = conversations_prefix(self._service)
        if isinstance(source, ListConversations) and source.query.api == "v2":
            return "/v2/Conversations"
        if isinstance(source, ListChildren):
            return f"{prefix}/*/" + (
                "Messages" if source.kind.name == "message" else "Participants"
            )
        if isinstance(source, ListConfigurations):
            return CONFIGURATIONS_PATH
        if isinstance(source, ListStores):
            return STORES_PATH
        return prefix

    async def _emit_all(
        self,
        source: Source,
        emit: Emit,
        listed: ListedConversations | None,
        rejected: Rejections,
    ) -> None:
        if isinstance(source, Explicit | Manifest):
            for chunk in chunks(source.targets if isinstance(source, Explicit) else source.rows()):
                await emit(chunk)
        elif isinstance(source, ListConversations):
            resource = by_spec("conversations", source.query.api)
            async for sids in self.conversation_pages(source.query, rejected):
                await emit([Target(resource, sid) for sid in sids])
        elif isinstance(source, ListChildren):
            await self._children(source, emit, listed, rejected)
        elif isinstance(source, ListConfigurations):
            path = CONFIGURATIONS_PATH
            bounds = (("createdAt", source.created), ("updatedAt", source.updated))
            async for items in self._token_pages(
                Product.CONVERSATIONS, path, "configurations", [], V2_PAGE
            ):
                before = rejected.total()
                chosen: list[Target] = []
                for item in items:
                    cid = _item_id(item, "id", "configuration", rejected)
                    if cid is not None and _chosen(_windows(item, bounds), rejected):
                        chosen.append(Target(by_name("configuration"), cid))
                rejected.note(path, before)
                await emit(chosen)
        elif isinstance(source, ListStores):
            path = STORES_PATH
            async for items in self._token_pages(Product.MEMORY, path, "stores", [], MEMORY_PAGE):
                before = rejected.total()
                stores = [_listed_id(i, "memory_store", rejected) for i in items]
                rejected.note(path, before)
                await emit([Target(by_name("memory_store"), i) for i in stores if i is not None])

    async def conversations(
        self, query: ConversationQuery, rejected: Rejections | None = None
    ) -> AsyncIterator[str]:
        """IDs of the conversations matching ``query``."""
        async for sids in self.conversation_pages(query, rejected):
            for sid in sids:
                yield sid

    async def conversation_pages(
        self, query: ConversationQuery, rejected: Rejections | None = None
    ) -> AsyncIterator[list[str]]:
        """IDs of the conversations matching ``query``, a listed page at a time; what it leaves
        out is counted in ``rejected``."""
        rejected = rejected if rejected is not None else Rejections()
        if query.api == "v1":
            path = conversations_prefix(self._service)
            states: tuple[str | None, ...] = query.states or (None,)
            for state in states:
                params = [("PageSize", str(V1_PAGE))]
                if state:
                    params.append(("State", state))
                async for page in self._v1_pages(path, "conversations", params):
                    before = rejected.total()
                    sids: list[str] = []
                    for item in page:
                        sid = _item_id(item, "sid", "conversation_v1", rejected)
                        if (
                            sid is not None
                            and _belongs(item, "chat_service_sid", self._service, rejected)
                            and _chosen(
                                _conversation_verdict(item, query, "date_created", "date_updated"),
                                rejected,
                            )
                        ):
                            sids.append(sid)
                    rejected.note(path, before)
                    yield sids
        else:
            path = "/v2/Conversations"
            params = [("status", s) for s in query.states]
            async for items in self._token_pages(
                Product.CONVERSATIONS, path, "conversations", params, V2_PAGE
            ):
                before = rejected.total()
                ids: list[str] = []
                for item in items:
                    cid = _item_id(item, "id", "conversation_v2", rejected)
                    if cid is not None and _chosen(
                        _conversation_verdict(item, query, "createdAt", "updatedAt"), rejected
                    ):
                        ids.append(cid)
                rejected.note(path, before)
                yield ids

    async def _children(
        self,
        source: ListChildren,
        emit: Emit,
        listed: ListedConversations | None,
        rejected: Rejections,
    ) -> None:
        # Several conversations are drained at once so that deletes interleave across them:
        # one conversation alone is capped at 30 deletes/s, the account at far more.
        send, receive = anyio.create_memory_object_stream[str](self._fanout)
        async with anyio.create_task_group() as tg:
            for _ in range(self._fanout):
                tg.start_soon(
                    self._drain_children, source, receive.clone(), emit, listed, rejected
                )
            receive.close()
            async with send:
                try:
                    async for sid in self._parents(source, rejected):
                        if not self._skip(sid) and not (listed is not None and listed.done(sid)):
                            await send.send(sid)
                except BadListing as exc:
                    # Raised here, in the group's own body, it would reach the caller wrapped
                    # in an exception group: counted instead, and the conversations already
                    # sent are still drained.
                    rejected.failed(exc)

    async def _parents(self, source: ListChildren, rejected: Rejections) -> AsyncIterator[str]:
        within = source.within
        if isinstance(within, tuple):
            for sid in within:
                yield sid
        else:
            query = within if within is not None else ConversationQuery("v1")
            async for sid in self.conversations(query, rejected):
                yield sid

    async def _drain_children(
        self,
        source: ListChildren,
        parents: ObjectReceiveStream[str],
        emit: Emit,
        listed: ListedConversations | None,
        rejected: Rejections,
    ) -> None:
        async with parents:
            async for sid in parents:
                try:
                    left_out = await self._children_of(source, sid, emit, rejected)
                except BadListing as exc:
                    # One conversation's listing cannot be followed: the others still are, and
                    # the source ends as a discovery error naming it.
                    rejected.failed(exc)
                    continue
                # A conversation with anything left out is not recorded as listed, so a resume
                # lists it again.
                if listed is not None and not left_out:
                    await listed.record(sid)

    async def _children_of(
        self, source: ListChildren, sid: str, emit: Emit, rejected: Rejections
    ) -> int:
        """Emit what one conversation's children select; return how many items it left out."""
        is_message = source.kind.name == "message"
        segment = "Messages" if is_message else "Participants"
        kind = "message" if is_message else "participant"
        path = f"{conversations_prefix(self._service)}/{sid}/{segment}"
        params = [("PageSize", str(V1_PAGE))]
        order: AscendingCheck | None = None
        if is_message:
            params.append(("Order", "asc"))
            if source.created.before is not None:
                order = AscendingCheck(source.created.before)
        bounds = (("date_created", source.created),)
        left_out = 0
        async with aclosing(self._v1_pages(path, segment.lower(), params)) as pages:
            async for page in pages:
                before = rejected.total()
                chosen: list[Target] = []
                times: list[datetime | None] = []
                for item in page:
                    is_dict = isinstance(item, dict)
                    times.append(parse_time(item.get("date_created")) if is_dict else None)
                    child = _item_id(item, "sid", kind, rejected)
                    if (
                        child is not None
                        and _belongs(item, "conversation_sid", sid, rejected)
                        and _belongs(item, "chat_service_sid", self._service, rejected)
                        and _chosen(_windows(item, bounds), rejected)
                    ):
                        # The parent is the conversation listed, never one the item names.
                        chosen.append(Target(source.kind, child, sid))
                rejected.note(path, before)
                left_out += rejected.total() - before  # no await since `before`: this page's
                await emit(chosen)
                # Messages asked for oldest first: once the order is shown and a whole page is
                # past the cutoff, so is everything after it.
                if order is not None and order.page_ends_listing(times):
                    break
        return left_out

    async def _v1_pages(
        self, path: str, key: str, params: list[tuple[str, str]]
    ) -> AsyncGenerator[list[Any]]:
        guard = PageGuard(path)
        url = path
        first = True
        while True:
            guard.page()
            try:
                reply = await self._req.send(
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

    async def _token_pages(
        self, product: Product, path: str, key: str, params: list[tuple[str, str]], size: int
    ) -> AsyncGenerator[list[Any]]:
        guard = PageGuard(path)
        token: str | None = None
        while True:
            guard.page()
            query = [*params, ("pageSize", str(size))]
            if token:
                query.append(("pageToken", token))
            reply = await self._req.send("GET", product, path, params=query)
            page = read_envelope(path, reply.body, key, "nextToken")
            yield page.items
            if page.next is None:
                return
            token = guard.follow(page.next)
