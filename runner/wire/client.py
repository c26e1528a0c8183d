"""The HTTP boundary: the only module that talks aiohttp (and the lean transport of DELETEs).

It sends one request and turns every way it can end into either a :class:`Reply` or one of the
``RemoteError`` subclasses of :mod:`runner.errors`. Retrying, pacing and bookkeeping are the
caller's; this module decides only what an answer *means*.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from yarl import URL

from runner.errors import (
    AuthError,
    PermanentError,
    RemoteError,
    Stopped,
    Throttled,
    TransientError,
)
from runner.kinds.base import Product
from runner.wire.backoff import parse_retry_after
from runner.wire.transport import Pool, TransportError, Withdrawn, encode_headers

# Twilio's "cannot delete this resource before it is complete": the resource is busy, not gone.
RETRYABLE_CODES = frozenset({20009})
MAX_ERROR_MESSAGE = 200
# The most of a reply body read into memory. The largest real replies are list pages (100 v1
# items, about 100 KB; 1,000 v2 items, about 1 MB), so 16 MiB leaves room for long attributes
# while a runaway or hostile body costs at most this much, with or without a Content-Length.
MAX_BODY = 16 * 1024 * 1024
# An error reply needs only its code and message: anything longer is not read.
MAX_ERROR_BODY = 64 * 1024
_READ_CHUNK = 256 * 1024
CONCURRENT_REQUESTS = "Twilio-Concurrent-Requests"
_MAX_COUNT_DIGITS = 9  # a count of requests in flight; more digits is no count at all


@dataclass(frozen=True, slots=True)
class Reply:
    """A 2xx answer: its status, parsed JSON body (None when empty) and the headers we use."""

    status: int
    body: Any
    headers: Mapping[str, str]


class TwilioClient:
    """Sends authenticated requests to the product hosts over one shared aiohttp session.

    DELETEs, one per target, go through the lean keep-alive pool of :mod:`runner.wire.transport`
    instead (aiohttp's own Python costs about five times the syscalls of a request); the pool
    holds as many connections as the session's connector and closes with it. Lists, polls and
    reads stay on aiohttp: they are a small share of the requests and the larger replies.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_urls: Mapping[Product, str],
        auth: tuple[str, str],
        *,
        timeout: float = 30.0,
        user_agent: str = "bulkops",
    ) -> None:
        self._session = session
        # aiohttp sends an idempotent request again, unseen, when a reused connection drops
        # before the answer (RFC 9112 §9.3.1): a DELETE the server had applied then reads 404
        # and would be reported `gone`, absent before bulkops asked. Off, the drop reaches the
        # requester, which retries it itself and reports `gone_after_request`. aiohttp (3.14)
        # has no public switch for it; without the flag nothing changes but that report.
        if hasattr(session, "_retry_connection"):
            session._retry_connection = False
        self._bases = {product: URL(url) for product, url in base_urls.items()}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._total = timeout
        connector = session.connector
        self._pool = Pool(connector.limit if connector is not None and connector.limit else 100)
        if connector is not None:
            _close_with(connector, self._pool)
        # Built once: the header is the only place the secret lives after start-up.
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
        self._headers = {
            "User-Agent": user_agent,
            "Accept": "application/json",
            "Authorization": f"Basic {token}",
        }
        self._head = encode_headers(self._headers)
        self.deletes_stopped = False  # set when the run stops: no DELETE leaves after that

    def url_for(self, product: Product, path_or_url: str) -> URL:
        """Resolve a path against the product's base; refuse absolute URLs on any other origin.

        Pagination and status URLs come from the server. Following one to another origin would
        hand our credentials to it, so only URLs on exactly the configured origin (scheme, host
        and port) with no user or password in them are followed. A URL yarl cannot read (a port
        out of range, a broken IPv6 host) is refused the same way: a PermanentError, never a
        ValueError escaping the run.
        """
        base = self._bases[product]
        try:
            if path_or_url.startswith(("http://", "https://")):
                url = URL(path_or_url)
                if url.user is not None or url.password is not None:
                    # Not echoed: the text holds credentials.
                    raise PermanentError(0, None, "refusing a URL with a user or password in it")
                if url.origin() != base.origin():
                    raise PermanentError(
                        0,
                        None,
                        f"refusing to follow a URL outside {base.origin()}: {url.origin()}",
                    )
                return url
            return base.with_path(path_or_url, encoded=False)
        except (ValueError, TypeError) as exc:
            raise PermanentError(0, None, "refusing a URL that cannot be read") from exc

    async def request(
        self,
        method: str,
        product: Product,
        path_or_url: str,
        *,
        params: Mapping[str, str] | list[tuple[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """Send one request; return its 2xx reply or raise the RemoteError that classifies it.

        Raises Stopped for a DELETE once the run is stopping: this is the last moment before a
        request leaves, after any wait for a rate limit (Ctrl-C, a brake, --max-duration).
        """
        if self.deletes_stopped and method == "DELETE":
            raise Stopped("the run is stopping")
        url = self.url_for(product, path_or_url)
        merged = {**self._headers, **headers} if headers else self._headers
        if method == "DELETE":
            return await self._lean(method, url, params, merged)
        try:
            async with self._session.request(
                method,
                url,
                params=params,
                headers=merged,
                timeout=self._timeout,
                allow_redirects=False,
            ) as resp:
                ok = 200 <= resp.status < 300
                raw = await _read_capped(resp, MAX_BODY if ok else MAX_ERROR_BODY)
                return _classify_capped(resp.status, raw, resp.headers)
        except RemoteError as exc:
            exc.url = shown_url(url)
            raise
        except TimeoutError as exc:
            raise _at(TransientError(0, None, "request timed out"), url) from exc
        except aiohttp.ClientError as exc:
            detail = ""
            if isinstance(exc, aiohttp.ClientConnectorError) and exc.errno:
                detail = os.strerror(exc.errno).lower()
            raise _at(_connection_failed(exc, detail), url) from exc

    def _still_sending(self) -> bool:
        return not self.deletes_stopped

    async def _lean(
        self,
        method: str,
        url: URL,
        params: Mapping[str, str] | list[tuple[str, str]] | None,
        headers: Mapping[str, str],
    ) -> Reply:
        """:meth:`request` over the lean pool: the same answers, errors and reasons."""
        if params:
            url = url.extend_query(params)  # as aiohttp does with params
        if headers is self._headers:
            head = self._head
        else:
            try:
                head = encode_headers(headers)
            except ValueError as exc:
                refused = PermanentError(0, None, "refusing a header that cannot be sent")
                raise _at(refused, url) from exc
        try:
            resp = await self._pool.request(
                method,
                url,
                head,
                cap_ok=MAX_BODY,
                cap_error=MAX_ERROR_BODY,
                seconds=self._total,
                still_wanted=self._still_sending,
            )
            # No await from here to the caller's classification: a 429's pause is recorded
            # before any other task runs, so none can take this connection and send into it.
        except Withdrawn as exc:
            raise Stopped("the run is stopping") from exc
        except TimeoutError as exc:
            raise _at(TransientError(0, None, "request timed out"), url) from exc
        except TransportError as exc:
            raise _at(_connection_failed(exc, exc.detail), url) from exc
        except ValueError as exc:
            raise _at(PermanentError(0, None, "refusing a URL that cannot be sent"), url) from exc
        ok = 200 <= resp.status < 300
        raw = resp.body
        if raw and resp.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
            # No Accept-Encoding is sent and nothing is decompressed: an encoded body is
            # unreadable, like a body that is not JSON (a 2xx is retried; an error is
            # classified by its status and headers alone).
            if ok:
                reason = "response body encoded, not asked for"
                raise _at(TransientError(resp.status, None, reason), url)
            raw = b""
        try:
            return _classify_capped(resp.status, raw, resp.headers)
        except RemoteError as exc:
            exc.url = shown_url(url)
            raise


def _connection_failed(exc: Exception, detail: str) -> TransientError:
    """The error of a request its connection could not carry, on either transport."""
    reason = f"connection failed: {type(exc).__name__}"
    if detail:
        reason += f" ({detail})"  # e.g. "(connection refused)"
    return TransientError(0, None, reason)


def _close_with(connector: aiohttp.BaseConnector, pool: Pool) -> None:
    """Close ``pool`` whenever ``connector`` is closed (the session's end closes it).

    Every caller that builds a client ends its run by closing the aiohttp session, and some
    (tests, verify) build the client from a session they close themselves: tying the pool to
    the connector's close leaves no socket open however the client was built, without a second
    close for each of them to remember. aiohttp has no hook for it, so the bound method is
    wrapped on this instance; ``ClientSession.close`` awaits what it returns.
    """
    close_connector = connector.close

    def close(*args: Any, **kwargs: Any) -> Awaitable[None]:
        pool.close()
        return _after(close_connector(*args, **kwargs), pool)

    connector.close = close  # type: ignore[method-assign]  # see the docstring


async def _after(connector_closed: Awaitable[None], pool: Pool) -> None:
    await connector_closed
    await pool.wait_closed()


def shown_url(url: URL) -> str:
    """``url`` as an error may show it: scheme, host, port and path — no credentials, no query."""
    return str(url.with_user(None).with_query(None).with_fragment(None))


def _at(error: RemoteError, url: URL) -> RemoteError:
    error.url = shown_url(url)
    return error


async def _read_capped(resp: aiohttp.ClientResponse, cap: int) -> bytes | None:
    """The body, or None once it is known to be longer than ``cap`` bytes.

    Read in chunks so that memory stays bounded whatever the server says (or does not say) in
    Content-Length; the unread rest is dropped with the connection.
    """
    length = resp.content_length
    if length is not None and length > cap:
        return None
    if length is not None and resp.headers.get("Content-Encoding", "identity") == "identity":
        # The parser stops at the declared length, so a plain read is bounded by it. Not so
        # for a compressed body: its length is before decompression (a gzip bomb).
        return await resp.read()
    parts: list[bytes] = []
    size = 0
    while True:
        chunk = await resp.content.read(_READ_CHUNK)
        if not chunk:
            return b"".join(parts)
        size += len(chunk)
        if size > cap:
            return None
        parts.append(chunk)


def _classify_capped(status: int, raw: bytes | None, headers: Mapping[str, str]) -> Reply:
    """:func:`_classify` a body read up to its cap (None: longer than the cap), on either
    transport."""
    if raw is None:
        if 200 <= status < 300:
            # Retried like an unreadable body (every request is idempotent), within the retry
            # policy's attempts; each try reads at most MAX_BODY.
            raise TransientError(status, None, f"response body larger than {MAX_BODY} bytes")
        raw = b""  # an error is classified by its status and headers alone
    return _classify(status, raw, headers)


def _classify(status: int, raw: bytes, headers: Mapping[str, str]) -> Reply:
    if 200 <= status < 300:
        if not raw.strip():
            return Reply(status, None, headers)
        try:
            return Reply(status, orjson.loads(raw), headers)
        except orjson.JSONDecodeError as exc:
            # A 2xx whose body we cannot read may or may not have happened: retrying is safe
            # because every delete is idempotent (404 → gone, Idempotency-Key → same Operation).
            raise TransientError(status, None, "unreadable response body") from exc
    code, message = _error_fields(raw)
    if status == 429:
        raise Throttled(
            status,
            code,
            message,
            parse_retry_after(headers.get("Retry-After")),
            concurrent_requests(headers),
        )
    if status in (401, 403):
        raise AuthError(status, code, message)
    if status >= 500 or code in RETRYABLE_CODES or status == 409:
        # 409 on an async delete means a deletion of the resource is already under way (started
        # elsewhere or under another key): it will end, and then the retry answers 404 → gone.
        raise TransientError(status, code, message)
    raise PermanentError(status, code, message)


def concurrent_requests(headers: Mapping[str, str]) -> int | None:
    """Twilio-Concurrent-Requests as a count, or None when absent or not a plain count.

    The one reader of that header: a malformed value ("²", "-3", 400 digits) is no signal, so
    the 429 is treated as any other instead of raising inside a worker.
    """
    value = headers.get(CONCURRENT_REQUESTS)
    if value is None:
        return None
    text = value.strip()
    if not (0 < len(text) <= _MAX_COUNT_DIGITS and text.isascii() and text.isdigit()):
        return None
    return int(text)


def _error_fields(raw: bytes) -> tuple[int | None, str]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, "non-JSON error body"
    if not isinstance(body, dict):
        return None, "unexpected error body"
    code = body.get("code")
    message = body.get("message") or body.get("title") or body.get("detail") or ""
    return (code if isinstance(code, int) else None), str(message)[:MAX_ERROR_MESSAGE]
