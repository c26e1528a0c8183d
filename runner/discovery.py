"""Finding targets through the list endpoints, page by page, as a stream.

Each source emits targets a page at a time through ``emit`` (into the scheduler's bounded
stream), so listing waits whenever deletion falls behind and memory stays flat however much is
selected; a page admitted together is logged together, in one checkpoint line.
Pages are requested at the APIs' maximum size. Listing while deleting is safe because each
page is requested with the cursor the previous page gave (never by offset). Server-side date
filters are not used: v1's StartDate/EndDate have day granularity and v2/Memory have none, so
every time bound is applied here, on the item's own timestamp.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio
from anyio.abc import ObjectReceiveStream

from runner.catalog import Product, Resource, Target, conversations_prefix
from runner.requester import Requester
from runner.selection import (
    ConversationQuery,
    Explicit,
    ListChildren,
    ListConfigurations,
    ListConversations,
    ListStores,
    Manifest,
    Source,
)

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
    """An ISO-8601 timestamp from a list item, or None when missing or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


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
        """Emit every target ``source`` selects, a page at a time."""
        if isinstance(source, Explicit | Manifest):
            for chunk in chunks(source.targets if isinstance(source, Explicit) else source.rows()):
                await emit(chunk)
        elif isinstance(source, ListConversations):
            resource = (
                Resource.CONVERSATION_V1 if source.query.api == "v1" else Resource.CONVERSATION_V2
            )
            async for sids in self.conversation_pages(source.query):
                await emit([Target(resource, sid) for sid in sids])
        elif isinstance(source, ListChildren):
            await self._children(source, emit, listed)
        elif isinstance(source, ListConfigurations):
            async for items in self._token_pages(
                Product.CONVERSATIONS, "/v2/ControlPlane/Configurations", [], V2_PAGE
            ):
                await emit(
                    [
                        Target(Resource.CONFIGURATION, str(item["id"]))
                        for item in items
                        if source.created.contains(parse_time(item.get("createdAt")))
                        and source.updated.contains(parse_time(item.get("updatedAt")))
                    ]
                )
        elif isinstance(source, ListStores):
            async for store_ids in self._token_pages(
                Product.MEMORY, "/v1/ControlPlane/Stores", [], MEMORY_PAGE
            ):
                await emit([Target(Resource.MEMORY_STORE, str(i)) for i in store_ids])

    async def conversations(self, query: ConversationQuery) -> AsyncIterator[str]:
        """IDs of the conversations matching ``query``."""
        async for sids in self.conversation_pages(query):
            for sid in sids:
                yield sid

    async def conversation_pages(self, query: ConversationQuery) -> AsyncIterator[list[str]]:
        """IDs of the conversations matching ``query``, a listed page at a time."""
        if query.api == "v1":
            states: tuple[str | None, ...] = query.states or (None,)
            for state in states:
                params = [("PageSize", str(V1_PAGE))]
                if state:
                    params.append(("State", state))
                async for page in self._v1_page_lists(
                    conversations_prefix(self._service), params
                ):
                    yield [
                        str(i["sid"])
                        for i in page
                        if _matches(i, query, "date_created", "date_updated")
                    ]
        else:
            params = [("status", s) for s in query.states]
            async for items in self._token_pages(
                Product.CONVERSATIONS, "/v2/Conversations", params, V2_PAGE
            ):
                yield [str(i["id"]) for i in items if _matches(i, query, "createdAt", "updatedAt")]

    async def _children(
        self, source: ListChildren, emit: Emit, listed: ListedConversations | None
    ) -> None:
        # Several conversations are drained at once so that deletes interleave across them:
        # one conversation alone is capped at 30 deletes/s, the account at far more.
        send, receive = anyio.create_memory_object_stream[str](self._fanout)
        async with anyio.create_task_group() as tg:
            for _ in range(self._fanout):
                tg.start_soon(self._drain_children, source, receive.clone(), emit, listed)
            receive.close()
            async with send:
                async for sid in self._parents(source):
                    if not self._skip(sid) and not (listed is not None and listed.done(sid)):
                        await send.send(sid)

    async def _parents(self, source: ListChildren) -> AsyncIterator[str]:
        within = source.within
        if isinstance(within, tuple):
            for sid in within:
                yield sid
        else:
            query = within if within is not None else ConversationQuery("v1")
            async for sid in self.conversations(query):
                yield sid

    async def _drain_children(
        self,
        source: ListChildren,
        parents: ObjectReceiveStream[str],
        emit: Emit,
        listed: ListedConversations | None,
    ) -> None:
        is_message = source.resource is Resource.MESSAGE
        segment = "Messages" if is_message else "Participants"
        async with parents:
            async for sid in parents:
                path = f"{conversations_prefix(self._service)}/{sid}/{segment}"
                params = [("PageSize", str(V1_PAGE))]
                if is_message:
                    params.append(("Order", "asc"))
                async for page in self._v1_page_lists(path, params):
                    newer = 0
                    chosen: list[Target] = []
                    for item in page:
                        created = parse_time(item.get("date_created"))
                        if source.created.contains(created):
                            chosen.append(Target(source.resource, str(item["sid"]), sid))
                        elif (
                            source.created.before is not None
                            and created is not None
                            and created >= source.created.before
                        ):
                            newer += 1
                    await emit(chosen)
                    # Messages come oldest first: once a whole page is past the cutoff, so is
                    # everything after it.
                    if is_message and page and newer == len(page):
                        break
                if listed is not None:
                    await listed.record(sid)

    async def _v1_page_lists(
        self, path: str, params: list[tuple[str, str]]
    ) -> AsyncIterator[list[dict[str, Any]]]:
        url: str | None = path
        first = True
        while url:
            reply = await self._req.send(
                "GET", Product.CONVERSATIONS, url, params=params if first else None
            )
            first = False
            body = reply.body if isinstance(reply.body, dict) else {}
            meta = body.get("meta") or {}
            key = meta.get("key") or next((k for k in body if k != "meta"), None)
            items = body.get(key, []) if key else []
            yield [i for i in items if isinstance(i, dict)]
            url = meta.get("next_page_url")

    async def _token_pages(
        self, product: Product, path: str, params: list[tuple[str, str]], size: int
    ) -> AsyncIterator[list[Any]]:
        token: str | None = None
        while True:
            query = [*params, ("pageSize", str(size))]
            if token:
                query.append(("pageToken", token))
            reply = await self._req.send("GET", product, path, params=query)
            body = reply.body if isinstance(reply.body, dict) else {}
            meta = body.get("meta") or {}
            key = meta.get("key") or next((k for k in body if k != "meta"), None)
            items = body.get(key, []) if key else []
            yield items if isinstance(items, list) else []
            token = meta.get("nextToken")
            if not token:
                return


def _matches(item: dict[str, Any], query: ConversationQuery, created: str, updated: str) -> bool:
    if query.api == "v2" and query.states and item.get("status") not in query.states:
        return False
    return query.created.contains(parse_time(item.get(created))) and query.updated.contains(
        parse_time(item.get(updated))
    )
