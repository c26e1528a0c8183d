"""The HTTP boundary: every request bulkops sends to Twilio leaves through here.

It sends one request and turns every way it can end into either a :class:`Reply` or one of the
``RemoteError`` subclasses of :mod:`runner.errors`. Retrying, pacing and bookkeeping are the
caller's; this module decides only what an answer *means*.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Self

import orjson
from yarl import URL

from runner.errors import (
    AuthError,
    PermanentError,
    RemoteError,
    Requeued,
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
CONCURRENT_REQUESTS = "Twilio-Concurrent-Requests"
_MAX_COUNT_DIGITS = 9  # a count of requests in flight; more digits is no count at all


@dataclass(frozen=True, slots=True)
class Reply:
    """A 2xx answer: its status, parsed JSON body (None when empty) and the headers we use."""

    status: int
    body: Any
    headers: Mapping[str, str]


class TwilioClient:
    """Sends authenticated requests to the product hosts over one keep-alive connection pool.

    Every request goes through the lean pool of :mod:`runner.wire.transport` (aiohttp's client
    spent about five times the Python of a request, and a list page's reply cost it several
    times a delete's); the pool holds at most ``connections`` open at once. Use it as an async
    context manager, or call :meth:`aclose`: either closes every connection.
    """

    def __init__(
        self,
        base_urls: Mapping[Product, str],
        auth: tuple[str, str],
        *,
        connections: int = 100,
        timeout: float = 30.0,
        user_agent: str = "bulkops",
    ) -> None:
        self._bases = {product: URL(url) for product, url in base_urls.items()}
        self._total = timeout
        self._pool = Pool(connections)
        # Built once: the header is the only place the secret lives after start-up. No
        # Accept-Encoding: replies come as they are, and nothing is ever decompressed.
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
        self._headers = {
            "User-Agent": user_agent,
            "Accept": "application/json",
            "Authorization": f"Basic {token}",
        }
        self._head = encode_headers(self._headers)
        self.deletes_stopped = False  # set when the run stops: no DELETE leaves after that

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every connection (a request in flight fails) and wait for their sockets."""
        self._pool.close()
        await self._pool.wait_closed()

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
        on_answer: Callable[[], None] | None = None,
        still_clear: Callable[[], bool] | None = None,
    ) -> Reply:
        """Send one request; return its 2xx reply or raise the RemoteError that classifies it.
        ``on_answer()`` is called once the reply is whole, before it is classified (see
        :meth:`runner.wire.transport.Pool.request`).

        Raises Stopped for a DELETE once the run is stopping: this is the last moment before a
        request leaves, after any wait for a rate limit or a free connection (Ctrl-C, a brake,
        --max-duration). Reads still go: they change nothing. ``still_clear`` is asked at that
        moment too, for every request: False (a 429 paused one of its scopes, or a hold came,
        while it waited for a connection) raises Requeued, and nothing is sent.
        """
        deleting = method == "DELETE"
        if deleting and self.deletes_stopped:
            raise Stopped("the run is stopping")
        url = self.url_for(product, path_or_url)
        if params:
            url = url.extend_query(params)
        if not headers:
            head = self._head
        else:
            try:
                head = encode_headers({**self._headers, **headers})
            except ValueError as exc:
                refused = PermanentError(0, None, "refusing a header that cannot be sent")
                raise _at(refused, url) from exc
        wanted = still_clear
        if deleting:
            wanted = self._still_sending if still_clear is None else _both(self, still_clear)
        try:
            resp = await self._pool.request(
                method,
                url,
                head,
                cap_ok=MAX_BODY,
                cap_error=MAX_ERROR_BODY,
                seconds=self._total,
                still_wanted=wanted,
                on_answer=on_answer,
            )
            # No await from here to the caller's classification: a 429's pause is recorded
            # before any other task runs, so none can take this connection and send into it.
        except Withdrawn as exc:
            if deleting and self.deletes_stopped:
                raise Stopped("the run is stopping") from exc
            raise Requeued("its last check failed once a connection was free") from exc
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
            # classified by its status and headers alone). A compression bomb is never inflated.
            if ok:
                reason = "response body encoded, not asked for"
                raise _at(TransientError(resp.status, None, reason), url)
            raw = b""
        try:
            return _classify_capped(resp.status, raw, resp.headers)
        except RemoteError as exc:
            exc.url = shown_url(url)
            raise

    def _still_sending(self) -> bool:
        return not self.deletes_stopped


def _both(client: TwilioClient, still_clear: Callable[[], bool]) -> Callable[[], bool]:
    """A DELETE's last check: the run is not stopping, and none of its scopes was paused."""
    return lambda: not client.deletes_stopped and still_clear()


def _connection_failed(exc: Exception, detail: str) -> TransientError:
    """The error of a request its connection could not carry."""
    reason = f"connection failed: {type(exc).__name__}"
    if detail:
        reason += f" ({detail})"  # e.g. "(connection refused)"
    return TransientError(0, None, reason)


def shown_url(url: URL) -> str:
    """``url`` as an error may show it: scheme, host, port and path — no credentials, no query."""
    return str(url.with_user(None).with_query(None).with_fragment(None))


def _at(error: RemoteError, url: URL) -> RemoteError:
    error.url = shown_url(url)
    return error


def _classify_capped(status: int, raw: bytes | None, headers: Mapping[str, str]) -> Reply:
    """:func:`_classify` a body read up to its cap (None: longer than the cap)."""
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
