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
from .limits import Concurrency, KeyedBuckets
from .operations import Operation, OperationBook
from .settings import EmulatorSettings
from .store import Store

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


def seq_of(request: web.Request) -> int:
    """The ledger sequence number of a request."""
    seq: int = request.get(SEQ_KEY, 0)
    return seq


def plan_of(request: web.Request) -> FaultPlan:
    """The faults drawn for a request."""
    plan: FaultPlan = request.get(PLAN_KEY, FaultPlan())
    return plan
