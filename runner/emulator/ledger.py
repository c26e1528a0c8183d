"""What happened: every request, deletion, operation, replay, throttle and fault.

Records are tuples in lists (not dicts) so a benchmark of a million deletes stays compact; the
admin API renders them as JSON on demand.
"""

from __future__ import annotations

import asyncio
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, Final, NamedTuple

from .limits import THROTTLE_KINDS
from .settings import FAULT_KINDS

KINDS: Final = (
    "message", "participant", "conversation_v1", "conversation_v2", "configuration",
    "memory_store", "user",
)


class RequestRecord(NamedTuple):
    seq: int
    method: str
    path: str
    query: str
    status: int
    idempotency_key: str | None
    time: float
    throttled_by: str | None
    webhook_enabled: str | None = None  # X-Twilio-Webhook-Enabled as sent, if it was


class DeletionRecord(NamedTuple):
    kind: str
    id: str
    conversation_sid: str | None
    service_sid: str | None
    request_seq: int
    via: str  # "request" | "cascade" | "operation"


class CascadeRecord(NamedTuple):
    """Everything a v1 conversation delete took with it, kept compactly.

    A purge of a million messages by conversation deletes would otherwise hold a million
    DeletionRecords; message SIDs are re-derived from positions when the ledger is read.
    """

    conversation_sid: str
    service_sid: str
    request_seq: int
    message_sid: Callable[[int], str]
    message_positions: array[int]
    participant_sids: tuple[str, ...]

    def expand(self) -> Iterator[DeletionRecord]:
        for position in self.message_positions:
            yield DeletionRecord("message", self.message_sid(position), self.conversation_sid,
                                 self.service_sid, self.request_seq, "cascade")
        for sid in self.participant_sids:
            yield DeletionRecord("participant", sid, self.conversation_sid, self.service_sid,
                                 self.request_seq, "cascade")


class ReplayRecord(NamedTuple):
    idempotency_key: str
    operation_id: str
    request_seq: int


class Ledger:
    """Append-only record of the emulator's activity."""

    def __init__(self) -> None:
        # Records are kept as plain tuples: the collector stops tracking a tuple of strings and
        # numbers once it has seen it, never a NamedTuple's. A million tracked records made each
        # full collection of the emulator a stall of a third of a second with 100 requests in
        # flight (issue 16: 9 of them, 1.6 s, in one fanout run).
        self._requests: list[tuple[Any, ...]] = []
        self.request_count = 0
        self._deletions: list[tuple[Any, ...] | CascadeRecord] = []
        self.replays: list[ReplayRecord] = []
        self.operation_ids: list[str] = []
        self.throttled: Counter[str] = Counter({k: 0 for k in THROTTLE_KINDS})
        # Requests that arrived in a pause their client had been asked for (see PauseBook).
        self.sent_during_pause: Counter[str] = Counter({k: 0 for k in THROTTLE_KINDS})
        self.faults: Counter[str] = Counter({k: 0 for k in FAULT_KINDS})
        self.deleted_by_kind: Counter[str] = Counter({k: 0 for k in KINDS})
        self._seq = 0
        self._moved: asyncio.Event | None = None  # made when someone waits: it needs the loop

    @property
    def arrived(self) -> int:
        """The number of the latest request to arrive (answered or still in flight): a request
        that arrives later has a greater ``seq``."""
        return self._seq

    def next_seq(self) -> int:
        """A number for a new request (1-based)."""
        self._seq += 1
        return self._seq

    def request(self, record: RequestRecord, keep: bool) -> None:
        self.request_count += 1
        if keep:
            self._requests.append(tuple(record))
        self._changed()

    def deletion(self, record: DeletionRecord) -> None:
        self._deletions.append(tuple(record))
        self.deleted_by_kind[record.kind] += 1
        self._changed()

    def cascade(self, record: CascadeRecord) -> None:
        self._deletions.append(record)
        self.deleted_by_kind["message"] += len(record.message_positions)
        self.deleted_by_kind["participant"] += len(record.participant_sids)
        self._changed()

    def _changed(self) -> None:
        if self._moved is not None:
            self._moved.set()
            self._moved = None

    async def until(self, done: Callable[[], bool]) -> None:
        """Return once ``done()`` holds, asking again after each request or deletion recorded:
        a test in the emulator's process waits for "N requests answered" as an event."""
        while not done():
            if self._moved is None:
                self._moved = asyncio.Event()
            await self._moved.wait()

    def iter_deletions(self) -> Iterator[DeletionRecord]:
        """Every deletion in order, cascades expanded."""
        for record in self._deletions:
            if isinstance(record, CascadeRecord):
                yield from record.expand()
            else:
                yield DeletionRecord._make(record)

    def requests_json(self, since: int = 0) -> list[dict[str, Any]]:
        """Request records with ``seq > since``.

        Records are appended when a response is finished, so the sequence numbers of concurrent
        requests interleave; filtering (not bisecting) keeps ``since`` exact.
        """
        return [RequestRecord._make(r)._asdict() for r in self._requests if r[0] > since]

    def deletions_json(self) -> list[dict[str, Any]]:
        return [d._asdict() for d in self.iter_deletions()]

    def replays_json(self) -> list[dict[str, Any]]:
        return [r._asdict() for r in self.replays]
