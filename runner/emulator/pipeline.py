"""The middleware around every Twilio request: limits, auth, faults and the ledger.

Order matters, because a throttled or unauthenticated request must not be processed, and the
faults drawn must not depend on the route: settle due Operations -> account concurrency ->
Basic auth -> drawn faults (latency, 500/503) -> product token bucket -> handler (which applies
the APS limits) -> reset / slow / bad-body faults -> ledger.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hmac
import socket
import struct
from collections.abc import Awaitable, Callable

from aiohttp import web

from .errors import TwilioError
from .faults import FaultPlan
from .ledger import RequestRecord
from .settings import EmulatorSettings
from .state import ARRIVED_KEY, EMULATOR_KEY, PLAN_KEY, SEQ_KEY, Emulator

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _authenticated(request: web.Request, s: EmulatorSettings) -> bool:
    pairs: tuple[tuple[str, str], ...] = ((s.account_sid, s.auth_token),)
    if s.api_key is not None and s.api_secret is not None:
        pairs += ((s.api_key, s.api_secret),)
    return _credentials_ok(request.headers.get("Authorization", ""), pairs)


@functools.lru_cache(maxsize=64)
def _credentials_ok(header: str, pairs: tuple[tuple[str, str], ...]) -> bool:
    """Whether a Basic ``header`` names one of ``pairs``; remembered, since a client sends the
    same header on every request (decoding it was 4 % of the emulator's time under load)."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return False
    user, sep, password = decoded.partition(":")
    if not sep:
        return False
    return any(
        hmac.compare_digest(user, u) and hmac.compare_digest(password, p) for u, p in pairs
    )


def _product(path: str) -> str:
    return "memory" if path.startswith("/v1/ControlPlane/") else "conversations"


def _reset_connection(request: web.Request) -> None:
    """Abort the TCP connection with an RST, before any byte of the response is sent."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # SO_LINGER with a zero timeout turns close() into a reset.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


@web.middleware
async def twilio_pipeline(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Limits, auth, faults and the ledger around every Twilio request."""
    if request.path.startswith("/_emulator"):
        return await handler(request)
    emu = request.app[EMULATOR_KEY]
    s = emu.settings
    seq = emu.ledger.next_seq()
    request[SEQ_KEY] = seq
    arrived = request[ARRIVED_KEY] = emu.monotonic()
    emu.pauses.arrived(request.protocol, arrived)
    product = _product(request.path)
    for kind, scope in (("account_concurrency", "account"), ("product_rate", product)):
        if emu.pauses.inside(kind, scope, arrived):
            emu.ledger.sent_during_pause[kind] += 1
    emu.settle()
    throttled_by: str | None = None
    admitted = emu.concurrency.enter(s.account_concurrency)
    in_flight = emu.concurrency.in_flight + (0 if admitted else 1)
    response: web.StreamResponse
    plan = FaultPlan()
    try:
        if not admitted:
            raise emu.throttle("account_concurrency", 1.0, "account")
        if not _authenticated(request, s):
            raise TwilioError(401, 20003, "Authenticate",
                              headers={"WWW-Authenticate": 'Basic realm="Twilio API"'})
        plan = emu.faults.draw(s)
        request[PLAN_KEY] = plan
        if plan.latency_s > 0:
            await asyncio.sleep(plan.latency_s)
        if plan.error_500:
            emu.ledger.faults["500"] += 1
            raise TwilioError(500, 20500, "Internal Server Error")
        if plan.error_503:
            emu.ledger.faults["503"] += 1
            raise TwilioError(503, 20503, "Service Unavailable")
        if product in s.product_rate:
            rate, burst = s.product_rate[product]
            wait = emu.product_buckets.take(product, rate, burst, emu.monotonic())
            if wait > 0:
                raise emu.throttle("product_rate", wait, product)
        try:
            response = await handler(request)
        except web.HTTPNotFound as exc:
            raise TwilioError(404, 20404, "The requested resource was not found") from exc
        except web.HTTPMethodNotAllowed as exc:
            raise TwilioError(405, 20004, "Method not allowed") from exc
    except TwilioError as err:
        response = err.response()
        throttled_by = err.throttled_by
        if throttled_by:
            emu.ledger.throttled[throttled_by] += 1
            if err.scope is not None and err.pause_s is not None:
                emu.pauses.asked(request.protocol, throttled_by, err.scope,
                                 emu.monotonic() + err.pause_s)
    finally:
        if admitted:
            emu.concurrency.leave()
    if plan.reset:
        emu.ledger.faults["reset"] += 1
        _record(emu, request, seq, 0, throttled_by)
        _reset_connection(request)
        return response
    if plan.slow:
        emu.ledger.faults["slow"] += 1
        await asyncio.sleep(s.slow_delay_s)
    if plan.bad_body and 200 <= response.status < 300 and isinstance(response, web.Response) \
            and response.body:
        emu.ledger.faults["bad_body"] += 1
        body = bytes(response.body)  # type: ignore[arg-type]
        # Alternate the two shapes a broken proxy produces: cut JSON, and an HTML error page.
        response.body = body[: len(body) // 2] if emu.ledger.faults["bad_body"] % 2 else (
            b"<html><body>502 Bad Gateway</body></html>")
    response.headers["Twilio-Concurrent-Requests"] = str(in_flight)
    _record(emu, request, seq, response.status, throttled_by)
    return response


def _record(emu: Emulator, request: web.Request, seq: int, status: int,
            throttled_by: str | None) -> None:
    emu.ledger.request(
        RequestRecord(seq, request.method, request.path, request.query_string, status,
                      request.headers.get("Idempotency-Key"), emu.clock.now(), throttled_by,
                      request.headers.get("X-Twilio-Webhook-Enabled")),
        emu.settings.record_requests,
    )
