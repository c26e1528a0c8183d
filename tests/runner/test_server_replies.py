"""Server replies bulkops must not trust (issue 11 §1, §3): list items, IDs, next pages, page
order and body sizes.

A small list server of this file's own misbehaves one way per case; the real CLI runs against
it over real HTTP, and the DELETEs the server received are the judge: nothing outside the
selection, no traceback, exit 1 naming the listing whenever something was left out, within a
bounded time.
"""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from aiohttp import web
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from runner.engine.discovery import Discovery
from runner.errors import BadListing, PermanentError, RemoteError
from runner.kinds.base import Product, Target
from runner.kinds.configurations import ListConfigurations
from runner.kinds.conversations import ListConversations
from runner.kinds.listing import AscendingCheck, TimeWindow, parse_time
from runner.kinds.memory_stores import ListStores
from runner.kinds.registry import by_name
from runner.kinds.v1 import ConversationQuery, ListChildren
from runner.plan.selection import Source
from runner.values import ProductLimit, RetryPolicy
from runner.wire import client as client_module
from runner.wire import pagination
from runner.wire.client import TwilioClient
from runner.wire.limits import Limits
from runner.wire.pagination import (
    PageGuard,
    next_page_url,
    read_envelope,
)
from runner.wire.requester import Requester
from tests.runner.conftest import checkpoints, point_at, run_cli, start_bulkops

NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=400)
NEW = NOW - timedelta(days=1)
CUTOFF = "30d"
TRAVERSAL = "../../v2/ControlPlane/Configurations/conv_configuration_00000000000000000000000001"


def sid(prefix: str, n: int) -> str:
    """A valid SID of ``prefix`` (CH, IM, MB, IS)."""
    return f"{prefix}{n:032x}"


def ttid(prefix: str, n: int) -> str:
    """A valid v2/Memory ID of ``prefix`` (conv_conversation_, conv_configuration_, mem_store_)."""
    return f"{prefix}0{n:025d}"


def iso(when: datetime) -> str:
    """A timestamp as Twilio writes it."""
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


CH1, CH2 = sid("CH", 1), sid("CH", 2)


def conv(n: int, state: str = "closed", created: datetime = OLD, **extra: Any) -> dict[str, Any]:
    """A v1 conversation list item."""
    return {
        "sid": sid("CH", n),
        "state": state,
        "date_created": iso(created),
        "date_updated": iso(created),
        **extra,
    }


def msg(n: int, created: datetime = OLD, parent: str = CH1, **extra: Any) -> dict[str, Any]:
    """A v1 message list item of conversation ``parent``."""
    return {
        "sid": sid("IM", n),
        "conversation_sid": parent,
        "date_created": iso(created),
        **extra,
    }


def v2conv(n: int, status: str = "CLOSED") -> dict[str, Any]:
    """A v2 conversation list item."""
    when = iso(OLD)
    return {"id": ttid("conv_conversation_", n), "status": status, "createdAt": when,
            "updatedAt": when}


def config(n: int, created: datetime = OLD, **extra: Any) -> dict[str, Any]:
    """A v2 configuration list item."""
    return {"id": ttid("conv_configuration_", n), "createdAt": iso(created),
            "updatedAt": iso(created), **extra}


# -- the server ------------------------------------------------------------------------------

Responder = Callable[[web.Request, "ListServer"], Awaitable[Any]]


@dataclass
class ListServer:
    """Answers GETs of its list paths as each case says; records every request it receives,
    accepts every DELETE (204 on v1, 202 + an Operation that is already COMPLETED elsewhere)."""

    lists: dict[str, Responder]
    url: str = ""
    received: list[tuple[str, str]] = field(default_factory=list)  # (method, path and query)
    streamed: int = 0  # body bytes written by streaming responders

    def deletes(self) -> set[str]:
        """The path of every DELETE received."""
        return {path for method, path in self.received if method == "DELETE"}

    def gets(self, path: str) -> int:
        """How many GETs of ``path`` (any query) were received."""
        return sum(1 for m, p in self.received if m == "GET" and p.split("?")[0] == path)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Route one request."""
        self.received.append((request.method, request.path_qs))
        if request.method == "DELETE":
            if request.path.startswith("/v1/Conversations") or "/Services/" in request.path:
                return web.Response(status=204)
            product = "v1" if request.path.startswith("/v1/ControlPlane") else "v2"
            status_url = f"{self.url}/{product}/ControlPlane/Operations/op_1"
            return web.json_response(
                {"statusUrl": status_url}, status=202, headers={"Operation-Id": "op_1"}
            )
        if request.method == "GET" and "/Operations/" in request.path:
            return web.json_response({"status": "COMPLETED"})
        responder = self.lists.get(request.path)
        if request.method != "GET" or responder is None:
            return web.json_response({"code": 20404, "message": "not found"}, status=404)
        result = await responder(request, self)
        if isinstance(result, web.StreamResponse):
            return result
        # json, not orjson: a hostile body may hold integers past 64 bits.
        return web.Response(body=json.dumps(result).encode(), content_type="application/json")


@asynccontextmanager
async def list_server(lists: dict[str, Responder]) -> AsyncIterator[ListServer]:
    """Serve ``lists`` on 127.0.0.1, port 0, until the block exits."""
    server = ListServer(lists)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        yield server
    finally:
        await runner.cleanup()


def v1_pages(key: str, pages: list[list[Any]]) -> Responder:
    """A v1 list answered honestly over ``pages`` (Page=N in each next_page_url)."""

    async def respond(request: web.Request, server: ListServer) -> Any:
        index = int(request.query.get("Page", "0"))
        more = index + 1 < len(pages)
        next_url = (
            f"{server.url}{request.path}?PageSize=100&Page={index + 1}&PageToken=PT{index + 1}"
            if more
            else None
        )
        return {key: pages[index], "meta": {"key": key, "page": index, "next_page_url": next_url}}

    return respond


def token_pages(key: str, pages: list[list[Any]]) -> Responder:
    """A v2/Memory list answered honestly over ``pages`` (the token is the next index)."""

    async def respond(request: web.Request, server: ListServer) -> Any:
        index = int(request.query.get("pageToken", "0"))
        meta: dict[str, Any] = {"key": key, "pageSize": len(pages[index])}
        if index + 1 < len(pages):
            meta["nextToken"] = str(index + 1)
        return {key: pages[index], "meta": meta}

    return respond


def fixed(body: Any) -> Responder:
    """Always the same body."""

    async def respond(request: web.Request, server: ListServer) -> Any:
        return body

    return respond


def v1_next(make_url: Callable[[ListServer], Any], items: list[Any] | None = None) -> Responder:
    """A v1 conversation list whose every page gives the next_page_url ``make_url`` makes."""

    async def respond(request: web.Request, server: ListServer) -> Any:
        page = [conv(1)] if items is None else items
        return {"conversations": page,
                "meta": {"key": "conversations", "next_page_url": make_url(server)}}

    return respond


def error_reply(status: int, size: int) -> Responder:
    """An error status with a body of ``size`` bytes (past the error-body cap)."""

    async def respond(request: web.Request, server: ListServer) -> Any:
        return web.Response(status=status, body=b"{" * size, content_type="application/json")

    return respond


def v1_cycle() -> Responder:
    """Page 0 → A → B → A → …: a loop of two URLs."""

    async def respond(request: web.Request, server: ListServer) -> Any:
        nxt = "B" if request.query.get("PageToken") == "A" else "A"
        url = f"{server.url}/v1/Conversations?PageSize=100&PageToken={nxt}"
        return {"conversations": [conv(1)],
                "meta": {"key": "conversations", "next_page_url": url}}

    return respond


def endless_tokens() -> Responder:
    """A configuration list whose every page names a new next page: never a repeat."""

    async def respond(request: web.Request, server: ListServer) -> Any:
        token = int(request.query.get("pageToken", "0")) + 1
        return {"configurations": [config(1)],
                "meta": {"key": "configurations", "nextToken": str(token)}}

    return respond


def streamed_body(declared: int | None, status: int = 200) -> Responder:
    """A reply that streams spaces until the client hangs up (up to 256 MiB), declaring
    ``declared`` bytes in Content-Length or none (chunked)."""

    async def respond(request: web.Request, server: ListServer) -> Any:
        resp = web.StreamResponse(status=status, headers={"Content-Type": "application/json"})
        if declared is not None:
            resp.content_length = declared
        await resp.prepare(request)
        chunk = b" " * 65536
        try:
            for _ in range(4096):
                await resp.write(chunk)
                server.streamed += len(chunk)
        except ConnectionError:
            pass  # the client hung up: what this case is waiting for
        return resp

    return respond


# -- the cases -------------------------------------------------------------------------------

CONVERSATIONS_CLOSED = "targets:\n  - kind: conversations\n    where: {state: closed}\n"
MESSAGES_OF_CH1 = (
    f"targets:\n  - kind: messages\n    where: {{conversations: [{CH1}], "
    f"created_before: {CUTOFF}}}\n"
)
PARTICIPANTS_OF_CH1 = f"targets:\n  - kind: participants\n    where: {{conversations: [{CH1}]}}\n"
CONFIGURATIONS_OLD = (
    f"targets:\n  - kind: configurations\n    where: {{created_before: {CUTOFF}}}\n"
)
V2_CLOSED = "targets:\n  - kind: conversations\n    api: v2\n    where: {status: CLOSED}\n"
STORES_ALL = "targets:\n  - kind: memory_stores\n    where: {all: true}\n"
SERVICE = sid("IS", 1)


def conv_path(n: int) -> str:
    """The DELETE path of v1 conversation ``n``."""
    return f"/v1/Conversations/{sid('CH', n)}"


def msg_path(n: int, parent: str = CH1) -> str:
    """The DELETE path of message ``n`` of ``parent``."""
    return f"/v1/Conversations/{parent}/Messages/{sid('IM', n)}"


@dataclass(frozen=True)
class Case:
    """One misbehaviour: the job, what the server lists, and what must follow."""

    spec: str
    lists: dict[str, Responder]
    deletes: frozenset[str]
    code: int
    error: str = ""  # a fragment of the discovery error the checkpoint records
    max_gets: int | None = None  # a bound on the list GETs of the first list path


def case(
    spec: str,
    lists: dict[str, Responder],
    deletes: set[str],
    code: int,
    error: str = "",
    max_gets: int | None = None,
) -> Case:
    """A Case (a function, so that each reads in one line or a few)."""
    return Case(spec, lists, frozenset(deletes), code, error, max_gets)


CONVS = "/v1/Conversations"
MSGS = f"/v1/Conversations/{CH1}/Messages"

CASES = [
    pytest.param(
        case(CONVERSATIONS_CLOSED,
             {CONVS: v1_pages("conversations", [[conv(1), {**conv(2), "sid": TRAVERSAL}]])},
             {conv_path(1)}, 1, "1 item with an invalid id"),
        id="v1-sid-path-traversal",
    ),
    pytest.param(
        case(CONVERSATIONS_CLOSED,
             {CONVS: v1_pages("conversations", [[conv(1), {"state": "closed"}]])},
             {conv_path(1)}, 1, "1 item with an invalid id"),
        id="v1-item-without-sid",
    ),
    pytest.param(
        case(CONVERSATIONS_CLOSED,
             {CONVS: v1_pages("conversations",
                              [[conv(1), {**conv(2), "sid": 12}, {**conv(3), "sid": None}]])},
             {conv_path(1)}, 1, "2 items with an invalid id"),
        id="v1-sid-not-text",
    ),
    pytest.param(
        case(CONVERSATIONS_CLOSED,
             {CONVS: v1_pages("conversations", [[conv(1), sid("CH", 2), None, [conv(3)]]])},
             {conv_path(1)}, 1, "3 items with an invalid id"),
        id="v1-items-not-objects",
    ),
    pytest.param(
        case(CONVERSATIONS_CLOSED,
             {CONVS: v1_pages("conversations", [[conv(1), {**conv(2), "sid": sid("CH", 2) + "\n"},
                                                 {**conv(3), "sid": sid("IS", 3)}]])},
             {conv_path(1)}, 1, "2 items with an invalid id"),
        id="v1-sid-of-another-shape",
    ),
    pytest.param(
        case(MESSAGES_OF_CH1,
             {MSGS: v1_pages("messages", [[msg(1), {**msg(2), "sid": sid("MB", 2)},
                                           {**msg(3), "sid": CH2}]])},
             {msg_path(1)}, 1, "2 items with an invalid id"),
        id="message-sid-of-another-kind",
    ),
    pytest.param(
        case(PARTICIPANTS_OF_CH1,
             {f"{CONVS}/{CH1}/Participants": v1_pages(
                 "participants", [[{"sid": sid("MB", 1)}, {"sid": sid("IM", 2)}]])},
             {f"{CONVS}/{CH1}/Participants/{sid('MB', 1)}"}, 1, "1 item with an invalid id"),
        id="participant-sid-of-another-kind",
    ),
    pytest.param(
        case(MESSAGES_OF_CH1,
             {MSGS: v1_pages("messages", [[msg(1), msg(2, parent=CH2)]])},
             {msg_path(1)}, 1, "1 item of another conversation"),
        id="message-of-another-conversation",
    ),
    pytest.param(
        case(f"service: {SERVICE}\n" + CONVERSATIONS_CLOSED,
             {f"/v1/Services/{SERVICE}/Conversations": v1_pages("conversations", [[
                 conv(1, chat_service_sid=SERVICE), conv(2, chat_service_sid=sid("IS", 2))]])},
             {f"/v1/Services/{SERVICE}/Conversations/{CH1}"}, 1,
             "1 item of another conversation or Service"),
        id="conversation-of-another-service",
    ),
    pytest.param(
        case(MESSAGES_OF_CH1,
             {MSGS: v1_pages("messages",
                             [[msg(1), {**msg(2), "date_created": "2020-01-01T00:00:00"}]])},
             {msg_path(1)}, 1, "1 item with a missing or unreadable state or date"),
        id="naive-timestamp",
    ),
    pytest.param(
        case(MESSAGES_OF_CH1,
             {MSGS: v1_pages("messages", [[msg(1), {**msg(2), "date_created": "last year"},
                                           {**msg(3), "date_created": 1577836800},
                                           {"sid": sid("IM", 4), "conversation_sid": CH1}]])},
             {msg_path(1)}, 1, "3 items with a missing or unreadable state or date"),
        id="unreadable-or-missing-timestamp",
    ),
    pytest.param(
        case(CONVERSATIONS_CLOSED,
             {CONVS: v1_pages("conversations", [[conv(1), conv(2, "active"), conv(3, "inactive")],
                                                [conv(4, "active"), conv(5)]])},
             {conv_path(1), conv_path(5)}, 0),
        id="v1-server-ignores-state",
    ),
    pytest.param(
        case(CONVERSATIONS_CLOSED,
             {CONVS: v1_pages("conversations", [[conv(1), {**conv(2), "state": None}]])},
             {conv_path(1)}, 1, "1 item with a missing or unreadable state"),
        id="v1-state-missing",
    ),
    pytest.param(
        case("targets:\n  - kind: participants\n    where: {conversations: {state: closed}}\n",
             {CONVS: v1_pages("conversations", [[conv(1), conv(2, "active")]]),
              f"{CONVS}/{CH1}/Participants": v1_pages("participants", [[{"sid": sid("MB", 1)}]]),
              f"{CONVS}/{CH2}/Participants": v1_pages("participants", [[{"sid": sid("MB", 2)}]])},
             {f"{CONVS}/{CH1}/Participants/{sid('MB', 1)}"}, 0),
        id="children-of-conversations-the-server-did-not-filter",
    ),
    pytest.param(
        case("targets:\n  - kind: participants\n    where: {conversations: {state: closed}}\n",
             {CONVS: v1_next(lambda s: f"{s.url}/v1/Conversations?PageSize=100&Page=1"),
              f"{CONVS}/{CH1}/Participants": v1_pages("participants", [[{"sid": sid("MB", 1)}]])},
             {f"{CONVS}/{CH1}/Participants/{sid('MB', 1)}"}, 1, "same next page twice",
             max_gets=2),
        id="children-whose-conversation-listing-loops",
    ),
    pytest.param(
        case(f"targets:\n  - kind: messages\n    where: {{conversations: [{CH1}, {CH2}], "
             f"created_before: {CUTOFF}}}\n",
             {MSGS: fixed({"messages": [msg(1)], "meta": {
                 "key": "messages", "next_page_url": f"http://127.0.0.1:1{MSGS}?Page=1"}}),
              f"{CONVS}/{CH2}/Messages": v1_pages("messages", [[msg(2, parent=CH2)]])},
             {msg_path(1), msg_path(2, CH2)}, 1, "refusing to follow a URL outside", max_gets=1),
        id="one-conversation-of-two-cannot-be-followed",
    ),
    pytest.param(
        case(V2_CLOSED,
             {"/v2/Conversations": token_pages("conversations",
                                               [[v2conv(1), v2conv(2, "ACTIVE")]])},
             {f"/v2/Conversations/{ttid('conv_conversation_', 1)}"}, 0),
        id="v2-server-ignores-status",
    ),
    pytest.param(
        case(V2_CLOSED,
             {"/v2/Conversations": token_pages("conversations", [[
                 v2conv(1), {**v2conv(2), "id": "conv_conversation_/../../x"}]])},
             {f"/v2/Conversations/{ttid('conv_conversation_', 1)}"}, 1,
             "1 item with an invalid id"),
        id="v2-id-invalid",
    ),
    pytest.param(
        case(CONFIGURATIONS_OLD,
             {"/v2/ControlPlane/Configurations": token_pages("configurations", [[
                 config(1), {**config(2), "id": "cfg/../../Stores/x"}, config(3, NEW),
                 {**config(4), "createdAt": "2020-01-01T00:00:00"}]])},
             {f"/v2/ControlPlane/Configurations/{ttid('conv_configuration_', 1)}"}, 1,
             "1 item with an invalid id, 1 item with a missing or unreadable state or date"),
        id="configuration-id-invalid-and-date-naive",
    ),
    pytest.param(
        case(STORES_ALL,
             {"/v1/ControlPlane/Stores": token_pages("stores", [[
                 ttid("mem_store_", 1), 42, "../Operations/x", {"id": ttid("mem_store_", 2)}]])},
             {f"/v1/ControlPlane/Stores/{ttid('mem_store_', 1)}"}, 1,
             "3 items with an invalid id"),
        id="store-ids-not-ids",
    ),
    pytest.param(
        case(CONVERSATIONS_CLOSED,
             {CONVS: v1_next(lambda s: f"{s.url}/v1/Conversations?PageSize=100&Page=1")},
             {conv_path(1)}, 1, "same next page twice", max_gets=3),
        id="v1-next-page-repeats",
    ),
    pytest.param(
        case(CONVERSATIONS_CLOSED, {CONVS: v1_cycle()}, {conv_path(1)}, 1,
             "same next page twice", max_gets=4),
        id="v1-next-pages-cycle",
    ),
    pytest.param(
        case(CONVERSATIONS_CLOSED,
             {CONVS: v1_next(lambda s: f"{s.url}/v2/ControlPlane/Configurations?PageSize=100")},
             {conv_path(1)}, 1, "another path", max_gets=1),
        id="v1-next-page-on-another-path",
    ),
    pytest.param(
        case(CONVERSATIONS_CLOSED,
             {CONVS: v1_next(lambda s: f"{s.url}/v1/Conversations/../../v2/ControlPlane/"
                                       "Configurations?PageSize=100")},
             {conv_path(1)}, 1, "another path", max_gets=1),
        id="v1-next-page-dot-segments",
    ),
    pytest.param(
        case(CONVERSATIONS_CLOSED,
             {CONVS: v1_next(lambda s: s.url.replace("http://", "http://user:hunter2@")
                             + "/v1/Conversations?Page=1")},
             {conv_path(1)}, 1, "carries credentials", max_gets=1),
        id="v1-next-page-with-userinfo",
    ),
    pytest.param(
        case(CONVERSATIONS_CLOSED,
             {CONVS: v1_next(lambda s: "http://127.0.0.1:99999/v1/Conversations?Page=1")},
             {conv_path(1)}, 1, "cannot be read", max_gets=1),
        id="v1-next-page-port-out-of-range",
    ),
    pytest.param(
        case(CONVERSATIONS_CLOSED,
             {CONVS: v1_next(lambda s: s.url.replace("127.0.0.1", "localhost")
                             + "/v1/Conversations?Page=1")},
             {conv_path(1)}, 1, "refusing to follow a URL outside", max_gets=1),
        id="v1-next-page-on-another-origin",
    ),
    pytest.param(
        case(CONVERSATIONS_CLOSED, {CONVS: v1_next(lambda s: "/v1/Conversations?Page=1")},
             {conv_path(1)}, 1, "not an absolute", max_gets=1),
        id="v1-next-page-relative",
    ),
    pytest.param(
        case(CONVERSATIONS_CLOSED, {CONVS: v1_next(lambda s: {"url": s.url})},
             set(), 1, "next_page_url is not text", max_gets=1),
        id="v1-next-page-not-text",
    ),
    pytest.param(
        case(CONFIGURATIONS_OLD,
             {"/v2/ControlPlane/Configurations": fixed(
                 {"configurations": [config(1)],
                  "meta": {"key": "configurations", "nextToken": "again"}})},
             {f"/v2/ControlPlane/Configurations/{ttid('conv_configuration_', 1)}"}, 1,
             "same next page twice", max_gets=2),
        id="v2-next-token-repeats",
    ),
    pytest.param(
        case(CONFIGURATIONS_OLD, {"/v2/ControlPlane/Configurations": endless_tokens()},
             {f"/v2/ControlPlane/Configurations/{ttid('conv_configuration_', 1)}"}, 1,
             "more than 20 pages", max_gets=20),
        id="v2-next-token-never-ends",
    ),
    pytest.param(
        case(CONVERSATIONS_CLOSED,
             {CONVS: fixed({"conversations": [conv(1)], "meta": ["key", "conversations"]})},
             set(), 1, "meta is not an object"),
        id="meta-not-an-object",
    ),
    pytest.param(
        case(CONVERSATIONS_CLOSED,
             {CONVS: fixed({"conversations": {"sid": sid("CH", 1)}, "meta": {}})},
             set(), 1, "no list of conversations"),
        id="items-not-a-list",
    ),
    pytest.param(
        case(CONVERSATIONS_CLOSED, {CONVS: fixed([conv(1)])}, set(), 1, "not a JSON object"),
        id="body-not-an-object",
    ),
    pytest.param(
        case(CONVERSATIONS_CLOSED,
             {CONVS: fixed({"configurations": [{"sid": sid("CH", 1)}],
                            "meta": {"key": "configurations"}})},
             set(), 1, "lists something other than conversations"),
        id="meta-key-names-another-list",
    ),
    pytest.param(
        case(CONVERSATIONS_CLOSED, {CONVS: fixed(None)}, set(), 1, "not a JSON object"),
        id="body-json-null",
    ),
    pytest.param(
        case(CONVERSATIONS_CLOSED, {CONVS: error_reply(404, 2 * 2**20)}, set(), 1,
             "HTTP 404", max_gets=1),
        id="error-body-past-its-cap",
    ),
    pytest.param(
        case(CONVERSATIONS_CLOSED, {CONVS: error_reply(503, 2 * 2**20)}, set(), 1,
             "HTTP 503", max_gets=2),
        id="fault-body-past-its-cap-is-retried",
    ),
]

RETRY_FAST = "retry: {max_attempts: 2, base_delay: 0.01, max_delay: 0.02}\n"
OPERATIONS_FAST = "operations: {poll_interval: 0.01}\n"


def spec_file(directory: Path, body: str) -> Path:
    """A job spec holding ``body`` with fast retries and Operation polls."""
    path = directory / "job.yaml"
    path.write_text(f"version: 1\nname: replies\n{body}{RETRY_FAST}{OPERATIONS_FAST}")
    return path


def log_lines(directory: Path) -> list[dict[str, Any]]:
    """Every record of the one checkpoint under ``directory``."""
    (log,) = checkpoints(directory)
    return [orjson.loads(line) for line in log.read_bytes().splitlines() if line.strip()]


def discovery_errors(directory: Path) -> list[str]:
    """The discovery errors the checkpoint records."""
    return [r["error"] for r in log_lines(directory) if r.get("t") == "P" and "error" in r]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("hostile", CASES)
async def test_a_hostile_list_reply_selects_nothing_outside_the_spec(
    hostile: Case,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Whatever a list reply holds, only items the spec selects are deleted, with no traceback,
    and a reply it could not fully use ends the run with exit 1 naming the listing."""
    monkeypatch.setattr(pagination, "MAX_PAGES", 20)
    async with list_server(hostile.lists) as server:
        point_at(monkeypatch, server.url)

        code = await run_cli("run", spec_file(workdir, hostile.spec))

    err = capfd.readouterr().err
    assert "Traceback" not in err
    assert "hunter2" not in err
    assert server.deletes() == hostile.deletes
    assert code == hostile.code
    footer = log_lines(workdir)[-1]
    assert footer["t"] == "E" and footer["exit"] == hostile.code
    errors = discovery_errors(workdir)
    if hostile.code:
        assert len(errors) == 1 and hostile.error in errors[0], errors
        if not hostile.error.startswith("HTTP"):  # an error status is the client's to word
            first_path = next(iter(hostile.lists))
            assert first_path in errors[0] or "/v1/Conversations/" in errors[0]
    else:
        assert errors == []
    if hostile.max_gets is not None:
        assert server.gets(next(iter(hostile.lists))) <= hostile.max_gets


@pytest.mark.timeout(60)
async def test_a_real_process_meets_a_traversal_id_and_a_userinfo_next_page_without_a_traceback(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python -m runner run` as its own process: the traversal ID is never DELETEd, the next
    page with credentials in it is not followed, stderr holds no traceback and no password, and
    the exit code is 1."""

    async def respond(request: web.Request, server: ListServer) -> Any:
        url = server.url.replace("http://", "http://user:hunter2@") + "/v1/Conversations?Page=1"
        return {"conversations": [conv(1), {**conv(2), "sid": TRAVERSAL}],
                "meta": {"key": "conversations", "next_page_url": url}}

    async with list_server({CONVS: respond}) as server:
        point_at(monkeypatch, server.url)
        process = await start_bulkops(["run", str(spec_file(workdir, CONVERSATIONS_CLOSED))],
                                      workdir)
        async with process:
            code = await process.wait()

    err = (workdir / "stderr.log").read_text()
    assert code == 1
    assert server.deletes() == {conv_path(1)}
    assert server.gets(CONVS) == 1
    assert "Traceback" not in err and "hunter2" not in err
    assert "discovery_failed" in err
    (error,) = discovery_errors(workdir)
    assert error.startswith("listing /v1/Conversations: 1 item with an invalid id not selected")
    assert error.endswith("and the listing stopped: listing /v1/Conversations: the next page URL "
                          "carries credentials; refused")


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("declared", "status", "cap", "error"),
    [
        pytest.param(None, 200, client_module.MAX_BODY, "larger than", id="chunked"),
        pytest.param(300 * 2**20, 200, 0, "larger than", id="300-MB-declared"),
        pytest.param(None, 503, client_module.MAX_ERROR_BODY, "HTTP 503", id="503-chunked"),
    ],
)
async def test_a_body_past_the_cap_is_not_read_into_memory(
    declared: int | None,
    status: int,
    cap: int,
    error: str,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A list reply larger than the 16 MiB cap (an error reply: 64 KiB) is dropped after at most
    the cap, with or without a Content-Length, retried within the policy, then the source fails
    with exit 1."""
    async with list_server({CONVS: streamed_body(declared, status)}) as server:
        point_at(monkeypatch, server.url)

        code = await run_cli("run", spec_file(workdir, CONVERSATIONS_CLOSED))

    assert "Traceback" not in capfd.readouterr().err
    assert code == 1
    assert server.deletes() == set()
    assert server.gets(CONVS) == 2  # max_attempts: 2
    # Each attempt stops at the cap plus what the sockets buffered, far from the 256 MiB offered.
    assert server.streamed / 2 <= cap + 16 * 2**20
    (recorded,) = discovery_errors(workdir)
    assert error in recorded


@pytest.mark.timeout(60)
async def test_a_compressed_body_nobody_asked_for_is_refused_not_inflated(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bulkops asks for no encoding. A gzip body of 64 KB that would inflate to 64 MiB (a
    bomb) is an unreadable reply, retried and then the listing's failure, never inflated."""
    bomb = gzip.compress(b" " * (64 * 2**20), compresslevel=9)
    asked: list[str | None] = []

    async def respond(request: web.Request, server: ListServer) -> Any:
        asked.append(request.headers.get("Accept-Encoding"))
        return web.Response(
            body=bomb, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}
        )

    async with list_server({CONVS: respond}) as server:
        point_at(monkeypatch, server.url)

        code = await run_cli("run", spec_file(workdir, CONVERSATIONS_CLOSED))

    assert len(bomb) < 2**20
    assert code == 1
    assert server.gets(CONVS) == 2
    assert asked == [None, None]
    (error,) = discovery_errors(workdir)
    assert "response body encoded, not asked for" in error


# -- page order and the message early stop --------------------------------------------------


def timeline(count: int, old: int) -> list[dict[str, Any]]:
    """``count`` messages of CH1 oldest first, the first ``old`` before the cutoff."""
    items = []
    for n in range(count):
        when = OLD + timedelta(hours=n) if n < old else NEW - timedelta(hours=count - n)
        items.append(msg(n + 1, when))
    return items


def paged(items: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    """``items`` in pages of ``size``."""
    return [items[i : i + size] for i in range(0, len(items), size)]


ORDERS = [
    pytest.param(lambda items: paged(items[::-1], 5), id="newest-first"),
    pytest.param(lambda items: paged(items, 5)[::-1], id="pages-reversed"),
    pytest.param(lambda items: [p[::-1] for p in paged(items, 5)][1:] + paged(items, 5)[:1],
                 id="first-page-last"),
    pytest.param(lambda items: paged(random.Random(4).sample(items, len(items)), 5),
                 id="shuffled"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("order", ORDERS)
async def test_a_created_before_purge_deletes_exactly_the_old_messages_in_any_page_order(
    order: Callable[[list[dict[str, Any]]], list[list[dict[str, Any]]]],
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server that ignores Order=asc (or shuffles its pages) still loses no old message: the
    early stop is taken only on an order it has seen hold."""
    items = timeline(40, old=12)
    async with list_server({MSGS: v1_pages("messages", order(items))}) as server:
        point_at(monkeypatch, server.url)

        code = await run_cli("run", spec_file(workdir, MESSAGES_OF_CH1))

    assert code == 0
    assert server.deletes() == {msg_path(n) for n in range(1, 13)}


async def test_an_honest_server_still_gets_the_early_stop(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Oldest first and crossing the cutoff, a conversation is read only to its first page
    wholly past the cutoff, not to its end."""
    items = timeline(100, old=12)
    async with list_server({MSGS: v1_pages("messages", paged(items, 5))}) as server:
        point_at(monkeypatch, server.url)

        code = await run_cli("run", spec_file(workdir, MESSAGES_OF_CH1))

    assert code == 0
    assert server.deletes() == {msg_path(n) for n in range(1, 13)}
    assert server.gets(MSGS) == 4  # 5 + 5 + 2 old (and 3 new), then one page all new


async def test_a_conversation_with_a_rejected_item_is_listed_again_on_resume(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A conversation whose listing left an item out is not recorded as listed, so a resume
    (after the server is fixed) lists it again and deletes what it missed."""
    bad = [[msg(1), {**msg(2), "date_created": "2020-01-01T00:00:00"}]]
    good = [[msg(2)]]
    replies = {"pages": bad}

    async def respond(request: web.Request, server: ListServer) -> Any:
        return await v1_pages("messages", replies["pages"])(request, server)

    async with list_server({MSGS: respond}) as server:
        point_at(monkeypatch, server.url)
        spec = spec_file(workdir, MESSAGES_OF_CH1)
        assert await run_cli("run", spec) == 1
        assert server.deletes() == {msg_path(1)}
        replies["pages"] = good
        (log,) = checkpoints(workdir)

        code = await run_cli("resume", log)

    assert code == 0
    assert server.deletes() == {msg_path(1), msg_path(2)}


# -- the pure parts ---------------------------------------------------------------------------


def test_ascending_check_stops_only_after_crossing_in_order() -> None:
    """The early stop needs the order seen so far to hold and the cutoff crossed before the
    page that is wholly past it."""
    cutoff = NOW - timedelta(days=30)
    check = AscendingCheck(cutoff)
    assert not check.page_ends_listing([OLD, OLD + timedelta(hours=1)])
    assert not check.page_ends_listing([OLD + timedelta(hours=2), NEW])  # crosses, not all new
    assert check.page_ends_listing([NEW, NEW + timedelta(seconds=1)])

    first_all_new = AscendingCheck(cutoff)
    assert not first_all_new.page_ends_listing([NEW, NEW])  # proves nothing: never crossed
    assert not first_all_new.page_ends_listing([NEW, NEW])

    inverted = AscendingCheck(cutoff)
    assert not inverted.page_ends_listing([OLD + timedelta(hours=1), OLD])
    assert not inverted.page_ends_listing([NEW, NEW])  # an inversion: read to the end

    unknown = AscendingCheck(cutoff)
    assert not unknown.page_ends_listing([OLD, None])
    assert not unknown.page_ends_listing([NEW])
    assert not AscendingCheck(cutoff).page_ends_listing([])


def test_page_guard_refuses_a_repeat_and_the_bound() -> None:
    """A cursor given twice, however long the cycle, and the page past the bound are errors."""
    guard = PageGuard("/v1/Conversations", max_pages=5)
    for cursor in ("a", "b", "c"):
        guard.page()
        assert guard.follow(cursor) == cursor
    with pytest.raises(BadListing, match="same next page twice"):
        guard.follow("a")
    guard.page()
    guard.page()
    with pytest.raises(BadListing, match="more than 5 pages"):
        guard.page()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param("http://h/v1/Conversations?Page=1", None, id="same-path"),
        pytest.param("https://h/v1/Conversations", None, id="https"),
        pytest.param("http://h/v1/Conversations/CH1", "another path", id="deeper"),
        pytest.param("http://h/v1/Conversations/", "another path", id="trailing-slash"),
        pytest.param("http://h/v1/Conversations/..%2F..%2Fv2", "another path", id="encoded"),
        pytest.param("http://h/v1/x/../Conversations", None, id="dots-to-the-same-path"),
        pytest.param("http://u:p@h/v1/Conversations", "credentials", id="userinfo"),
        pytest.param("http://u@h/v1/Conversations", "credentials", id="user-only"),
        pytest.param("http://h:99999/v1/Conversations", "cannot be read", id="port-range"),
        pytest.param("http://[::1/v1/Conversations", "cannot be read", id="broken-ipv6"),
        pytest.param("ftp://h/v1/Conversations", "not an absolute", id="scheme"),
        pytest.param("/v1/Conversations?Page=1", "not an absolute", id="relative"),
        pytest.param("//h/v1/Conversations", "not an absolute", id="scheme-relative"),
    ],
)
def test_next_page_url_stays_on_its_path(value: str, message: str | None) -> None:
    """A next page is followed only on the listing's own path, absolute, without credentials."""
    if message is None:
        assert next_page_url("/v1/Conversations", value) == value
    else:
        with pytest.raises(BadListing, match=message) as info:
            next_page_url("/v1/Conversations", value)
        assert "u:p" not in str(info.value)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("https://user:pw@127.0.0.1:8443/v1/Conversations", id="userinfo"),
        pytest.param("https://127.0.0.1:99999/v1/Conversations", id="port-range"),
        pytest.param("https://[::1/x", id="broken-ipv6"),
        pytest.param("https://127.0.0.1:8444/v1/Conversations", id="other-port"),
        pytest.param("http://127.0.0.1:8443/v1/Conversations", id="other-scheme"),
        pytest.param("https://evil.example/v1/Conversations", id="other-host"),
    ],
)
async def test_url_for_refuses_anything_but_the_exact_origin(value: str) -> None:
    """The client follows only URLs on the configured origin; anything else, readable or not,
    is a PermanentError that names no credentials."""
    async with TwilioClient(
        {Product.CONVERSATIONS: "https://127.0.0.1:8443"}, ("AC", "secret")
    ) as client:
        assert str(client.url_for(Product.CONVERSATIONS, "/v1/Conversations")).startswith(
            "https://127.0.0.1:8443/"
        )
        with pytest.raises(PermanentError) as info:
            client.url_for(Product.CONVERSATIONS, value)
    assert "pw" not in str(info.value)


def test_parse_time_takes_only_timestamps_with_an_offset() -> None:
    """A timestamp without an offset, unreadable or not text is unknown; Z and offsets are read."""
    assert parse_time("2026-01-01T00:00:00Z") == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_time("2026-01-01T01:00:00+01:00") == datetime(2026, 1, 1, tzinfo=UTC)
    for value in ("2026-01-01T00:00:00", "2026-01-01", "soon", "", None, 0, ["2026"]):
        assert parse_time(value) is None
    window = TimeWindow(before=NOW)
    assert not window.contains(datetime(2020, 1, 1))  # naive: unknown, never selected
    assert window.contains(datetime(2020, 1, 1, tzinfo=UTC))


def test_read_envelope_refuses_every_other_shape() -> None:
    """Only ``{key: [...], meta: {...}}`` with text cursors is read; all else is BadListing."""
    page = read_envelope("/p", {"k": [1], "meta": {"key": "k", "nextToken": "t"}}, "k", "nextToken")
    assert page.items == [1] and page.next == "t"
    assert read_envelope("/p", {"k": [], "meta": {}}, "k", "nextToken").next is None
    bodies: list[Any] = [None, [], "x", {"k": []}, {"k": [], "meta": []}, {"k": {}, "meta": {}},
                         {"meta": {"key": "k"}}, {"k": [], "meta": {"key": "other"}},
                         {"k": [], "meta": {"nextToken": 7}}]
    for body in bodies:
        with pytest.raises(BadListing):
            read_envelope("/p", body, "k", "nextToken")


# -- any list body ----------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=20,
)
STAMP = st.sampled_from([iso(OLD), iso(NEW), "2020-01-01T00:00:00", "2020-01-01", "x", None])
ID_VALUE = st.sampled_from([sid("CH", 1), sid("IM", 2), sid("MB", 3), ttid("conv_conversation_", 4),
                            ttid("conv_configuration_", 5), ttid("mem_store_", 6), TRAVERSAL,
                            "CH1", None, 7]) | st.text(max_size=40)
ITEM = st.fixed_dictionaries(
    {},
    optional={
        "sid": ID_VALUE, "id": ID_VALUE, "state": st.sampled_from(["closed", "active", None, 3]),
        "status": st.sampled_from(["CLOSED", "ACTIVE", None]), "date_created": STAMP,
        "date_updated": STAMP, "createdAt": STAMP, "updatedAt": STAMP,
        "conversation_sid": st.sampled_from([CH1, CH2, None]),
    },
) | JSON | ID_VALUE
KEY = st.sampled_from(["conversations", "messages", "configurations", "stores", "other"])
META = st.fixed_dictionaries(
    {}, optional={"key": KEY | JSON, "next_page_url": st.none() | JSON, "nextToken": JSON}
) | JSON
BODY = st.fixed_dictionaries({}, optional={"meta": META}).flatmap(
    lambda base: st.dictionaries(KEY, st.lists(ITEM, max_size=6) | JSON, max_size=2).map(
        lambda lists: {**lists, **base}
    )
) | JSON

WINDOW = TimeWindow(before=NOW - timedelta(days=30))
EXAMPLE_V1 = {"conversations": [conv(1), {**conv(2), "sid": TRAVERSAL}], "meta": {}}
SOURCES: list[tuple[str, Source]] = [
    ("/v1/Conversations", ListConversations(ConversationQuery("v1", ("closed",), WINDOW))),
    ("/v2/Conversations", ListConversations(ConversationQuery("v2", ("CLOSED",), WINDOW))),
    (MSGS, ListChildren(by_name("message"), (CH1,), WINDOW)),
    ("/v2/ControlPlane/Configurations", ListConfigurations(WINDOW)),
    ("/v1/ControlPlane/Stores", ListStores()),
]


def valid(target: Target) -> bool:
    """Whether a target could only have come from a selected, well-formed item."""
    if not target.kind.pattern.matches(target.id):
        return False
    return target.parent is None or target.parent == CH1


async def discover(server: ListServer, source: Source, found: list[Target]) -> None:
    """Run one source through the real client against ``server``, into ``found``."""

    async def emit(targets: Any) -> None:
        found.extend(targets)

    async with TwilioClient({p: server.url for p in Product}, ("AC" + "0" * 32, "token")) as client:
        limits = Limits(concurrency=4, per_conversation_rate=1000.0, per_service_rate=1000.0,
                        products={p: ProductLimit() for p in Product}, rng=random.Random(1))
        requester = Requester(client, limits, RetryPolicy(max_attempts=1), random.Random(1),
                              zero_backoff=True)
        with anyio.fail_after(10):
            await Discovery(requester, None, fanout=2).run(source, emit)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=BODY, which=st.integers(0, len(SOURCES) - 1))
@example(body=EXAMPLE_V1, which=0)
@example(body={"messages": [msg(1), msg(2, parent=CH2)], "meta": {"key": "messages"}}, which=2)
def test_any_list_body_yields_valid_targets_or_a_classified_error(body: Any, which: int) -> None:
    """Arbitrary JSON served as a list reply gives only well-formed, selected targets, or a
    RemoteError (a BadListing for what cannot be read), never another exception."""
    path, source = SOURCES[which]

    async def check() -> None:
        async with list_server({path: fixed(body)}) as server:
            found: list[Target] = []
            finished = False
            try:
                await discover(server, source, found)
                finished = True
            except* RemoteError:
                pass  # classified (a children source's task group wraps what it raises)
            # What was emitted before an error is as safe as what a clean listing emits.
            assert all(valid(t) for t in found), found
            if finished:
                assert server.gets(path) == 1  # a fixed body either ends or repeats its cursor
            if body == EXAMPLE_V1 and which == 0:
                assert found == [Target(by_name("conversation_v1"), CH1)] and not finished

    anyio.run(check)


def test_the_cap_is_documented() -> None:
    """The body cap the README states is the one the client applies."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert f"{client_module.MAX_BODY // 2**20} MiB" in readme
    assert f"{pagination.MAX_PAGES:,}" in readme
