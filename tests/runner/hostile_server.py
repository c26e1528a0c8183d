"""A hostile Twilio: a small, honest world served through a named misbehaviour.

The emulator plays Twilio as documented; this server plays the Twilio a deletion tool must
survive — one that lies, loops, floods and breaks its own envelopes. It shares no code with the
emulator or the product (a misreading in one cannot hide in the other) and keeps a record of its
own: every request as it arrived, every deletion it applied, every body it streamed. Tests judge
bulkops by that record, never by bulkops's account.

The world (:class:`World`) is tiny and fixed — five v1 conversations with four messages and two
participants each, four v2 conversations, three configurations, three Memory stores — and is
paged two items at a time whatever page size is asked, so every list has several pages. Its
answers are Twilio's envelopes (``meta.next_page_url`` for v1, ``meta.nextToken`` for v2 and
Memory, 204 / 404 for v1 deletes, 202 + Operation for the others — an Idempotency-Key seen
before answers with its original Operation — and Operations that complete, polled or not, by
the server's next request).

A :class:`Misbehaviour` corrupts that: ``before`` may answer instead of the world (and the world
then does nothing), ``items`` may change what a list holds, ``after`` may corrupt an answer the
world already acted on. :data:`MISBEHAVIOURS` names them; :meth:`HostileServer.behave` switches
to another (or back to sane, ``None``) mid-test, so a resume can finish the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import posixpath
import re
import socket
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlencode

import orjson
from aiohttp import web

PAGE = 2  # items a page holds, whatever PageSize says: a small world still pages
STREAM_CHUNK = 1 << 20
STREAM_LIMIT = 96 << 20  # what a "300 MB" body really streams at most: enough to judge a cap

V1 = "conversation_v1"
MESSAGE = "message"
PARTICIPANT = "participant"
V2 = "conversation_v2"
CONFIGURATION = "configuration"
STORE = "memory_store"
ASYNC_KINDS = (V2, CONFIGURATION, STORE)

OLD = "2023-02-0{}T10:00:00Z"  # before every cut-off the tests use (2024-01-01)
NEW = "2025-06-0{}T10:00:00Z"


def sid(prefix: str, n: int) -> str:
    """A Twilio SID: prefix and 32 hex digits, derived from ``n``."""
    return prefix + hashlib.sha256(f"{prefix}{n}".encode()).hexdigest()[:32]


def ttid(prefix: str, n: int) -> str:
    """A TypeID-style id: prefix, then 26 characters, the first 0-7."""
    return f"{prefix}{n:026d}"


# --- the world ---------------------------------------------------------------------------------


@dataclass
class Item:
    """One resource of the world."""

    kind: str
    id: str
    parent: str | None = None  # the conversation of a message or participant
    state: str = ""  # v1 state (lower-case) or v2 status (upper-case)
    created: str = OLD.format(1)
    updated: str = OLD.format(1)

    def v1_json(self) -> dict[str, Any]:
        """How a v1 list shows it."""
        body: dict[str, Any] = {
            "sid": self.id,
            "account_sid": "AC" + "0" * 32,
            "date_created": self.created,
            "date_updated": self.updated,
        }
        if self.kind == V1:
            body["state"] = self.state
        else:
            body["conversation_sid"] = self.parent
        return body

    def v2_json(self) -> dict[str, Any]:
        """How a v2 list shows it."""
        body: dict[str, Any] = {"id": self.id, "createdAt": self.created, "updatedAt": self.updated}
        if self.kind == V2:
            body |= {"status": self.state, "accountId": "AC" + "0" * 32}
        return body


@dataclass
class Operation:
    """An asynchronous deletion. Like Twilio's, it goes on whether or not anyone polls: it
    completes (and its item is gone) when the server receives its next request."""

    id: str
    kind: str
    resource_id: str
    product: str  # "conversations" | "memory"
    created_seq: int  # the request that created it
    status: str = "PENDING"
    polls: int = 0


class World:
    """What the server holds; deletions are applied here and recorded."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], Item] = {}
        self.order: list[tuple[str, str]] = []
        for n in range(5):
            conv = sid("CH", n)
            self._add(Item(V1, conv, state="closed" if n < 3 else "active",
                           created=OLD.format(n + 1), updated=OLD.format(n + 1)))
            for m in range(4):
                when = (OLD if m < 2 else NEW).format(m + 1)
                self._add(Item(MESSAGE, sid("IM", n * 10 + m), conv, created=when, updated=when))
            for p in range(2):
                self._add(Item(PARTICIPANT, sid("MB", n * 10 + p), conv))
        for n in range(4):
            status = "CLOSED" if n < 2 else "ACTIVE"
            self._add(Item(V2, ttid("conv_conversation_", n), state=status))
        for n in range(3):
            self._add(Item(CONFIGURATION, ttid("conv_configuration_", n)))
        for n in range(3):
            self._add(Item(STORE, ttid("mem_store_", n)))
        self.operations: dict[str, Operation] = {}
        self.pending: dict[tuple[str, str], str] = {}  # item -> its Operation's id
        self.keys: dict[str, str] = {}  # Idempotency-Key -> the Operation it created

    def _add(self, item: Item) -> None:
        self.items[(item.kind, item.id)] = item
        self.order.append((item.kind, item.id))

    def live(self, kind: str, parent: str | None = None) -> list[Item]:
        """The live items of ``kind`` (of conversation ``parent``), in creation order."""
        found = (self.items.get(key) for key in self.order if key[0] == kind)
        return [i for i in found if i is not None and (parent is None or i.parent == parent)]

    def everything(self) -> set[tuple[str, str]]:
        """(kind, id) of every live item."""
        return set(self.items)

    def remove(self, kind: str, id_: str) -> bool:
        """Delete an item (a v1 conversation takes its messages and participants along)."""
        if self.items.pop((kind, id_), None) is None:
            return False
        if kind == V1:
            for key in [k for k, i in self.items.items() if i.parent == id_]:
                del self.items[key]
        return True


# --- what the server records -------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One request as it arrived."""

    seq: int
    method: str
    raw_path: str
    path: str  # normalised: ``..`` resolved, as a naive router would
    query: str
    host: str
    authorization: str | None
    idempotency_key: str | None


@dataclass(frozen=True)
class Deletion:
    """A deletion the world applied, and the request that applied it."""

    kind: str
    id: str
    request_seq: int


@dataclass
class Stream:
    """A big body the server streamed: how far it got before the client hung up."""

    path: str
    sent: int = 0
    finished: bool = False


@dataclass
class Record:
    """Everything the server saw and did."""

    requests: list[Request] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    deletions: list[Deletion] = field(default_factory=list)
    streams: list[Stream] = field(default_factory=list)

    def deleted(self) -> set[tuple[str, str]]:
        """(kind, id) of every deletion applied."""
        return {(d.kind, d.id) for d in self.deletions}

    def deletes_sent(self) -> list[Request]:
        """Every DELETE request that arrived."""
        return [r for r in self.requests if r.method == "DELETE"]


# --- answers and misbehaviours -----------------------------------------------------------------


@dataclass
class Answer:
    """A reply not yet sent: status, JSON body (None: empty) and headers."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # sent as is instead of ``body``
    content_type: str = "application/json"


Reply = Answer | web.StreamResponse


@dataclass
class Exchange:
    """One request being answered: where it goes and what it touches."""

    request: web.Request
    route: str  # "list" | "delete" | "poll" | "unknown"
    kind: str  # the resource kind listed or deleted; the product of a poll
    first_page: bool
    seq: int
    server: HostileServer

    @property
    def world(self) -> World:
        """The server's world."""
        return self.server.world


class Misbehaviour:
    """The sane server: every hook passes the world's answer through."""

    ignores_filters = False

    async def before(self, ex: Exchange) -> Reply | None:
        """Answer instead of the world (which then does nothing); None lets the world answer."""
        return None

    def items(self, ex: Exchange, items: list[dict[str, Any]]) -> list[Any]:
        """What a list holds (in JSON form), before it is paged."""
        return items

    async def after(self, ex: Exchange, answer: Answer) -> Reply:
        """Corrupt an answer the world already acted on."""
        return answer


def twilio_error(status: int, code: int, message: str) -> Answer:
    """Twilio's classic error body."""
    return Answer(status, {"code": code, "message": message, "status": status,
                           "more_info": f"https://www.twilio.com/docs/errors/{code}"})


async def stream_body(
    ex: Exchange, status: int, head: bytes, tail: bytes
) -> web.StreamResponse:
    """A body of up to STREAM_LIMIT bytes with no Content-Length, sent until the client hangs up;
    how far it got is recorded."""
    record = Stream(ex.request.path)
    ex.server.record.streams.append(record)
    resp = web.StreamResponse(status=status)
    resp.content_type = "application/json"
    if status != 204:  # a 204's bytes simply follow its headers: no framing is possible
        resp.enable_chunked_encoding()
    await resp.prepare(ex.request)
    filler = b"x" * STREAM_CHUNK
    try:
        await resp.write(head)
        record.sent += len(head)
        while record.sent < STREAM_LIMIT:
            await resp.write(filler)
            record.sent += len(filler)
        await resp.write(tail)
        await resp.write_eof()
        record.finished = True
    except (ConnectionError, RuntimeError):
        pass  # the client hung up: what it read is recorded
    return resp


# --- the server --------------------------------------------------------------------------------

V1_LIST = re.compile(r"/v1/Conversations")
V1_CHILDREN = re.compile(r"/v1/Conversations/(?P<conv>[^/]+)/(?P<seg>Messages|Participants)")
V1_ONE = re.compile(r"/v1/Conversations/(?P<id>[^/]+)")
V1_CHILD = re.compile(
    r"/v1/Conversations/(?P<conv>[^/]+)/(?P<seg>Messages|Participants)/(?P<id>[^/]+)"
)
V2_ROUTES = {
    "/v2/Conversations": V2,
    "/v2/ControlPlane/Configurations": CONFIGURATION,
    "/v1/ControlPlane/Stores": STORE,
}
LIST_KEYS = {V1: "conversations", MESSAGE: "messages", PARTICIPANT: "participants",
             V2: "conversations", CONFIGURATION: "configurations", STORE: "stores"}
OPERATION = re.compile(r"/(?P<v>v1|v2)/ControlPlane/Operations/(?P<id>[^/]+)")


class HostileServer:
    """The world behind a misbehaviour, on 127.0.0.1; see the module docstring."""

    def __init__(self, misbehaviour: Misbehaviour | None = None) -> None:
        self.world = World()
        self.record = Record()
        self.misbehaviour = misbehaviour or Misbehaviour()
        self.origin = ""  # set once bound: http://127.0.0.1:PORT
        self.elsewhere = ""  # another origin (a second server) a misbehaviour may point at
        self._op_seq = 0

    def behave(self, misbehaviour: Misbehaviour | None) -> None:
        """Switch to another misbehaviour; None: sane from the next request on."""
        self.misbehaviour = misbehaviour or Misbehaviour()

    def app(self) -> web.Application:
        """The aiohttp application: one route takes everything, so no path is refused early."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw_path = request.raw_path.split("?", 1)[0]
        path = posixpath.normpath(request.path) if request.path else "/"
        seq = len(self.record.requests) + 1
        self.record.requests.append(
            Request(seq, request.method, raw_path, path, request.query_string,
                    request.host, request.headers.get("Authorization"),
                    request.headers.get("Idempotency-Key"))
        )
        self._settle(seq)
        route, kind = self.route(request.method, path)
        ex = Exchange(request, route, kind, "PageToken" not in request.query
                      and "pageToken" not in request.query, seq, self)
        mb = self.misbehaviour
        reply = await mb.before(ex) if route != "unknown" else None
        if reply is None:
            answer = self._answer(ex, path)
            reply = await mb.after(ex, answer) if route != "unknown" else answer
        if isinstance(reply, web.StreamResponse):
            self.record.statuses[seq] = reply.status
            return reply
        self.record.statuses[seq] = reply.status
        if reply.raw is not None:
            body = reply.raw
        elif reply.body is None:
            body = b""
        else:
            body = orjson.dumps(reply.body)
        resp = web.Response(status=reply.status, body=body or None, headers=reply.headers)
        if body:
            resp.content_type = reply.content_type
        return resp

    @staticmethod
    def route(method: str, path: str) -> tuple[str, str]:
        """What a request is ("list", "delete", "poll" or "unknown") and the kind it touches."""
        if method == "GET":
            if V1_LIST.fullmatch(path):
                return "list", V1
            if m := V1_CHILDREN.fullmatch(path):
                return "list", MESSAGE if m["seg"] == "Messages" else PARTICIPANT
            if path in V2_ROUTES:
                return "list", V2_ROUTES[path]
            if m := OPERATION.fullmatch(path):
                return "poll", "memory" if m["v"] == "v1" else "conversations"
        if method == "DELETE":
            if m := V1_CHILD.fullmatch(path):
                return "delete", MESSAGE if m["seg"] == "Messages" else PARTICIPANT
            if V1_ONE.fullmatch(path):
                return "delete", V1
            parent, _, _ = path.rpartition("/")
            if parent in V2_ROUTES:
                return "delete", V2_ROUTES[parent]
        return "unknown", ""

    # --- the world's honest answers ---

    def _answer(self, ex: Exchange, path: str) -> Answer:
        if ex.route == "list":
            return self._list(ex, path)
        if ex.route == "delete":
            return self._delete(ex, path)
        if ex.route == "poll":
            return self._poll(ex, path)
        return twilio_error(404, 20404, "The requested resource was not found")

    def _list(self, ex: Exchange, path: str) -> Answer:
        q = ex.request.query
        parent = None
        if m := V1_CHILDREN.fullmatch(path):
            parent = m["conv"]
            if (V1, parent) not in self.world.items:
                return twilio_error(404, 20404, "Conversation not found")
        items = self.world.live(ex.kind, parent)
        mb = self.misbehaviour
        if ex.kind == V1 and "State" in q and not mb.ignores_filters:
            items = [i for i in items if i.state == q["State"]]
        if ex.kind == V2 and "status" in q and not mb.ignores_filters:
            items = [i for i in items if i.state in q.getall("status")]
        if ex.kind == MESSAGE and q.get("Order") == "desc":
            items = items[::-1]
        shown: list[Any]
        if ex.kind in (V1, MESSAGE, PARTICIPANT):
            shown = [i.v1_json() for i in items]
        elif ex.kind == STORE:
            shown = [i.id for i in items]
        else:
            shown = [i.v2_json() for i in items]
        shown = mb.items(ex, shown)
        key = LIST_KEYS[ex.kind]
        if ex.kind in (V1, MESSAGE, PARTICIPANT):
            offset = int(q.get("PageToken", "PT0")[2:] or 0)
            page = shown[offset:offset + PAGE]
            following = offset + PAGE
            filters = [(k, v) for k, v in q.items() if k in ("State", "Order")]

            def url(at: int) -> str:
                params = [*filters, ("PageSize", str(PAGE)), ("Page", str(at // PAGE)),
                          ("PageToken", f"PT{at}")]
                return f"{self.origin}{path}?{urlencode(params)}"

            meta = {
                "page": offset // PAGE, "page_size": PAGE, "first_page_url": url(0),
                "previous_page_url": url(offset - PAGE) if offset else None, "url": url(offset),
                "next_page_url": url(following) if following < len(shown) else None,
                "key": key,
            }
            return Answer(200, {key: page, "meta": meta})
        offset = int(q.get("pageToken", "NT0")[2:] or 0)
        page = shown[offset:offset + PAGE]
        token_meta: dict[str, Any] = {"key": key, "pageSize": len(page)}
        if offset + PAGE < len(shown):
            token_meta["nextToken"] = f"NT{offset + PAGE}"
        if offset:
            token_meta["previousToken"] = f"NT{offset - PAGE}"
        return Answer(200, {key: page, "meta": token_meta})

    def _settle(self, seq: int) -> None:
        """Complete every Operation created by an earlier request."""
        for op in self.world.operations.values():
            if op.status == "PENDING" and op.created_seq < seq:
                op.status = "COMPLETED"
                self.world.pending.pop((op.kind, op.resource_id), None)
                if self.world.remove(op.kind, op.resource_id):
                    self.record.deletions.append(Deletion(op.kind, op.resource_id, seq))

    def _delete(self, ex: Exchange, path: str) -> Answer:
        id_ = path.rsplit("/", 1)[-1]
        key = (ex.kind, id_)
        idempotency_key = ex.request.headers.get("Idempotency-Key")
        if idempotency_key in self.world.keys:
            # Twilio's promise: the same key answers with the original Operation.
            return self.accepted(self.world.operations[self.world.keys[idempotency_key]])
        item = self.world.items.get(key)
        m = V1_CHILD.fullmatch(path)
        if item is None or (m is not None and item.parent != m["conv"]):
            return twilio_error(404, 20404, "The requested resource was not found")
        if ex.kind not in ASYNC_KINDS:
            self.world.remove(*key)
            self.record.deletions.append(Deletion(ex.kind, id_, ex.seq))
            return Answer(204)
        op_id = self.world.pending.get(key)
        if op_id is None:
            self._op_seq += 1
            product = "memory" if ex.kind == STORE else "conversations"
            op_id = ttid("mem_operation_" if product == "memory" else "proc_job_", self._op_seq)
            self.world.operations[op_id] = Operation(op_id, ex.kind, id_, product, ex.seq)
            self.world.pending[key] = op_id
            if idempotency_key is not None:
                self.world.keys[idempotency_key] = op_id
        return self.accepted(self.world.operations[op_id])

    def status_url(self, op: Operation) -> str:
        """Where an Operation is polled."""
        version = "v1" if op.product == "memory" else "v2"
        return f"{self.origin}/{version}/ControlPlane/Operations/{op.id}"

    def accepted(self, op: Operation) -> Answer:
        """The 202 of an async delete."""
        url = self.status_url(op)
        related = {"conversationId" if op.kind == V2 else "configurationId": op.resource_id}
        body: dict[str, Any] = {"statusUrl": url}
        if op.product == "memory":
            body["message"] = "Memory Store deletion request accepted for processing."
        else:
            body["related"] = related
        return Answer(202, body, {"Operation-Id": op.id, "Location": url})

    def _poll(self, ex: Exchange, path: str) -> Answer:
        m = OPERATION.fullmatch(path)
        assert m is not None
        op = self.world.operations.get(m["id"])
        if op is None or op.product != ex.kind:
            return twilio_error(404, 20404, "Operation not found")
        op.polls += 1
        return Answer(200, self.operation_body(op))

    def operation_body(self, op: Operation, status: str | None = None) -> dict[str, Any]:
        """An Operation's status document."""
        return {"operationId": op.id, "status": status or op.status,
                "createdAt": "2026-01-01T00:00:00Z", "statusUrl": self.status_url(op)}

    def operation_of(self, ex: Exchange) -> Operation | None:
        """The Operation a poll asks about."""
        m = OPERATION.fullmatch(posixpath.normpath(ex.request.path))
        return None if m is None else self.world.operations.get(m["id"])


@asynccontextmanager
async def running(server: HostileServer) -> AsyncIterator[str]:
    """Serve ``server`` on 127.0.0.1 (port 0) until the block exits; yields its origin."""
    runner = web.AppRunner(
        server.app(), access_log=None, handler_cancellation=True, shutdown_timeout=1.0
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port: int = runner.addresses[0][1]
        server.origin = f"http://127.0.0.1:{port}"
        yield server.origin
    finally:
        await runner.cleanup()


# --- the misbehaviours -------------------------------------------------------------------------


class ThrottleDeletes(Misbehaviour):
    """Every DELETE (or the first ``times``) answers 429 with these headers; nothing is deleted."""

    def __init__(self, headers: dict[str, str], times: int | None = None) -> None:
        self.headers = headers
        self.times = times
        self.sent = 0

    async def before(self, ex: Exchange) -> Reply | None:
        if ex.route != "delete" or (self.times is not None and self.sent >= self.times):
            return None
        self.sent += 1
        answer = twilio_error(429, 20429, "Too many requests")
        answer.headers = dict(self.headers)
        return answer


class FailDeletes(Misbehaviour):
    """Every DELETE answers ``status`` (a 500 forever); nothing is deleted."""

    def __init__(self, status: int) -> None:
        self.status = status

    async def before(self, ex: Exchange) -> Reply | None:
        if ex.route != "delete":
            return None
        return twilio_error(self.status, 20500, "Internal Server Error")


class InjectItem(Misbehaviour):
    """The first page of every ``kind`` list also holds ``item`` (a JSON value)."""

    def __init__(self, kind: str, item: Callable[[HostileServer], Any]) -> None:
        self.kind = kind
        self.item = item

    def items(self, ex: Exchange, items: list[dict[str, Any]]) -> list[Any]:
        if ex.kind != self.kind:
            return items
        return [self.item(ex.server), *items]


class RedateItem(Misbehaviour):
    """The first ``kind`` item listed shows ``value`` as its ``field``."""

    def __init__(self, kind: str, field_: str, value: Any) -> None:
        self.kind = kind
        self.field = field_
        self.value = value

    def items(self, ex: Exchange, items: list[dict[str, Any]]) -> list[Any]:
        if ex.kind != self.kind or not items:
            return items
        return [{**items[0], self.field: self.value}, *items[1:]]


class Duplicates(Misbehaviour):
    """Each item of a ``kind`` list is listed twice, and the last item of each page again at the
    start of the next: duplicates within and across pages."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def items(self, ex: Exchange, items: list[dict[str, Any]]) -> list[Any]:
        if ex.kind != self.kind:
            return items
        doubled: list[Any] = []
        for item in items:
            doubled += [item, item]
        # A page of 2 ends with the first copy; the next page starts with the second.
        return [doubled[0], *doubled]


class IgnoreFilters(Misbehaviour):
    """The server ignores State / status filters (and still shows each item's real state)."""

    ignores_filters = True


class NewestFirst(Misbehaviour):
    """Message lists come newest first although asked oldest first (``Order=asc``)."""

    def items(self, ex: Exchange, items: list[dict[str, Any]]) -> list[Any]:
        return items[::-1] if ex.kind == MESSAGE else items


class CorruptEnvelope(Misbehaviour):
    """Every page of a ``kind`` list is rewritten by ``change`` (the body dict, in place or
    replaced)."""

    def __init__(self, kind: str, change: Callable[[Exchange, dict[str, Any]], Any]) -> None:
        self.kind = kind
        self.change = change

    async def after(self, ex: Exchange, answer: Answer) -> Reply:
        if ex.route != "list" or ex.kind != self.kind or not isinstance(answer.body, dict):
            return answer
        return Answer(answer.status, self.change(ex, answer.body), answer.headers)


def next_url(value: Callable[[Exchange, dict[str, Any]], Any]) -> Callable[
    [Exchange, dict[str, Any]], Any
]:
    """A change: the first page's ``meta.next_page_url`` becomes ``value``."""

    def change(ex: Exchange, body: dict[str, Any]) -> Any:
        if ex.first_page:
            body["meta"]["next_page_url"] = value(ex, body)
        return body

    return change


def next_url_back(ex: Exchange, body: dict[str, Any]) -> dict[str, Any]:
    """A change: pages one and two name each other as the next page, a cycle that holds even
    once their items are deleted (an emptied page still names the other)."""
    meta = body["meta"]
    if "PageToken=PT2" in ex.request.query_string:
        meta["next_page_url"] = meta["first_page_url"]
    else:
        meta["next_page_url"] = str(meta["first_page_url"]).replace(
            "Page=0&PageToken=PT0", "Page=1&PageToken=PT2"
        )
    return body


def next_url_same(ex: Exchange, body: dict[str, Any]) -> dict[str, Any]:
    """A change: every page's next page is itself."""
    body["meta"]["next_page_url"] = body["meta"]["url"]
    return body


def token_repeats(ex: Exchange, body: dict[str, Any]) -> dict[str, Any]:
    """A change: every page's nextToken is the same."""
    body["meta"]["nextToken"] = "NT0"
    return body


class ReplaceListBody(Misbehaviour):
    """Every ``kind`` list answers 200 with ``raw`` bytes."""

    def __init__(self, kind: str, raw: bytes, content_type: str = "application/json") -> None:
        self.kind = kind
        self.raw = raw
        self.content_type = content_type

    async def before(self, ex: Exchange) -> Reply | None:
        if ex.route == "list" and ex.kind == self.kind:
            return Answer(200, raw=self.raw, content_type=self.content_type)
        return None


class HugeListBody(Misbehaviour):
    """Every ``kind`` list streams a body of (up to) STREAM_LIMIT bytes with no Content-Length:
    valid JSON, if the client read it all, that lists nothing."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    async def before(self, ex: Exchange) -> Reply | None:
        if ex.route != "list" or ex.kind != self.kind:
            return None
        key = LIST_KEYS[self.kind]
        return await stream_body(ex, 200, f'{{"{key}": [], "filler": "'.encode(), b'"}')


class HugeNoContent(Misbehaviour):
    """Every DELETE that acts answers 204 followed by a huge body (a 204 has none)."""

    async def after(self, ex: Exchange, answer: Answer) -> Reply:
        if ex.route == "delete" and answer.status == 204:
            return await stream_body(ex, 204, b"", b"")
        return answer


class ResetMidBody(Misbehaviour):
    """Every ``kind`` list sends its headers and part of its body, then resets the connection."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    async def before(self, ex: Exchange) -> Reply | None:
        if ex.route != "list" or ex.kind != self.kind:
            return None
        resp = web.StreamResponse(status=200)
        resp.content_type = "application/json"
        resp.content_length = 10_000
        await resp.prepare(ex.request)
        await resp.write(b'{"conversations": [{"sid": "CH')
        transport = ex.request.transport
        if transport is not None:
            # Linger 0: the close sends a TCP RST, a reset rather than an orderly end.
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        return resp


class RawDeleteAnswer(Misbehaviour):
    """Every DELETE is answered with ``data`` written raw on the connection, which is then
    closed: below HTTP, where a framework's response cannot go. ``applied``: the world acts
    first (only a DELETE it answered 2xx is cut; a 404 passes), so the client cannot know
    whether its request took effect."""

    def __init__(self, data: bytes, *, applied: bool) -> None:
        self.data = data
        self.applied = applied

    async def before(self, ex: Exchange) -> Reply | None:
        if ex.route != "delete" or self.applied:
            return None
        return self._cut(ex)

    async def after(self, ex: Exchange, answer: Answer) -> Reply:
        if ex.route != "delete" or not self.applied or answer.status >= 300:
            return answer
        return self._cut(ex)

    def _cut(self, ex: Exchange) -> web.StreamResponse:
        transport = ex.request.transport
        if transport is not None:
            transport.write(self.data)
            transport.close()  # orderly: what was written is delivered, then EOF
        return web.StreamResponse(status=599)  # never sent: the connection is closing


class PollAnswers(Misbehaviour):
    """Polls answer RUNNING (or ``status``) with these headers — the first ``times`` polls of
    each Operation, or every one — without completing it."""

    def __init__(
        self,
        headers: dict[str, str] | None = None,
        status: Any = "RUNNING",
        times: int | None = None,
        body: Any = None,
    ) -> None:
        self.headers = headers or {}
        self.status = status
        self.times = times
        self.body = body
        self.seen: dict[str, int] = {}

    async def before(self, ex: Exchange) -> Reply | None:
        if ex.route != "poll":
            return None
        op = ex.server.operation_of(ex)
        if op is None:
            return None
        n = self.seen[op.id] = self.seen.get(op.id, 0) + 1
        if self.times is not None and n > self.times:
            return None
        op.polls += 1
        if self.body is not None:
            return Answer(200, self.body, dict(self.headers))
        doc = ex.server.operation_body(op)
        doc["status"] = self.status
        return Answer(200, doc, dict(self.headers))


class CorruptAccepted(Misbehaviour):
    """Every 202 is rewritten by ``change`` (the deletion is under way all the same)."""

    def __init__(self, change: Callable[[Exchange, Answer], Answer]) -> None:
        self.change = change

    async def after(self, ex: Exchange, answer: Answer) -> Reply:
        if ex.route == "delete" and answer.status == 202:
            return self.change(ex, answer)
        return answer


def status_elsewhere(ex: Exchange, answer: Answer) -> Answer:
    """The 202 points its status URL (body and Location) at another origin."""
    url = str(answer.body["statusUrl"]).replace(ex.server.origin, ex.server.elsewhere)
    return Answer(202, {**answer.body, "statusUrl": url},
                  {**answer.headers, "Location": url})


def without_operation(ex: Exchange, answer: Answer) -> Answer:
    """A bare 202: no Operation-Id, no Location, no statusUrl."""
    return Answer(202, {"related": None})


def operation_id_traversal(ex: Exchange, answer: Answer) -> Answer:
    """The 202 names its Operation ``../../../v1/Conversations/CH…`` and gives no status URL."""
    conv = sid("CH", 4)
    return Answer(202, {"related": None},
                  {"Operation-Id": f"../../../v1/Conversations/{conv}"})


class HtmlAccepted(Misbehaviour):
    """Every async DELETE acts, then answers 202 with an HTML page instead of JSON."""

    async def after(self, ex: Exchange, answer: Answer) -> Reply:
        if ex.route == "delete" and answer.status == 202:
            return Answer(202, raw=b"<html><body>Accepted</body></html>",
                          content_type="text/html")
        return answer


class StrangeHeaders(Misbehaviour):
    """Every answer carries non-ASCII headers; the first two DELETEs are 429s whose
    Retry-After and Twilio-Concurrent-Requests are Arabic-Indic digits."""

    HEADERS: ClassVar[dict[str, str]] = {
        "X-Twilio-Note": "\u2713 caf\u00e9",
        "Twilio-Request-Duration": "\u0661",
    }

    def __init__(self) -> None:
        self.throttle = ThrottleDeletes(
            {"Retry-After": "\u0661", "Twilio-Concurrent-Requests": "\u0663", **self.HEADERS},
            times=2,
        )

    async def before(self, ex: Exchange) -> Reply | None:
        return await self.throttle.before(ex)

    async def after(self, ex: Exchange, answer: Answer) -> Reply:
        answer.headers.update(self.HEADERS)
        if ex.route == "poll":
            answer.headers["Retry-After"] = "\u0661"
        return answer


class ConcurrencyHeader(Misbehaviour):
    """``Twilio-Concurrent-Requests: ²`` on every answer; the first two DELETEs are 429s."""

    def __init__(self) -> None:
        self.throttle = ThrottleDeletes({"Twilio-Concurrent-Requests": "\u00b2",
                                         "Retry-After": "1"}, times=2)

    async def before(self, ex: Exchange) -> Reply | None:
        return await self.throttle.before(ex)

    async def after(self, ex: Exchange, answer: Answer) -> Reply:
        answer.headers["Twilio-Concurrent-Requests"] = "\u00b2"
        return answer


def traversal_item(server: HostileServer) -> dict[str, Any]:
    """A closed v1 conversation whose sid climbs to a configuration."""
    target = ttid("conv_configuration_", 0)
    return {"sid": f"../../v2/ControlPlane/Configurations/{target}", "state": "closed",
            "date_created": OLD.format(1), "date_updated": OLD.format(1)}


def v1_origin_url(netloc: Callable[[HostileServer], str]) -> Callable[
    [Exchange, dict[str, Any]], str
]:
    """A next page URL: the real one with its scheme and authority replaced."""

    def value(ex: Exchange, body: dict[str, Any]) -> str:
        real = str(body["meta"]["url"]).replace("PageToken=PT0", "PageToken=PT2")
        real = real.replace("Page=0", "Page=1")
        return real.replace(ex.server.origin, netloc(ex.server))

    return value


def port_of(server: HostileServer) -> str:
    """The server's port, as text."""
    return server.origin.rsplit(":", 1)[1]


# name -> a factory of its misbehaviour (a fresh one per run: some count what they did).
MISBEHAVIOURS: dict[str, Callable[[], Misbehaviour]] = {
    "retry-after-400-digits": lambda: ThrottleDeletes({"Retry-After": "9" * 400}),
    "retry-after-1e9": lambda: ThrottleDeletes({"Retry-After": "1000000000"}),
    "retry-after-date-9999": lambda: ThrottleDeletes(
        {"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"}
    ),
    "retry-after-superscript": lambda: ThrottleDeletes({"Retry-After": "\u00b2"}, times=3),
    "retry-after-negative": lambda: ThrottleDeletes({"Retry-After": "-1"}, times=3),
    "concurrent-requests-superscript": ConcurrencyHeader,
    "429-forever-no-retry-after": lambda: ThrottleDeletes({}),
    "500-forever": lambda: FailDeletes(500),
    "item-without-sid": lambda: InjectItem(V1, lambda s: {
        "state": "closed", "date_created": OLD.format(1), "date_updated": OLD.format(1)}),
    "item-without-id": lambda: InjectItem(V2, lambda s: {"status": "CLOSED"}),
    "item-sid-number": lambda: InjectItem(V1, lambda s: {
        "sid": 12345, "state": "closed", "date_created": OLD.format(1)}),
    "item-not-an-object": lambda: InjectItem(CONFIGURATION, lambda s: "conv_configuration_x"),
    "naive-date": lambda: RedateItem(MESSAGE, "date_created", "2023-02-01T10:00:00"),
    "date-not-a-string": lambda: RedateItem(MESSAGE, "date_created", 1675245600),
    "sid-path-traversal": lambda: InjectItem(V1, traversal_item),
    "id-of-another-kind": lambda: InjectItem(V2, lambda s: {
        "id": ttid("conv_configuration_", 1), "status": "CLOSED"}),
    "store-id-traversal": lambda: InjectItem(
        STORE,
        lambda s: f"../../../v2/ControlPlane/Configurations/{ttid('conv_configuration_', 2)}",
    ),
    "next-url-userinfo": lambda: CorruptEnvelope(V1, next_url(v1_origin_url(
        lambda s: f"http://user:secret@127.0.0.1:{port_of(s)}"))),
    "next-url-port-99999": lambda: CorruptEnvelope(V1, next_url(v1_origin_url(
        lambda s: "http://127.0.0.1:99999"))),
    "next-url-other-origin": lambda: CorruptEnvelope(V1, next_url(v1_origin_url(
        lambda s: s.elsewhere))),
    "next-url-other-path": lambda: CorruptEnvelope(V1, next_url(
        lambda ex, body: f"{ex.server.origin}/v2/Conversations?pageSize=2")),
    "next-url-not-a-string": lambda: CorruptEnvelope(V1, next_url(
        lambda ex, body: {"url": body["meta"]["url"]})),
    "repeated-page": lambda: CorruptEnvelope(V1, next_url_same),
    "pagination-cycle": lambda: CorruptEnvelope(V1, next_url_back),
    "next-token-repeating": lambda: CorruptEnvelope(V2, token_repeats),
    "next-token-not-a-string": lambda: CorruptEnvelope(
        CONFIGURATION, lambda ex, body: {**body, "meta": {**body["meta"], "nextToken": ["NT2"]}}
    ),
    "huge-body-streamed": lambda: HugeListBody(V1),
    "body-json-list": lambda: ReplaceListBody(V1, b"[1, 2, 3]"),
    "body-json-string": lambda: ReplaceListBody(V2, b'"conversations"'),
    "body-json-number": lambda: ReplaceListBody(STORE, b"42"),
    "meta-not-a-dict": lambda: CorruptEnvelope(V1, lambda ex, body: {**body, "meta": "page 1"}),
    "meta-key-missing": lambda: CorruptEnvelope(
        CONFIGURATION, lambda ex, body: {**body, "meta": {**body["meta"], "key": "items"}}
    ),
    "items-not-a-list": lambda: CorruptEnvelope(
        V1, lambda ex, body: {**body, "conversations": {"sid": sid("CH", 0)}}
    ),
    "v2-items-not-a-list": lambda: CorruptEnvelope(
        V2, lambda ex, body: {**body, "conversations": "none"}
    ),
    "pages-out-of-date-order": NewestFirst,
    "state-filter-ignored": IgnoreFilters,
    "poll-retry-after-superscript": lambda: PollAnswers({"Retry-After": "\u00b2"}, times=2),
    "poll-retry-after-zero": lambda: PollAnswers({"Retry-After": "0"}),
    "operation-unknown-status": lambda: PollAnswers(status="EXPLODED"),
    "operation-status-not-a-string": lambda: PollAnswers(status=["COMPLETED"]),
    "poll-body-not-an-object": lambda: PollAnswers(body=["COMPLETED"]),
    "status-url-other-origin": lambda: CorruptAccepted(status_elsewhere),
    "accepted-without-operation": lambda: CorruptAccepted(without_operation),
    "operation-id-traversal": lambda: CorruptAccepted(operation_id_traversal),
    "html-2xx-list": lambda: ReplaceListBody(V1, b"<html><body>OK</body></html>", "text/html"),
    "html-202": HtmlAccepted,
    "204-huge-body": HugeNoContent,
    "reset-mid-body": lambda: ResetMidBody(V1),
    "delete-garbage-status-line": lambda: RawDeleteAnswer(b"HTTP/1.1 ??? Oops\r\n\r\n",
                                                          applied=False),
    "delete-applied-then-dropped": lambda: RawDeleteAnswer(b"", applied=True),
    "headers-non-ascii": StrangeHeaders,
    "duplicates": lambda: Duplicates(V1),
}


# --- a hostile peer below HTTP: raw bytes for the lean transport --------------------------------


@dataclass(frozen=True)
class Raw:
    """One scripted answer: the bytes written, then what becomes of the connection —
    ``keep`` (read the next request), ``close`` (an orderly close), ``reset`` (a TCP RST) or
    ``hang`` (nothing more is written; the connection stays open until the client goes)."""

    data: bytes = b""
    then: str = "keep"


SANE_204 = Raw(b"HTTP/1.1 204 No Content\r\n\r\n")


@dataclass(frozen=True)
class RawRequest:
    """A request head as it arrived, and the connection (1, 2, ...) it came on."""

    connection: int
    head: bytes

    @property
    def line(self) -> str:
        """The request line."""
        return self.head.split(b"\r\n", 1)[0].decode("latin-1")

    def header(self, name: str) -> str | None:
        """The first header ``name`` (any case), or None."""
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.decode("latin-1").partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None


class RawServer:
    """Answers each request head it reads with the next :class:`Raw` of ``script`` (then
    SANE_204), and records every request and connection: the judge of what the client sent,
    how often and on which connection. Bodiless requests only (the lean transport's)."""

    def __init__(self, script: list[Raw] | None = None) -> None:
        self.script = list(script or [])
        self.requests: list[RawRequest] = []
        self.connections = 0
        self.open = 0  # connections not yet closed (by either side)
        self.most_open = 0
        self.closed = asyncio.Event()  # set each time a connection closes
        self.url = ""
        self.handlers: set[asyncio.Task[None]] = set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.handlers.add(task)
        self.connections += 1
        number = self.connections
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return  # the client closed it
                self.requests.append(RawRequest(number, head))
                answer = self.script.pop(0) if self.script else SANE_204
                writer.write(answer.data)
                await writer.drain()
                if answer.then == "reset":
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                if answer.then == "close":
                    return
                if answer.then == "hang":
                    await reader.read()  # until the client hangs up
                    return
        except ConnectionError:
            return
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self.open -= 1
            self.closed.set()


@asynccontextmanager
async def raw_running(server: RawServer) -> AsyncIterator[str]:
    """Serve ``server`` on 127.0.0.1 (port 0) until the block exits; yields its origin."""
    listener = await asyncio.start_server(server._serve, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server.url
    finally:
        listener.close()
        await listener.wait_closed()
        # Each handler ends once its client hangs up; one that does not is cancelled, so no
        # task outlives the test's loop.
        pending = [t for t in server.handlers if not t.done()]
        if pending:
            _, late = await asyncio.wait(pending, timeout=5)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
