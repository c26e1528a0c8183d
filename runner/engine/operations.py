"""Following an asynchronous Operation (202 + statusUrl) to its end.

v2 (Orchestrator) and Memory both answer an async DELETE with ``Operation-Id``, ``Retry-After`` and
a ``statusUrl``; the Operation moves PENDING → RUNNING → COMPLETED | FAILED (| CANCELLED). The
first poll waits the 202's Retry-After; later polls wait the GET's Retry-After when it sends one,
else the configured interval. Polls share the run's limits with every other request.

A Retry-After is read by :func:`runner.wire.backoff.parse_retry_after` (seconds or an HTTP-date) and
floored at :func:`poll_floor`: a server answering ``Retry-After: 0`` would otherwise be polled
as fast as the loop turns (2,700 polls in 15 s were seen). The wait never outlasts the deadline.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from runner.clock import MONOTONIC, Clock
from runner.errors import OperationFailed, PermanentError
from runner.kinds.base import Product
from runner.kinds.ids import is_operation_id
from runner.wire.backoff import parse_retry_after
from runner.wire.client import Reply
from runner.wire.requester import Requester


class OperationStatus(StrEnum):
    """The statuses both specs list."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


MIN_POLL_WAIT = 0.25  # seconds between two polls of one Operation, whatever its Retry-After


@dataclass(frozen=True, slots=True)
class Accepted:
    """What a 202 told us: the Operation to follow and when to look first."""

    operation_id: str
    status_url: str
    retry_after: float | None


def operation_path(product: Product, operation_id: str) -> str:
    """The status path of an Operation, for a resume that knows only its id."""
    if product is Product.MEMORY:
        return f"/v1/ControlPlane/Operations/{operation_id}"
    return f"/v2/ControlPlane/Operations/{operation_id}"


def parse_accepted(reply: Reply, product: Product) -> Accepted:
    """Read the Operation out of a 202; a 202 without a usable one is an unreadable answer.

    The Operation id goes into a URL that is polled and into the log, so it must have an
    Operation id's shape; a ``statusUrl`` is followed only when it names that same Operation
    (anything else is polled at the Operation's own path).
    """
    body = reply.body if isinstance(reply.body, dict) else {}
    status_url = body.get("statusUrl") or reply.headers.get("Location")
    op_id: object = reply.headers.get("Operation-Id")
    if not op_id and isinstance(status_url, str):
        op_id = status_url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    if not op_id:
        raise PermanentError(reply.status, None, "202 without Operation-Id or statusUrl")
    if not is_operation_id(op_id):
        raise PermanentError(reply.status, None, "202 naming an Operation id of no known shape")
    assert isinstance(op_id, str)
    own = operation_path(product, op_id)
    if not (isinstance(status_url, str) and status_url.split("?", 1)[0].endswith(own)):
        status_url = own
    return Accepted(op_id, status_url, parse_retry_after(reply.headers.get("Retry-After")))


def poll_floor(poll_interval: float) -> float:
    """The shortest wait before a poll: a quarter of ``poll_interval``, and 0.25 s at least."""
    return max(MIN_POLL_WAIT, poll_interval / 4)


def _failure_detail(body: dict[str, Any]) -> tuple[int | None, str]:
    error = body.get("error")
    if not isinstance(error, dict):
        return None, "no error detail"
    code = error.get("code", error.get("status"))
    text = error.get("detail") or error.get("title") or ""
    return (code if isinstance(code, int) else None), str(text)[:200]


async def follow(
    requester: Requester,
    product: Product,
    accepted: Accepted,
    *,
    poll_interval: float,
    give_up_after: float,
    clock: Clock = MONOTONIC,
) -> None:
    """Poll until COMPLETED (return) or FAILED/CANCELLED/timeout (raise OperationFailed)."""
    deadline = clock.now() + give_up_after
    floor = poll_floor(poll_interval)
    wait = poll_interval if accepted.retry_after is None else max(floor, accepted.retry_after)
    last = OperationStatus.PENDING.value
    while True:
        remaining = deadline - clock.now()
        if remaining <= 0:
            raise OperationFailed(
                accepted.operation_id, "TIMEOUT", f"still {last} after {give_up_after:g} s"
            )
        await clock.sleep(min(wait, remaining))
        reply = await requester.send("GET", product, accepted.status_url)
        body = reply.body if isinstance(reply.body, dict) else {}
        last = str(body.get("status", "UNKNOWN"))
        if last == OperationStatus.COMPLETED:
            return
        if last in (OperationStatus.FAILED, OperationStatus.CANCELLED):
            code, detail = _failure_detail(body)
            raise OperationFailed(accepted.operation_id, last, detail, code)
        hinted = parse_retry_after(reply.headers.get("Retry-After"))
        wait = poll_interval if hinted is None else max(floor, hinted)
