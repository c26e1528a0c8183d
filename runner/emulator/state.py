"""The state of one emulated Twilio account and the per-request keys handlers read.

Everything the handlers mutate hangs off :class:`Emulator`, reachable as ``app[EMULATOR_KEY]``.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from email.utils import format_datetime

from aiohttp import web

from .clock import WallClock
from .dataset import Dataset
from .errors import TwilioError
from .faults import FaultInjector, FaultPlan
from .ids import IdMinter
from .ledger import DeletionRecord, Ledger
from .limits import Concurrency, KeyedBuckets, PauseBook
from .operations import Operation, OperationBook
from .settings import EmulatorSettings
from .store import Store

PLAN_KEY = web.RequestKey("emulator_fault_plan", FaultPlan)
SEQ_KEY = web.RequestKey("emulator_seq", int)
ARRIVED_KEY = web.RequestKey("emulator_arrived", float)
_LAST_HTTP_DATE = 253_402_300_799  # 9999-12-31T23:59:59Z: datetime goes no further


class Emulator:
    """All state of one emulated Twilio account."""

    def __init__(self, settings: EmulatorSettings, dataset: Dataset) -> None:
        self.settings = settings
        self.dataset = dataset
        self.store = Store(dataset)
        self.ledger = Ledger()
        self.clock = WallClock()
        # Moves the monotonic clock on without waiting, so a test can step an Operation
        # through its states; like the wall offset, it only grows.
        self.monotonic_offset_s = 0.0
        self.operations = OperationBook(settings.seed)
        self.faults = FaultInjector(settings.seed)
        self.minter = IdMinter(settings.seed + 7919)
        self.concurrency = Concurrency()
        self.conversation_buckets = KeyedBuckets()
        self.service_buckets = KeyedBuckets()
        self.product_buckets = KeyedBuckets()
        self.pauses = PauseBook()
        # Idempotency-Key -> (fingerprint, wall time, operation id, status, headers, body)
        self.idempotency: dict[str, tuple[str, float, str, int, dict[str, str], bytes]] = {}

    # ------------------------------------------------------------------ clocks

    def monotonic(self) -> float:
        """The clock of rate windows and operation delays."""
        return time.monotonic() + self.monotonic_offset_s

    def advance_monotonic(self, seconds: float) -> None:
        """Move operation delays and rate windows on by ``seconds`` (never back)."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self.monotonic_offset_s += seconds

    # ------------------------------------------------------------------ limits

    def retry_after_headers(self, wait_s: float) -> tuple[dict[str, str], float | None]:
        """The Retry-After header in the configured form (or none), and the pause in seconds
        from now that it asks for (None without the header).

        ``retry_after_s``, when set, replaces the limit's own wait (tests of huge pauses). An
        HTTP-date is rounded up to the whole second, so it never asks for less than the wait,
        and stops at the last second of year 9999.
        """
        s = self.settings
        mode = s.retry_after
        wanted = s.retry_after_s if s.retry_after_s is not None else max(1.0, wait_s)
        seconds = math.ceil(wanted)
        if mode == "seconds":
            return {"Retry-After": str(seconds)}, float(seconds)
        if mode == "http-date":
            now = self.clock.now()
            epoch = min(math.ceil(now + seconds), _LAST_HTTP_DATE)
            when = datetime.fromtimestamp(epoch, UTC)
            return {"Retry-After": format_datetime(when, usegmt=True)}, max(0.0, epoch - now)
        return {}, None

    def throttle(self, kind: str, wait_s: float, scope: str) -> TwilioError:
        """A 429 / 20429 error for the limit ``kind`` of ``scope`` (its SID, product or
        "account")."""
        headers, pause_s = self.retry_after_headers(wait_s)
        return TwilioError(
            429, 20429,
            "Too many requests. Please retry according to the Retry-After response header.",
            headers=headers, throttled_by=kind, scope=scope, pause_s=pause_s,
        )

    def check_aps(self, kind: str, key: str, arrived: float) -> None:
        """Take a token from the per-conversation or per-Service APS bucket, or raise 429; a
        request that ``arrived`` inside a pause of ``key`` counts as sent into it."""
        if self.pauses.inside(kind, key, arrived):
            self.ledger.sent_during_pause[kind] += 1
        per_conversation = kind == "conversation_aps"
        s = self.settings
        rate = s.conversation_aps if per_conversation else s.service_aps
        if rate is None:
            return
        buckets = self.conversation_buckets if per_conversation else self.service_buckets
        wait = buckets.take(key, rate, max(rate, 1.0), self.monotonic())
        if wait > 0:
            raise self.throttle(kind, wait, key)

    def kept(self, resource_id: str) -> bool:
        """Whether a DELETE of ``resource_id`` is to be answered without acting
        (``keep_resources``)."""
        kept = self.settings.keep_resources
        return bool(kept) and resource_id in kept

    # ------------------------------------------------------------------ operations

    def settle(self) -> None:
        """Complete the Operations that are due, deleting their resources."""
        self.operations.settle(self.monotonic(), self._apply_operation)

    def _apply_operation(self, op: Operation) -> None:
        if op.settled is None or op.settled.value != "COMPLETED" or self.kept(op.resource_id):
            return
        removed = {
            "conversation_v2": self.store.delete_conversation_v2,
            "configuration": self.store.delete_configuration,
            "memory_store": self.store.delete_store,
        }[op.kind](op.resource_id)
        if removed:
            self.ledger.deletion(DeletionRecord(op.kind, op.resource_id, None, None,
                                                op.request_seq, "operation"))

    def operation_retry_after(self, op: Operation, now: float) -> str:
        """The Retry-After of a 202 or an Operation GET: the whole seconds until ``op`` is due,
        or ``operation_retry_after_s`` when set (0 plays a server that says "poll now")."""
        fixed = self.settings.operation_retry_after_s
        return str(op.retry_after(now) if fixed is None else math.ceil(fixed))

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


def seq_of(request: web.Request) -> int:
    """The ledger sequence number of a request."""
    seq: int = request.get(SEQ_KEY, 0)
    return seq


def arrival_of(request: web.Request) -> float:
    """When a request arrived (the emulator's monotonic clock)."""
    arrived: float = request.get(ARRIVED_KEY, 0.0)
    return arrived


def plan_of(request: web.Request) -> FaultPlan:
    """The faults drawn for a request."""
    plan: FaultPlan = request.get(PLAN_KEY, FaultPlan())
    return plan
