"""The lean transport of DELETEs (runner/wire/transport.py) against a raw hostile peer: every
way a reply can break is a classified error or a good reply, a dropped request is never sent
again unseen (judged by the server's own count), and the pool reuses, discards and drains its
connections. Real sockets throughout: the client is the real TwilioClient."""

from __future__ import annotations

import asyncio
import gzip
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import uvloop
from yarl import URL

from runner.errors import PermanentError, RemoteError, Stopped, Throttled, TransientError
from runner.kinds.base import Product
from runner.wire import transport
from runner.wire.client import MAX_BODY, MAX_ERROR_BODY, Reply, TwilioClient
from tests.runner.hostile_server import SANE_204, Raw, RawServer, raw_running

PATH = "/v1/Conversations/CH00000000000000000000000000000001"
OK_JSON = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}'


@asynccontextmanager
async def client_of(
    server: RawServer, *, request_timeout: float = 10.0, limit: int = 100
) -> AsyncIterator[TwilioClient]:
    """The real client aimed at ``server``, closed at the end."""
    async with raw_running(server) as url, TwilioClient(
        {p: url for p in Product}, ("AC", "secret"), connections=limit, timeout=request_timeout
    ) as client:
        yield client


async def delete(client: TwilioClient, path: str = PATH) -> Reply:
    """One DELETE through the client, bounded by a watchdog far above any timeout here."""
    with anyio.fail_after(20):
        return await client.request("DELETE", Product.CONVERSATIONS, path)


async def failure(client: TwilioClient) -> RemoteError:
    """The classified error one DELETE raises (it must raise one)."""
    with pytest.raises(RemoteError) as info:
        await delete(client)
    return info.value


def pool_of(client: TwilioClient) -> transport.Pool:
    """The client's lean pool."""
    pool: transport.Pool = client._pool
    return pool


Outcome = list[BaseException | Reply]


async def outcome_of(
    client: TwilioClient, outcome: Outcome, caught: type[BaseException] = RemoteError
) -> None:
    """One DELETE through the client (a task of the test's), its reply or its ``caught`` error
    kept in ``outcome``."""
    try:
        outcome.append(await delete(client))
    except caught as exc:
        outcome.append(exc)


async def until(condition: Callable[[], bool]) -> None:
    """Return once ``condition()`` holds, asked again each time every task is blocked (an event
    of the loop, not a time; the watchdog only ends a test that would hang)."""
    with anyio.fail_after(10):
        while not condition():
            await anyio.wait_all_tasks_blocked()
            await anyio.lowlevel.checkpoint()


# -- replies that break: each a classified error, never an exception escaping ------------------

BROKEN = [
    pytest.param(Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"a\"", "close"),
                 "connection failed: ConnectionLost", id="cut-mid-body"),
    pytest.param(Raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n",
                     "close"),
                 "connection failed: ConnectionLost", id="chunked-without-terminator"),
    pytest.param(Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"a\"", "reset"),
                 "connection failed: ConnectionLost (connection reset by peer)", id="reset"),
    pytest.param(Raw(b"", "close"), "connection failed: ConnectionLost", id="closed-unanswered"),
    pytest.param(Raw(b"garbage\r\n\r\n", "keep"), "connection failed: MalformedResponse",
                 id="garbage-status-line"),
    pytest.param(Raw(b"HTTP/1.1 2x4 Nope\r\n\r\n", "keep"), "connection failed: MalformedResponse",
                 id="status-not-a-number"),
    pytest.param(Raw(b"HTTP/1.1 204 No Content\r\nBad Header\r\n\r\n", "keep"),
                 "connection failed: MalformedResponse", id="header-without-colon"),
    pytest.param(Raw(b"HTTP/1.1 204 No Content\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n"),
                 "connection failed: MalformedResponse (headers over 65536 bytes)",
                 id="one-header-of-70-KB"),
    pytest.param(Raw(b"HTTP/1.1 204 No Content\r\n" + b"X-A: 1\r\n" * 200 + b"\r\n"),
                 "connection failed: MalformedResponse (more than 128 header lines)",
                 id="200-header-lines"),
    # Never ended, and the connection held open: the bound stops it, not the timeout.
    pytest.param(Raw(b"HTTP/1.1 204 No Content\r\nX-Big: " + b"a" * (1 << 20), "hang"),
                 "connection failed: MalformedResponse (headers over 65536 bytes)",
                 id="endless-header"),
    pytest.param(Raw(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n"
                     b"Connection: upgrade\r\n\r\n", "hang"),
                 "connection failed: MalformedResponse", id="101-not-asked-for"),
    pytest.param(Raw(b"HTTP/1.1 100 Continue\r\n\r\n" * 9 + b"HTTP/1.1 204 No Content\r\n\r\n"),
                 "connection failed: MalformedResponse (more than 8 interim replies)",
                 id="1xx-flood"),
    pytest.param(Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 314572800\r\n\r\n{", "hang"),
                 f"response body larger than {MAX_BODY} bytes", id="300-MB-declared"),
    pytest.param(Raw(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: "
                     + str(len(gzip.compress(b"{}"))).encode() + b"\r\n\r\n"
                     + gzip.compress(b"{}")),
                 "response body encoded, not asked for", id="gzip-2xx"),
]
# Whole, well-framed replies the client cannot use: their connection carries the next request.
UNREADABLE = [
    pytest.param(BROKEN[-1].values[0], BROKEN[-1].values[1], id="gzip-2xx"),
    pytest.param(Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nnot json!"),
                 "unreadable response body", id="2xx-not-json"),
]
BROKEN = BROKEN[:-1]


@pytest.mark.parametrize(("answer", "reason"), BROKEN)
async def test_a_broken_reply_is_a_transient_error_and_its_connection_is_not_reused(
    answer: Raw, reason: str
) -> None:
    """Each broken reply to a DELETE is one TransientError naming the fault; the request was
    sent once, and the next DELETE goes out on a fresh connection and succeeds."""
    server = RawServer([answer])
    async with client_of(server) as client:
        error = await failure(client)
        assert isinstance(error, TransientError)
        assert reason in str(error)
        assert error.url is not None and error.url.endswith(PATH)
        assert len(server.requests) == 1

        reply = await delete(client)

    assert reply.status == 204
    assert [r.connection for r in server.requests] == [1, 2]


@pytest.mark.parametrize(("answer", "reason"), UNREADABLE)
async def test_a_whole_but_unreadable_2xx_is_transient_and_its_connection_reused(
    answer: Raw, reason: str
) -> None:
    """A gzip-encoded or non-JSON 2xx is a TransientError (retried: the DELETE may have been
    applied), and its connection, whole, carries the next request."""
    server = RawServer([answer])
    async with client_of(server) as client:
        error = await failure(client)
        assert isinstance(error, TransientError) and error.status == 200
        assert reason in str(error)
        assert (await delete(client)).status == 204
    assert [r.connection for r in server.requests] == [1, 1]


async def test_a_slow_reply_times_out() -> None:
    """Headers that never end within the request timeout are a TransientError "request timed
    out" (judged with a 0.3 s timeout), and the connection is dropped."""
    server = RawServer([Raw(b"HTTP/1.1 204 No Content\r\n", "hang")])
    async with client_of(server, request_timeout=0.3) as client:
        error = await failure(client)
        assert isinstance(error, TransientError) and "request timed out" in str(error)
        assert (await delete(client)).status == 204
    assert [r.connection for r in server.requests] == [1, 2]


async def pool_delete(pool: transport.Pool, url: str, seconds: float) -> transport.Response:
    """One DELETE of PATH straight through ``pool`` with a deadline of ``seconds``."""
    return await pool.request("DELETE", URL(url + PATH), b"", cap_ok=MAX_BODY,
                              cap_error=MAX_ERROR_BODY, seconds=seconds)


async def test_each_exchange_times_out_at_its_own_deadline() -> None:
    """The pool watches every deadline with one timer, armed for the earliest. An exchange with
    a later deadline than the one the timer was armed for (answered meanwhile) still times out;
    one with an earlier deadline than an exchange already waiting moves the timer forward (it
    does not wait 600 s behind it)."""
    server = RawServer([SANE_204, Raw(b"", "hang"), Raw(b"", "hang"), Raw(b"", "hang")])
    async with raw_running(server) as url:
        pool = transport.Pool(10)
        try:
            with anyio.fail_after(20):
                answered = asyncio.ensure_future(pool_delete(pool, url, 0.2))
                await until(lambda: len(server.requests) == 1)  # the 204 is its
                late = asyncio.ensure_future(pool_delete(pool, url, 0.5))
                assert (await answered).status == 204
                with pytest.raises(TimeoutError):
                    await late
                waiting = asyncio.ensure_future(pool_delete(pool, url, 600))
                await until(lambda: len(server.requests) == 3)
                with pytest.raises(TimeoutError):
                    await pool_delete(pool, url, 0.2)
                assert not waiting.done()
                pool.close()
                with pytest.raises(transport.ConnectionLost):
                    await waiting
        finally:
            pool.close()
            await pool.wait_closed()


async def test_on_answer_wakes_others_only_after_the_caller_resumes() -> None:
    """``on_answer`` runs once the reply is whole, after the caller's task is queued to resume:
    a task it wakes (the request waiting for the slot it frees) runs after the caller has acted
    on the reply, so a 429's pause or a 401's stop is in force first."""
    server = RawServer([SANE_204])
    async with raw_running(server) as url:
        pool = transport.Pool(10)
        try:
            order: list[str] = []
            freed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

            async def waiter() -> None:
                await freed
                order.append("woken")

            async def caller() -> None:
                reply = await pool.request(
                    "DELETE", URL(url + PATH), b"", cap_ok=MAX_BODY, cap_error=MAX_ERROR_BODY,
                    seconds=10, on_answer=lambda: freed.set_result(None),
                )
                order.append(f"resumed {reply.status}")

            with anyio.fail_after(20):
                await asyncio.gather(waiter(), caller())
            assert order == ["resumed 204", "woken"]
        finally:
            pool.close()
            await pool.wait_closed()


async def test_a_last_check_that_refuses_or_fails_sends_nothing_and_frees_its_connection() -> None:
    """``still_wanted`` is asked once a connection is in hand: False raises Withdrawn and an
    error of its own propagates, nothing is written either way (by the server's count), and the
    connection is free again: a pool of one still carries the next request."""
    server = RawServer([SANE_204, SANE_204])
    async with raw_running(server) as url:
        pool = transport.Pool(1)

        def broken() -> bool:
            raise RuntimeError("the caller's check failed")

        try:
            with anyio.fail_after(20):
                assert (await pool_delete(pool, url, 10)).status == 204  # opens the one
                with pytest.raises(transport.Withdrawn):
                    await pool.request("DELETE", URL(url + PATH), b"", cap_ok=MAX_BODY,
                                       cap_error=MAX_ERROR_BODY, seconds=10,
                                       still_wanted=lambda: False)
                with pytest.raises(RuntimeError):
                    await pool.request("DELETE", URL(url + PATH), b"", cap_ok=MAX_BODY,
                                       cap_error=MAX_ERROR_BODY, seconds=10, still_wanted=broken)
                assert len(server.requests) == 1
                assert (pool.open, pool.idle) == (1, 1)
                assert (await pool_delete(pool, url, 10)).status == 204
                assert len(server.requests) == 2
        finally:
            pool.close()
            await pool.wait_closed()


@pytest.mark.parametrize("answer", [
    pytest.param(Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{", "close"), id="cut"),
    pytest.param(Raw(b"HTTP/1.1 204 No Content\r\n", "hang"), id="timed-out"),
])
async def test_on_answer_is_not_called_when_no_reply_is_whole(answer: Raw) -> None:
    """A reply cut short or never finished is no answer: ``on_answer`` is not called (the caller
    gives its slot back itself, once it has the error)."""
    server = RawServer([answer])
    async with raw_running(server) as url:
        pool = transport.Pool(10)
        called: list[bool] = []
        try:
            with anyio.fail_after(20), pytest.raises((transport.TransportError, TimeoutError)):
                await pool.request("DELETE", URL(url + PATH), b"", cap_ok=MAX_BODY,
                                   cap_error=MAX_ERROR_BODY, seconds=0.3,
                                   on_answer=lambda: called.append(True))
            assert called == []
        finally:
            pool.close()
            await pool.wait_closed()


async def test_a_refused_connection_names_its_errno() -> None:
    """Nothing listening: "connection failed: ConnectError (connection refused)"."""
    server = RawServer()
    async with raw_running(server) as url:
        pass  # the port is free again: nobody listens there
    async with TwilioClient({p: url for p in Product}, ("AC", "secret")) as client:
        error = await failure(client)
    assert isinstance(error, TransientError)
    assert "connection failed: ConnectError (connection refused)" in str(error)


# -- replies that are fine, however framed --------------------------------------------------


async def test_a_read_to_close_body_is_read_and_the_connection_not_reused() -> None:
    """A 200 with neither Content-Length nor chunking ends at the server's close: its JSON is
    read, and the next request opens a new connection."""
    server = RawServer([Raw(b'HTTP/1.1 200 OK\r\n\r\n{"sid": "x"}', "close")])
    async with client_of(server) as client:
        reply = await delete(client)
        assert reply.body == {"sid": "x"}
        assert (await delete(client)).status == 204
    assert [r.connection for r in server.requests] == [1, 2]


async def test_a_chunked_body_is_read_and_the_connection_reused() -> None:
    """A chunked 202 is joined and parsed; the connection carries the next request."""
    body = b'{"operationId": "op"}'
    server = RawServer([Raw(b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n"
                            + b"5\r\n" + body[:5] + b"\r\n" + f"{len(body) - 5:x}".encode()
                            + b"\r\n" + body[5:] + b"\r\n0\r\n\r\n")])
    async with client_of(server) as client:
        reply = await delete(client)
        assert reply.status == 202 and reply.body == {"operationId": "op"}
        await delete(client)
    assert [r.connection for r in server.requests] == [1, 1]


async def test_interim_replies_are_skipped() -> None:
    """100 and 103 before the final 204 are skipped; the connection stays in use."""
    server = RawServer([Raw(b"HTTP/1.1 100 Continue\r\n\r\n"
                            b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
                            b"HTTP/1.1 204 No Content\r\nX-Final: yes\r\n\r\n")])
    async with client_of(server) as client:
        reply = await delete(client)
        assert reply.status == 204 and reply.headers["x-final"] == "yes"
        assert "Link" not in reply.headers
        await delete(client)
    assert [r.connection for r in server.requests] == [1, 1]


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(Raw(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n", "close"),
                     id="connection-close"),
        pytest.param(Raw(b"HTTP/1.0 204 No Content\r\n\r\n", "close"), id="http-1.0"),
        pytest.param(Raw(b"HTTP/1.1 204 No Content\r\n\r\nleftover bytes"), id="204-with-bytes"),
    ],
)
async def test_a_connection_the_reply_ends_is_not_reused(answer: Raw) -> None:
    """After ``Connection: close``, an HTTP/1.0 reply or bytes past a 204, the reply counts
    and the next request goes out on a new connection."""
    server = RawServer([answer])
    async with client_of(server) as client:
        assert (await delete(client)).status == 204
        assert (await delete(client)).status == 204
    assert [r.connection for r in server.requests] == [1, 2]


async def test_error_replies_are_classified_with_case_insensitive_headers() -> None:
    """A 429 with a lower-case retry-after is Throttled with its pause; a gzip-encoded 404 is
    classified by its status alone; an error body past MAX_ERROR_BODY is not read."""
    big = b"x" * (MAX_ERROR_BODY * 4)
    server = RawServer([
        Raw(b"HTTP/1.1 429 Too Many\r\nretry-after: 7\r\ntwilio-concurrent-requests: 3\r\n"
            b"Content-Length: 0\r\n\r\n"),
        Raw(b"HTTP/1.1 404 Not Found\r\nContent-Encoding: gzip\r\nContent-Length: "
            + str(len(gzip.compress(b"{}"))).encode() + b"\r\n\r\n" + gzip.compress(b"{}")),
        Raw(b"HTTP/1.1 503 Busy\r\n\r\n" + big, "close"),
    ])
    async with client_of(server) as client:
        throttled = await failure(client)
        assert isinstance(throttled, Throttled)
        assert throttled.retry_after == 7.0 and throttled.concurrent == 3
        gone = await failure(client)
        assert isinstance(gone, PermanentError) and gone.status == 404
        busy = await failure(client)
        assert isinstance(busy, TransientError) and busy.status == 503
    assert len(server.requests) == 3


async def test_the_request_is_framed_as_the_server_expects() -> None:
    """Request line with the raw (quoted) path, Host with its port, Content-Length 0, the client's
    headers and an Idempotency-Key given with the request; no Accept-Encoding."""
    server = RawServer()
    async with client_of(server) as client:
        with anyio.fail_after(20):
            await client.request("DELETE", Product.CONVERSATIONS, "/v2/Conversations/a b",
                                 headers={"Idempotency-Key": "k-1"})
    (request,) = server.requests
    assert request.line == "DELETE /v2/Conversations/a%20b HTTP/1.1"
    assert request.header("Host") == server.url.removeprefix("http://")
    assert request.header("Content-Length") == "0"
    assert request.header("Idempotency-Key") == "k-1"
    assert request.header("Authorization") == "Basic QUM6c2VjcmV0"
    assert request.header("Accept-Encoding") is None


async def test_a_header_that_would_break_the_framing_is_refused_unsent() -> None:
    """A header value with a line break is a PermanentError and nothing is sent."""
    server = RawServer()
    async with client_of(server) as client:
        with pytest.raises(PermanentError):
            await client.request("DELETE", Product.CONVERSATIONS, PATH,
                                 headers={"Idempotency-Key": "k\r\nX-Evil: 1"})
    assert server.requests == []


# -- never sent twice unseen ----------------------------------------------------------------


async def test_a_reused_connection_dropped_after_the_request_is_not_sent_again() -> None:
    """The server reads the second DELETE on a kept-alive connection and closes it unanswered:
    the client reports a connection failure (the requester decides to retry, knowingly); the
    server received that DELETE exactly once."""
    server = RawServer([SANE_204, Raw(b"", "close")])
    async with client_of(server) as client:
        assert (await delete(client)).status == 204
        error = await failure(client)
        assert isinstance(error, TransientError) and "connection failed" in str(error)
        assert [r.connection for r in server.requests] == [1, 1]
        assert (await delete(client)).status == 204
    assert [r.connection for r in server.requests] == [1, 1, 2]


async def test_a_keep_alive_connection_closed_while_idle_never_carries_a_request_twice() -> None:
    """The server closes a kept-alive connection after its answer: the next DELETE succeeds on
    a new connection or fails as a connection failure, and the server counts exactly one
    request per DELETE the client made."""
    server = RawServer([Raw(SANE_204.data, "close")])
    async with client_of(server) as client:
        assert (await delete(client)).status == 204
        with anyio.fail_after(10):
            await server.closed.wait()
        sent = 1
        try:
            sent += 1
            await delete(client)
        except TransientError as exc:
            assert "connection failed" in str(exc)
            sent += 1
            assert (await delete(client)).status == 204
    # No request arrived that the client does not know it sent; the last came on a new one.
    assert len(server.requests) <= sent
    assert [r.connection for r in server.requests][-1] == 2


# -- the pool --------------------------------------------------------------------------------


async def test_connections_are_reused_and_drained_when_the_client_closes() -> None:
    """Ten DELETEs one after another share one connection; closing the client closes it."""
    server = RawServer()
    async with client_of(server) as client:
        for _ in range(10):
            await delete(client)
        pool = pool_of(client)
        assert pool.open == 1 and pool.idle == 1
    assert pool.open == 0
    with anyio.fail_after(10):
        while server.open:
            server.closed.clear()
            await server.closed.wait()
    assert server.connections == 1 and len(server.requests) == 10


async def test_the_pool_opens_no_more_connections_than_the_connector_allows() -> None:
    """With the connector's limit at 3, 12 concurrent DELETEs use at most 3 connections."""
    server = RawServer()
    async with client_of(server, limit=3) as client:
        async with anyio.create_task_group() as tg:
            for _ in range(12):
                tg.start_soon(delete, client)
        assert pool_of(client).open <= 3
    assert len(server.requests) == 12
    assert server.most_open <= 3


async def test_a_request_in_flight_when_the_client_closes_fails_cleanly() -> None:
    """Closing the client aborts a DELETE still waiting for its answer: a connection
    failure, and no socket left open."""
    server = RawServer([Raw(b"", "hang")])
    async with raw_running(server) as url:
        client = TwilioClient({p: url for p in Product}, ("AC", "secret"))
        outcome: Outcome = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(outcome_of, client, outcome)
            await until(lambda: bool(server.requests))
            await client.aclose()
    (error,) = outcome
    assert isinstance(error, TransientError) and "ConnectionLost" in str(error)
    assert pool_of(client).open == 0


def run_on_uvloop(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``test`` on a uvloop event loop."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(test())


def test_on_uvloop_a_reply_is_read_reused_and_a_broken_one_classified() -> None:
    """The same transport on uvloop: replies read, the connection reused, a cut reply a
    connection failure, the pool drained at the client's close."""

    async def scenario() -> None:
        cut = Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{", "close")
        server = RawServer([SANE_204, Raw(OK_JSON), cut])
        async with client_of(server) as client:
            assert (await delete(client)).status == 204
            assert (await delete(client)).body == {}
            error = await failure(client)
            assert isinstance(error, TransientError) and "ConnectionLost" in str(error)
            assert (await delete(client)).status == 204
            pool = pool_of(client)
        assert pool.open == 0
        assert [r.connection for r in server.requests] == [1, 1, 1, 2]

    run_on_uvloop(scenario)


async def test_a_read_to_close_body_cut_by_the_clients_close_is_no_reply() -> None:
    """A 202 whose body runs to the close, its headers read, when our own client closes: the
    partial body is a cut one (a connection failure), never a whole, successful reply — the
    abort is ours, not the server's end of file."""
    server = RawServer([Raw(b"HTTP/1.1 202 Accepted\r\nConnection: close\r\n\r\n", "hang")])
    async with raw_running(server) as url:
        client = TwilioClient({p: url for p in Product}, ("AC", "secret"))
        outcome: Outcome = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(outcome_of, client, outcome)
            await until(lambda: any(c._headers_done for c in pool_of(client)._conns))
            await client.aclose()
    (error,) = outcome
    assert isinstance(error, TransientError) and "ConnectionLost" in str(error), error


async def test_a_failed_connect_frees_its_room_for_the_next_request_at_once() -> None:
    """With room for one connection, two DELETEs to a closed port: the second, waiting for
    the first's room, is woken by the first's failure and fails the same way, not at its
    deadline."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    async with TwilioClient(
        {p: url for p in Product}, ("AC", "secret"), connections=1, timeout=600
    ) as client:
        errors: list[RemoteError] = []

        async def send() -> None:
            errors.append(await failure(client))

        async with anyio.create_task_group() as tg:
            tg.start_soon(send)
            tg.start_soon(send)
    assert len(errors) == 2
    assert all("connection failed: ConnectError" in str(e) for e in errors), errors


async def test_a_delete_waiting_for_a_connection_when_the_run_stops_is_not_sent() -> None:
    """The stop is checked again once a connection is free: a DELETE that waited for one
    while the run began to stop is withdrawn (Stopped), and the server never sees it."""
    server = RawServer([Raw(b"", "hang"), SANE_204])
    async with client_of(server, limit=1) as client:
        stopped: Outcome = []

        async def first(scope: anyio.CancelScope) -> None:
            with scope:
                await delete(client)  # answered never: cancelled below, its connection aborted

        hanging = anyio.CancelScope()
        async with anyio.create_task_group() as tg:
            tg.start_soon(first, hanging)
            await until(lambda: bool(server.requests))
            tg.start_soon(outcome_of, client, stopped, Stopped)
            await until(lambda: bool(pool_of(client)._waiters))
            client.deletes_stopped = True
            hanging.cancel()
    assert len(stopped) == 1
    assert isinstance(stopped[0], Stopped)
    assert len(server.requests) == 1


@pytest.mark.parametrize("name", ["Host", "content-length", "Transfer-Encoding", "Connection"])
async def test_a_framing_header_from_the_caller_is_refused_and_nothing_sent(name: str) -> None:
    """A header the transport writes itself, given again by a caller, would frame the request
    twice: refused before anything is sent."""
    server = RawServer([SANE_204])
    async with client_of(server) as client:
        with pytest.raises(PermanentError, match="refusing a header"):
            await client.request("DELETE", Product.CONVERSATIONS, PATH, headers={name: "1"})
    assert server.requests == []


async def test_a_waiter_cancelled_as_it_is_woken_passes_its_turn_on() -> None:
    """Room for one connection, held by a DELETE the server never answers; two more wait. The
    connection drops, which wakes the first waiter, and that waiter is cancelled before it
    runs (as its own deadline would): the turn goes to the next one, which is answered at once
    (it used to sleep out its deadline)."""
    server = RawServer([Raw(b"", "hang"), SANE_204])
    async with client_of(server, limit=1, request_timeout=600) as client:
        pool = pool_of(client)
        replies: list[Reply] = []

        async def first() -> None:
            with pytest.raises(TransientError):
                await delete(client)

        async def third() -> None:
            replies.append(await delete(client))

        async with anyio.create_task_group() as tg:
            tg.start_soon(first)
            await until(lambda: bool(server.requests))
            # A bare asyncio task: cancelled the moment it is asked, as a deadline cancels.
            second = asyncio.ensure_future(delete(client))
            tg.start_soon(third)
            await until(lambda: len(pool._waiters) >= 2)
            (held,) = pool._conns
            held.abort()  # its connection_lost, and so the first waiter's wake-up, come next
            asyncio.get_running_loop().call_soon(second.cancel)  # before that waiter runs
            with pytest.raises(asyncio.CancelledError):
                await second
        assert [r.status for r in replies] == [204]
        assert len(server.requests) == 2
