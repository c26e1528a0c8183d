"""Asynchronous delete Operations: PENDING -> RUNNING -> COMPLETED | FAILED on delays.

Status is a function of the loop's monotonic clock, so nothing needs a background task: every
request first calls :meth:`OperationBook.settle`, which completes the operations that are due (a
heap ordered by due time) and removes their resources. Whether an operation fails is drawn from a
seeded RNG when it is created, so runs are reproducible.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

RETENTION_S: Final = 7 * 86_400.0  # Memory's documented retention (error 520052), used for v2 too


class OperationStatus(StrEnum):
    """The statuses the specs enumerate; CANCELLED is never reached (nothing can cancel)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    CANCELLED = "CANCELLED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


@dataclass(slots=True)
class Operation:
    """One asynchronous deletion."""

    id: str
    kind: str  # "conversation_v2" | "configuration" | "memory_store"
    resource_id: str
    created_mono: float
    running_at: float
    done_at: float
    will_fail: bool
    created_wall: float
    idempotency_key: str | None
    request_seq: int
    settled: OperationStatus | None = None
    completed_wall: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def status(self, now: float) -> OperationStatus:
        """Current status at monotonic time ``now``."""
        if self.settled is not None:
            return self.settled
        if now >= self.done_at:
            return OperationStatus.FAILED if self.will_fail else OperationStatus.COMPLETED
        return OperationStatus.RUNNING if now >= self.running_at else OperationStatus.PENDING

    def finished_wall(self) -> float:
        """Emulated wall time at which the operation finished (or will)."""
        if self.completed_wall is not None:
            return self.completed_wall
        return self.created_wall + (self.done_at - self.created_mono)

    def retry_after(self, now: float) -> int:
        """Whole seconds until the operation is expected to finish (at least 1)."""
        return max(1, int(-(-(self.done_at - now) // 1)))


class OperationBook:
    """Every operation of the account, and which resources have one pending."""

    def __init__(self, seed: int) -> None:
        self.operations: dict[str, Operation] = {}
        self.pending_by_resource: dict[str, str] = {}
        self._due: list[tuple[float, int, str]] = []
        self._counter = 0
        self._rng = random.Random(f"operations:{seed}")

    def draw_failure(self, rate: float) -> bool:
        """Whether the next operation fails (one RNG draw per operation)."""
        return self._rng.random() < rate

    def add(self, op: Operation) -> None:
        self.operations[op.id] = op
        self.pending_by_resource[op.resource_id] = op.id
        self._counter += 1
        heapq.heappush(self._due, (op.done_at, self._counter, op.id))

    def settle(self, now: float, on_done: Callable[[Operation], None]) -> None:
        """Finish every operation due by ``now``; ``on_done`` applies the deletion."""
        while self._due and self._due[0][0] <= now:
            _, _, op_id = heapq.heappop(self._due)
            op = self.operations[op_id]
            op.settled = op.status(op.done_at)
            op.completed_wall = op.finished_wall()
            self.pending_by_resource.pop(op.resource_id, None)
            on_done(op)

    def get(self, op_id: str, wall_now: float) -> Operation | None:
        """An operation unless unknown or past retention on the emulated clock."""
        op = self.operations.get(op_id)
        if op is None:
            return None
        if op.completed_wall is not None and wall_now - op.completed_wall > RETENTION_S:
            return None
        return op
