"""The aiohttp application: one port serving Conversations v1/v2, Memory and the admin API.

Request pipeline for Twilio paths (the middleware below), in this order, because a throttled or
unauthenticated request must not be processed and faults must not depend on the route:
settle due Operations -> account concurrency -> Basic auth -> drawn faults (latency, 500/503) ->
product token bucket -> handler (which applies APS limits) -> reset / slow / bad-body faults ->
ledger.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import math
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from aiohttp import web

from .clock import WallClock
from .dataset import Dataset
from .errors import TwilioError
from .faults import FaultInjector, FaultPlan
from .ids import IdMinter
from .ledger import DeletionRecord, Ledger, RequestRecord
from .limits import Concurrency, KeyedBuckets
from .operations import Operation, OperationBook
from .settings import EmulatorSettings
from .store import Store

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PLAN_KEY = web.RequestKey("emulator_fault_plan", FaultPlan)
SEQ_KEY = web.RequestKey("emulator_seq", int)


class Emulator:
    """All state of one emulated Twilio account."""

    def __init__(self, settings: EmulatorSettings, dataset: Dataset) -> None:
        self.settings = settings
        self.dataset = dataset
        self.store = Store(dataset)
        self.ledger = Ledger()
        self.clock = WallClock()
        self.operations = OperationBook(settings.seed)
        self.faults = FaultInjector(settings.seed)
        self.minter = IdMinter(settings.seed + 7919)
        self.concurrency = Concurrency()
        self.conversation_buckets = KeyedBuckets()
        self.service_buckets = KeyedBuckets()
        self.product_buckets = KeyedBuckets()
        # Idempotency-Key -> (fingerprint, wall time, operation id, status, headers, body)
        self.idempotency: dict[str, tuple[str, float, str, int, dict[str, str], bytes]] = {}

    # ------------------------------------------------------------------ clocks

    @staticmethod
    def monotonic() -> float:
        """The clock of rate windows and operation delays."""
        return time.monotonic()

    # ------------------------------------------------------------------ limits

    def retry_after_headers(self, wait_s: float) -> dict[str, str]:
        """The Retry-After header in the configured form (or none)."""
        mode = self.settings.retry_after
        seconds = max(1, math.ceil(wait_s))
        if mode == "seconds":
            return {"Retry-After": str(seconds)}
        if mode == "http-date":
            when = datetime.fromtimestamp(self.clock.now() + seconds, UTC)
            return {"Retry-After": format_datetime(when, usegmt=True)}
        return {}

    def throttle(self, kind: str, wait_s: float) -> TwilioError:
        """A 429 / 20429 error for the limit ``kind``."""
        return TwilioError(
            429, 20429,
            "Too many requests. Please retry according to the Retry-After response header.",
            headers=self.retry_after_headers(wait_s), throttled_by=kind,
        )

    def check_aps(self, kind: str, key: str) -> None:
        """Take a token from the per-conversation or per-Service APS bucket, or raise 429."""
        per_conversation = kind == "conversation_aps"
        s = self.settings
        rate = s.conversation_aps if per_conversation else s.service_aps
        if rate is None:
            return
        buckets = self.conversation_buckets if per_conversation else self.service_buckets
        wait = buckets.take(key, rate, max(rate, 1.0), self.monotonic())
        if wait > 0:
            raise self.throttle(kind, wait)

    # ------------------------------------------------------------------ operations

    def settle(self) -> None:
        """Complete the Operations that are due, deleting their resources."""
        self.operations.settle(self.monotonic(), self._apply_operation)

    def _apply_operation(self, op: Operation) -> None:
        if op.settled is None or op.settled.value != "COMPLETED":
            return
        removed = {
            "conversation_v2": self.store.delete_conversation_v2,
            "configuration": self.store.delete_configuration,
            "memory_store": self.store.delete_store,
        }[op.kind](op.resource_id)
        if removed:
            self.ledger.deletion(DeletionRecord(op.kind, op.resource_id, None, None,
                                                op.request_seq, "operation"))

    def new_operation(self, kind: str, resource_id: str, prefix: str, key: str | None,
                      seq: int) -> Operation:
        """Create and register a pending deletion Operation."""
        now = self.monotonic()
        wall = self.clock.now()
        s = self.settings
        op = Operation(
            id=self.minter.ttid(prefix, int(wall * 1000)),
            kind=kind, resource_id=resource_id, created_mono=now,
            running_at=now + s.operation_pending_s,
            done_at=now + s.operation_pending_s + s.operation_running_s,
            will_fail=self.operations.draw_failure(s.operation_failure_rate),
            created_wall=wall, idempotency_key=key, request_seq=seq,
        )
        self.operations.add(op)
        self.ledger.operation_ids.append(op.id)
        return op


EMULATOR_KEY = web.AppKey("emulator", Emulator)


def _authenticated(request: web.Request, s: EmulatorSettings) -> bool:
    header = request.headers.get("Authorization", "")
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
    pairs = [(s.account_sid, s.auth_token)]
    if s.api_key is not None and s.api_secret is not None:
        pairs.append((s.api_key, s.api_secret))
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
    emu.settle()
    throttled_by: str | None = None
    admitted = emu.concurrency.enter(s.account_concurrency)
    in_flight = emu.concurrency.in_flight + (0 if admitted else 1)
    response: web.StreamResponse
    plan = FaultPlan()
    try:
        if not admitted:
            raise emu.throttle("account_concurrency", 1.0)
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
        product = _product(request.path)
        if product in s.product_rate:
            rate, burst = s.product_rate[product]
            wait = emu.product_buckets.take(product, rate, burst, emu.monotonic())
            if wait > 0:
                raise emu.throttle("product_rate", wait)
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
                      request.headers.get("Idempotency-Key"), emu.clock.now(), throttled_by),
        emu.settings.record_requests,
    )


def build_app(settings: EmulatorSettings, dataset: Dataset) -> web.Application:
    """The emulator as an aiohttp application; its state is ``app[EMULATOR_KEY]``."""
    from . import admin, handlers_memory, handlers_v1, handlers_v2

    app = web.Application(middlewares=[twilio_pipeline])
    app[EMULATOR_KEY] = Emulator(settings, dataset)
    admin.register(app.router)
    handlers_memory.register(app.router)
    handlers_v2.register(app.router)
    handlers_v1.register(app.router)
    return app


def base_url(request: web.Request) -> str:
    """The emulator's own base, as the client reached it."""
    return f"{request.scheme}://{request.host}"


def seq_of(request: web.Request) -> int:
    """The ledger sequence number of a request."""
    seq: int = request.get(SEQ_KEY, 0)
    return seq


def plan_of(request: web.Request) -> FaultPlan:
    """The faults drawn for a request."""
    plan: FaultPlan = request.get(PLAN_KEY, FaultPlan())
    return plan


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> web.Response:
    """Compact JSON bytes (no per-request dumps options to parse)."""
    import json

    return web.Response(status=status, body=json.dumps(data, separators=(",", ":")).encode(),
                        content_type="application/json", headers=headers)
