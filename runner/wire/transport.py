"""A keep-alive HTTP/1.1 connection pool: the lean transport of the per-target hot path.

aiohttp spends about 75 µs of Python per request (ClientSession._request, ClientRequest,
ClientResponse.start, the connector's bookkeeping, yarl, timers); send and receive cost about
15. A run sends one DELETE per target, and a list page cost aiohttp several times a delete, so
:class:`TwilioClient` sends every request here: one
``asyncio.Protocol`` per connection (asyncio and uvloop alike), replies parsed by httptools
(llhttp, the C parser of uvicorn), the request written as one prebuilt ``bytes``.

What it does, and what it deliberately does not::

    Pool.request(method, url, headers)  ->  Response(status, headers, body | None)
    TransportError                      (the connection could not carry the exchange)
    ├── ConnectError                    no connection could be opened (errno text kept)
    ├── ConnectionLost                  closed or reset before the whole reply arrived
    └── MalformedResponse               not an HTTP/1.x reply we read: a bad status line or
                                        header, headers over MAX_HEAD bytes or MAX_HEADERS
                                        lines, an Upgrade or 101 not asked for, 1xx floods
    Withdrawn                           the caller no longer wanted it once a connection was
                                        free (nothing sent)
    TimeoutError                        the total deadline passed (connect, send and read)

- **Never re-sent.** A request written to a reused connection that then drops is a
  ConnectionLost, whatever the method: the server may have applied it (RFC 9112 §9.3.1 allows a
  silent retry of an idempotent request; a DELETE applied, retried unseen, reads 404 and would
  be reported ``gone``). The caller retries it knowingly. A request is only moved to another
  connection when it was never written (the idle connection was already closing).
- **Bounded.** Headers: MAX_HEAD bytes in all (interim replies included) and MAX_HEADERS lines,
  counted before httptools has buffered more than one read past the bound. Bodies: the caller's
  cap, by status (2xx or error); a Content-Length over it is not read at all, and a body that
  grows past it is dropped with its connection (``body`` None).
- **Framing.** Content-Length, chunked (httptools) and read-to-close bodies. A connection is
  returned to the pool only after a whole reply that allows keep-alive (not HTTP/1.0 without
  keep-alive, not ``Connection: close``); one whose reply was cut, over a bound, timed out,
  cancelled or followed by bytes nobody asked for is closed, never reused. Idle connections
  older than KEEPALIVE seconds are closed rather than reused (the server's idle close would race
  our next write).
- **Answered, then resumed.** ``on_answer()`` is called as soon as the final reply is whole,
  in the turn of the loop that read its last byte, just after the caller's task is queued to
  resume: a caller gives its in-flight slot back there, and whatever that wakes runs after the
  caller has acted on the reply (see runner.wire.requester). Never called for a failed exchange.
- **1xx** interim replies (100, 103...) are skipped; 101 Switching Protocols is refused.
- **Not here:** no proxies (bulkops reads no proxy environment), no redirects (never followed),
  no request bodies (DELETE and GET send none), no decompression (no Accept-Encoding is sent;
  the client classifies an encoded body), no HEAD (a reply to HEAD has no body, which the parser
  cannot know), no HTTP/2, no cookies.

The pool is bounded like aiohttp's connector: at most ``limit`` connections open over every
origin; a request finding none free waits for one (within its deadline), closing an idle
connection of another origin to make room. :meth:`Pool.close` aborts every connection and
:meth:`Pool.wait_closed` waits until their sockets are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import math
import os
import socket
import ssl
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import cast

import httptools
from multidict import CIMultiDict
from yarl import URL

MAX_HEAD = 64 * 1024  # status lines and headers of one exchange, interim replies included
MAX_HEADERS = 128  # header lines of one exchange; Twilio sends about 20
MAX_INTERIM = 8  # 1xx replies before the final one
KEEPALIVE = 15.0  # seconds an idle connection is trusted (aiohttp's keepalive_timeout)
_EARLY = 0.001  # seconds before its deadline an exchange may be timed out

_HTTP_PORTS = {"http": 80, "https": 443}


class TransportError(Exception):
    """The connection could not carry the exchange; ``detail`` says how, when known."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail)
        self.detail = detail


class ConnectError(TransportError):
    """No connection could be opened (refused, unreachable, name not found, TLS refused)."""


class ConnectionLost(TransportError):
    """The connection closed or was reset before the whole reply had arrived."""


class Withdrawn(Exception):
    """The caller's ``still_wanted`` said no once a connection was free: nothing was sent."""


class MalformedResponse(TransportError):
    """The server's bytes are not an HTTP/1.x reply this client reads."""


@dataclass(frozen=True, slots=True)
class Response:
    """A final reply: its status, headers and body (None: longer than the caller's cap)."""

    status: int
    headers: CIMultiDict[str]
    body: bytes | None


# Written by the transport itself for every request: a caller's copy would frame it twice.
_FRAMING = frozenset({"host", "content-length", "transfer-encoding", "connection"})


def encode_headers(headers: Mapping[str, str]) -> bytes:
    """``headers`` as request header lines; a name or value that would break the framing (a
    CR, LF or NUL; an empty or spaced name; a header the transport frames the request with) is
    a ValueError, never written."""
    for name, value in headers.items():
        if not name or not name.isprintable() or " " in name or ":" in name:
            raise ValueError("a request header name that cannot be sent")
        if name.lower() in _FRAMING:
            raise ValueError(f"the {name} header is the transport's own")
        if "\r" in value or "\n" in value or "\0" in value:
            raise ValueError("a request header value that cannot be sent")
    return "".join(f"{name}: {value}\r\n" for name, value in headers.items()).encode("utf-8")


def _host_header(url: URL) -> bytes:
    """``Host:`` of ``url``: its (IDNA-encoded) host, bracketed if IPv6, and its port unless it
    is the scheme's default."""
    host = url.raw_host or ""
    if ":" in host:
        host = f"[{host}]"
    if not url.is_default_port():
        host += f":{url.port}"
    return f"Host: {host}\r\n".encode("ascii")


def _errno_text(exc: BaseException | None) -> str:
    # An SSLError is an OSError whose errno is OpenSSL's code, not the system's: read as an
    # errno, a refused certificate would say "operation not permitted".
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {(exc.reason or type(exc).__name__).lower().replace('_', ' ')}"
    if isinstance(exc, socket.gaierror) and exc.strerror:
        return exc.strerror.lower()  # e.g. "name or service not known"
    if isinstance(exc, OSError) and exc.errno and exc.errno in errno.errorcode:
        return os.strerror(exc.errno).lower()  # e.g. "connection refused"
    return ""


class _Stop(Exception):
    """Raised inside a parser callback to end parsing of this feed; carries what to do."""

    def __init__(self, error: TransportError | None = None) -> None:
        super().__init__()
        self.error = error  # None: the reply is settled (over its cap, or already delivered)


class _Connection(asyncio.Protocol):
    """One keep-alive connection: at most one exchange at a time."""

    def __init__(self, pool: Pool, key: tuple[str, str, int]) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = pool.loop.create_future()
        self.idle_since = 0.0
        self.reusable = False
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Response] | None = None
        self._on_answer: Callable[[], None] | None = None
        self._cap_ok = 0
        self._cap_error = 0
        self._cap = 0
        self._head = 0  # bytes received before this exchange's final headers were whole
        self._header_bytes = 0  # bytes of its header lines
        self._lines = 0
        self._interim = 0
        self._status = 0
        self._headers: list[tuple[str, str]] = []
        self._headers_done = False
        self._framed = False  # Content-Length or chunked: EOF before the end is a loss
        self._eof = False  # the peer ended its side: only this ends a read-to-close body
        self._parts: list[bytes] = []
        self._size = 0

    # --- the exchange ---

    def send(
        self,
        request: bytes,
        cap_ok: int,
        cap_error: int,
        on_answer: Callable[[], None] | None = None,
    ) -> asyncio.Future[Response]:
        """Write ``request``; the future resolves with its reply or fails with a TransportError
        (``on_answer``: see the module)."""
        if self.transport is None:
            raise ConnectionLost("not connected")
        self._waiter = waiter = self.pool.loop.create_future()
        self._on_answer = on_answer
        self.reusable = False
        self._cap_ok, self._cap_error = cap_ok, cap_error
        self._head = self._header_bytes = self._lines = self._interim = 0
        self._begin()
        self.transport.write(request)
        return waiter

    def _begin(self) -> None:
        self._status = 0
        self._headers = []
        self._headers_done = False
        self._framed = False
        self._parts = []
        self._size = 0

    def time_out(self) -> None:
        """The deadline passed: fail the exchange and drop the connection."""
        self._fail(TimeoutError())

    def abort(self) -> None:
        """Close at once: nothing on this connection is read or written again."""
        self.reusable = False
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, error: BaseException) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self.abort()

    def _deliver(self, body: bytes | None) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(Response(self._status, CIMultiDict(self._headers), body))
            # After the result: the caller's task is queued to run first, then what this frees.
            on_answer, self._on_answer = self._on_answer, None
            if on_answer is not None:
                on_answer()

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            self.abort()  # bytes nobody asked for: the framing is lost
            return
        if not self._headers_done:
            self._head += len(data)  # bounds what httptools buffers of a header in pieces
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(MalformedResponse("an upgrade not asked for"))
            return
        except httptools.HttpParserError as exc:
            stop = exc.__context__
            if isinstance(stop, _Stop):
                if stop.error is not None:
                    self._fail(stop.error)
                else:
                    self._deliver(None)  # over the cap: the rest is not read
                    self.abort()
            else:
                self._fail(MalformedResponse(str(exc) or type(exc).__name__))
            return
        if not self._headers_done and self._head > MAX_HEAD:
            self._fail(MalformedResponse(f"headers over {MAX_HEAD} bytes"))

    def eof_received(self) -> bool | None:
        self._eof = True
        return None  # close: connection_lost ends a read-to-close body

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if exc is None and self._eof and self._headers_done and not self._framed:
                # A read-to-close body ends at the peer's end of file only: our own abort (the
                # pool closing, a timeout) also arrives here without an error, and what was
                # read by then is a cut body, never a whole one.
                self._deliver(b"".join(self._parts))
            else:
                text = _errno_text(exc)
                waiter.set_exception(ConnectionLost(text))
        self.pool.forget(self)
        if not self.lost.done():
            self.lost.set_result(None)

    # --- httptools callbacks ---

    def on_message_begin(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            # More after a whole reply: a reply to nothing (or a 204's body). Never parsed as
            # the next request's answer.
            self.reusable = False
            raise _Stop()
        self._begin()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._lines += 1
        self._header_bytes += len(name) + len(value) + 4
        if self._lines > MAX_HEADERS:
            raise _Stop(MalformedResponse(f"more than {MAX_HEADERS} header lines"))
        if self._header_bytes > MAX_HEAD:
            raise _Stop(MalformedResponse(f"headers over {MAX_HEAD} bytes"))
        self._headers.append(
            (name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
        )

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        self._status = status
        if status == 101:
            raise _Stop(MalformedResponse("101 Switching Protocols, not asked for"))
        if 100 <= status < 200:
            return  # interim: no body, the final reply follows
        self._headers_done = True
        self._cap = self._cap_ok if 200 <= status < 300 else self._cap_error
        length: str | None = None
        for name, value in self._headers:
            lowered = name.lower()
            if lowered == "content-length":
                length = value
            elif lowered == "transfer-encoding":
                self._framed = True
        if length is not None:
            self._framed = True
            # llhttp has checked it is a number, and one value.
            if int(length.strip()) > self._cap:
                raise _Stop()
        if status in (204, 304):
            self._framed = True  # no body, whatever follows

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self._cap:
            raise _Stop()
        self._parts.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self._status < 200:
            self._interim += 1
            if self._interim > MAX_INTERIM:
                raise _Stop(MalformedResponse(f"more than {MAX_INTERIM} interim replies"))
            return
        self.reusable = self._parser.should_keep_alive()
        self._deliver(b"".join(self._parts))


class Pool:
    """Keep-alive connections to a few origins, at most ``limit`` open at once."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._conns: set[_Connection] = set()
        self._opening = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tls: ssl.SSLContext | None = None
        self._hosts: dict[tuple[str, str, int], bytes] = {}
        # Deadlines of the exchanges in flight, watched by one timer armed for the earliest:
        # a timer per request (made and cancelled each time) was ~5 % of a DELETE's CPU.
        self._busy: dict[_Connection, float] = {}
        self._expiry: asyncio.TimerHandle | None = None
        self._expiry_at = math.inf

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop the pool's connections live on (the first request's)."""
        assert self._loop is not None
        return self._loop

    @property
    def open(self) -> int:
        """Connections open or opening."""
        return len(self._conns) + self._opening

    @property
    def idle(self) -> int:
        """Connections waiting for a request."""
        return sum(len(v) for v in self._idle.values())

    async def request(
        self,
        method: str,
        url: URL,
        headers: bytes,
        *,
        cap_ok: int,
        cap_error: int,
        seconds: float,
        still_wanted: Callable[[], bool] | None = None,
        on_answer: Callable[[], None] | None = None,
    ) -> Response:
        """Send one bodiless request and read its final reply, all within ``seconds``.

        ``on_answer()`` is called once the final reply is whole, before this returns
        (see the module); never when the exchange fails.

        ``still_wanted`` is asked once a connection is in hand, just before the request is
        written (a wait for a free connection may outlast the caller's reason to send): False
        sends nothing and raises :class:`Withdrawn`.

        Raises TimeoutError, a TransportError, Withdrawn, or ValueError for a URL or method this
        transport cannot send (nothing is sent then)."""
        if method == "HEAD" or not method.isalpha():
            raise ValueError(f"method {method!r} is not sent by this transport")
        target = url.raw_path_qs
        if not target.isprintable() or " " in target:
            raise ValueError("a request target that cannot be sent")
        key = (url.scheme, url.raw_host or "", url.port or 0)
        if key[0] not in _HTTP_PORTS or not key[1]:
            raise ValueError("only http and https URLs with a host are sent")
        host = self._hosts.get(key)
        if host is None:
            host = self._hosts[key] = _host_header(url)
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        request = b"".join((
            f"{method} {target} HTTP/1.1\r\n".encode("ascii"),
            host,
            headers,
            b"Content-Length: 0\r\n\r\n",  # bodiless, said so: framing needs no guess
        ))
        conn = await self._acquire(key, deadline)
        if still_wanted is not None:
            try:
                wanted = still_wanted()
            except BaseException:
                self._release(conn)  # the caller's check failed: the connection is unused
                raise
            if not wanted:
                self._release(conn)
                raise Withdrawn("no longer wanted once a connection was free")
        self._busy[conn] = deadline
        if deadline < self._expiry_at:
            self._arm(deadline)
        try:
            response = await conn.send(request, cap_ok, cap_error, on_answer)
        except BaseException:
            conn.abort()  # cancelled or failed: whatever the connection holds is unread
            raise
        finally:
            self._busy.pop(conn, None)
        self._release(conn)
        return response

    def _arm(self, when: float) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        self._expiry_at = when
        self._expiry = self.loop.call_at(when, self._expire)

    def _expire(self) -> None:
        """Time out every exchange whose deadline has come; watch for the next one."""
        self._expiry, self._expiry_at = None, math.inf
        # A loop may run a timer a little early (uvloop counts in milliseconds): a deadline
        # within one is due, never left for a timer that could come back at once.
        now = self.loop.time() + _EARLY
        for conn in [conn for conn, deadline in self._busy.items() if deadline <= now]:
            del self._busy[conn]
            conn.time_out()
        if self._busy:
            self._arm(min(self._busy.values()))

    async def _acquire(self, key: tuple[str, str, int], deadline: float) -> _Connection:
        loop = self.loop
        while True:
            if self._closed:
                raise ConnectError("the connection pool is closed")
            idle = self._idle.get(key)
            while idle:
                conn = idle.pop()  # the most recently used: the least likely closed
                transport = conn.transport
                if (
                    transport is not None
                    and not transport.is_closing()
                    and loop.time() - conn.idle_since < KEEPALIVE
                ):
                    return conn
                conn.abort()  # closed while idle, or idle too long: never written to
            if self.open >= self.limit:
                self._evict_idle()
            if self.open < self.limit:
                return await self._connect(key, deadline)
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # woken as its deadline or a cancel came: pass the turn on
                raise
            finally:
                if not waiter.done():
                    waiter.cancel()
                with contextlib.suppress(ValueError):  # woken: already removed
                    self._waiters.remove(waiter)

    def _evict_idle(self) -> None:
        """Close one idle connection (of any origin) to make room for a new one."""
        for idle in self._idle.values():
            if idle:
                idle.pop(0).abort()  # the oldest
                return

    async def _connect(self, key: tuple[str, str, int], deadline: float) -> _Connection:
        scheme, host, port = key
        tls: ssl.SSLContext | None = None
        if scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        conn = _Connection(self, key)
        self._opening += 1
        opened = False
        try:
            async with asyncio.timeout_at(deadline):
                await self.loop.create_connection(
                    lambda: conn,
                    host,
                    port or _HTTP_PORTS[scheme],
                    ssl=tls,
                    server_hostname=host if tls is not None else None,
                )
            opened = True
        except TimeoutError:
            raise  # the deadline (an OSError too, but "request timed out", not a refusal)
        except OSError as exc:
            raise ConnectError(_errno_text(exc)) from exc
        finally:
            self._opening -= 1
            if not opened:
                self._wake()  # the room this attempt held is free: a waiter may use it
        self._conns.add(conn)
        if self._closed:  # closed while connecting
            conn.abort()
            raise ConnectError("the connection pool is closed")
        return conn

    def _release(self, conn: _Connection) -> None:
        transport = conn.transport
        if self._closed or not conn.reusable or transport is None or transport.is_closing():
            conn.abort()
            return
        conn.idle_since = self.loop.time()
        self._idle.setdefault(conn.key, []).append(conn)
        self._wake()

    def forget(self, conn: _Connection) -> None:
        """``conn`` is closed: it no longer counts, and a waiting request may open another."""
        self._conns.discard(conn)
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        """Abort every connection, idle or busy (a request in flight fails ConnectionLost);
        no request is sent after this."""
        self._closed = True
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry, self._expiry_at = None, math.inf
        for conn in list(self._conns):
            conn.abort()
        self._idle.clear()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)  # it finds the pool closed
        self._waiters.clear()

    async def wait_closed(self) -> None:
        """Wait until every connection's socket is closed (after :meth:`close`)."""
        pending = [conn.lost for conn in self._conns if not conn.lost.done()]
        if pending:
            await asyncio.gather(*pending)


