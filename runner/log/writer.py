"""The single writer of a checkpoint log: it appends records and group-commits them.

One task owns the file (STYLE habit 5): everyone else queues records with it (a list append, not
a stream send: at thousands of targets a second the stream's event-loop round trip per record
cost more than the record), and the writer group-commits — it writes what has arrived, then
fsyncs once in a worker thread while more records queue up. Losing the unsynced tail in a crash
is safe by construction: every delete is idempotent (v1: a repeat answers 404 → gone; v2: the
same Idempotency-Key returns the original Operation), so a target whose line was lost is simply
driven again.

Every batch is written and flushed at once (a killed process leaves it with the operating
system); an fsync is a lazy group commit. A write-ahead line (queued with
:meth:`CheckpointWriter.put_durable`) is fsynced as soon as someone waits for it or asks for it
(the :class:`Durable` it returns): a worker about to send its target's DELETE, or one that finds
its page in the work queue and takes from an older one meanwhile. Until then more lines join it,
so one fsync covers every page discovery wrote meanwhile (a fanout of 10,000 conversations
listed ahead of its workers fsynced once per page, 77 µs of system time and a thread round trip
each). Outcome lines, and write-ahead lines nobody has waited for yet, reach the disk with the
first batch ``SYNC_EVERY`` seconds after the last fsync, or at close: an fsync per batch of
outcomes was a thread round trip per event-loop pass, the largest cost of the log in the
``overhead`` profile, and bought nothing the idempotent deletes do not already give.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import anyio

from runner.clock import MONOTONIC, Clock
from runner.log.records import encode, group_records

# The longest an outcome line written waits for an fsync while the run goes on (a periodic
# snapshot covers only what is fsynced, see runner.app.snapshots).
SYNC_EVERY = 0.5


class Durable:
    """The promise that the records queued with :meth:`CheckpointWriter.put_durable` are on
    disk (fsynced). Waiting for it asks the writer for the fsync: the commit is lazy, and a
    promise nobody waits for is kept only by the next timed fsync or the close."""

    __slots__ = ("_event", "_writer")

    def __init__(self, writer: CheckpointWriter) -> None:
        self._event = anyio.Event()
        self._writer = writer

    def is_set(self) -> bool:
        """Whether the records are on disk."""
        return self._event.is_set()

    async def wait(self) -> None:
        """Return once the records are on disk, asking for the fsync if it is not done."""
        if self._event.is_set():
            return
        self._writer.want_sync()
        await self._event.wait()

    def ask(self) -> None:
        """Ask for the fsync now without waiting for it (someone will need the records soon)."""
        if not self._event.is_set():
            self._writer.want_sync()

    def keep(self) -> None:
        """The records are on disk (the writer's call, after the fsync that covered them)."""
        self._event.set()


class CheckpointWriter:
    """The single owner of a checkpoint file: appends records and group-commits them.

    Queuing a record never waits: it is a list append, so the per-target path never yields to
    the event loop for the log (measured: each yield costs about as much as the bookkeeping it
    guards). The queue stays bounded without backpressure because every producer is: discovery
    waits for the workers' queue, and each outcome follows a request that itself waited for
    its target's line to be on disk.
    """

    def __init__(self, path: Path, started: datetime, clock: Clock = MONOTONIC) -> None:
        self.path = path
        self._clock = clock
        # ``ts`` fields count from the run's start; the monotonic clock is read far more cheaply
        # than a datetime, once per outcome.
        self._origin = clock.now() - (datetime.now(UTC) - started).total_seconds()
        self._queued: list[dict[str, Any]] = []
        self._on_disk = Durable(self)  # kept once every record queued so far is fsynced
        self._wake = anyio.Event()
        self._durable = False  # a record queued since the last batch was taken waits for fsync
        # Events of write-ahead lines written but not yet fsynced, and whether someone waits.
        self._unsynced: list[Durable] = []
        self._wanted = False
        self._last_sync = clock.now()
        self._closed = False
        self.lines_written = 0
        self.records_written = 0
        self.syncs = 0
        self.synced = 0  # bytes of the file known to be on disk: its end after the last fsync
        self.error: OSError | None = None
        self.on_error: Callable[[OSError], None] = lambda _exc: None

    def seconds(self) -> int:
        """Whole seconds since the run started, for the ``ts`` field."""
        return int(self._clock.now() - self._origin)

    def put(self, record: dict[str, Any]) -> None:
        """Queue one record."""
        if self._closed:
            raise anyio.ClosedResourceError
        self._queued.append(record)
        self._wake.set()

    def put_durable(self, record: dict[str, Any]) -> Durable:
        """Queue one record; the returned :class:`Durable` is kept once it is on disk.

        The caller hands it to whoever must not act before the record is durable — a worker
        waits for a target's *requested* line before sending its DELETE, so a crash can never
        leave a deletion the log does not know was attempted. Records queued between two
        batches share one.
        """
        self.put(record)
        self._durable = True
        return self._on_disk

    def want_sync(self) -> None:
        """Someone waits for a write-ahead line: fsync what is written now, not at the timer
        (the lazy group commit's only trigger that is not time)."""
        self._wanted = True
        self._wake.set()

    def close(self) -> None:
        """No more records: the writer drains, fsyncs and returns."""
        self._closed = True
        self._wake.set()

    async def run(self, handle: BinaryIO) -> None:
        """Write records as they arrive; fsync once per batch, off the event loop.

        If the file cannot be written (disk full, file too large, I/O error), the writer keeps
        taking records but drops them, never marks one durable — so no DELETE waits on a line
        that is not on disk — and calls ``on_error`` once, for the run to stop.
        """
        while True:
            if not self._queued:
                if self._wanted and self._unsynced and self.error is None:
                    await self._fsync(handle)  # someone waits for a line already written
                    continue
                if self._closed:
                    break
                self._wanted = False
                self._wake = anyio.Event()
                await self._wake.wait()
                continue
            batch, self._queued = self._queued, []
            if self._durable:
                self._durable = False
                done, self._on_disk = self._on_disk, Durable(self)
                self._unsynced.append(done)
            if self.error is not None:
                continue
            lines = group_records(batch)
            try:
                handle.write(b"".join(encode(r) for r in lines))
                handle.flush()
            except OSError as exc:
                self.error = exc
                self.on_error(exc)
                continue
            self.lines_written += len(lines)
            self.records_written += len(batch)
            if self._wanted or self._clock.now() - self._last_sync >= SYNC_EVERY:
                await self._fsync(handle)
        if self.error is None:
            handle.flush()
            os.fsync(handle.fileno())
            self._synced(handle)
            self._release()

    async def _fsync(self, handle: BinaryIO) -> None:
        """Everything written so far onto the disk, off the event loop; then every write-ahead
        line it covers is durable."""
        self._wanted = False
        try:
            await anyio.to_thread.run_sync(os.fsync, handle.fileno())
        except OSError as exc:
            self.error = exc
            self.on_error(exc)
            return
        self._synced(handle)
        self._release()

    def _release(self) -> None:
        """Keep the promises of the write-ahead lines the last fsync covered."""
        unsynced, self._unsynced = self._unsynced, []
        for durable in unsynced:
            durable.keep()

    def _synced(self, handle: BinaryIO) -> None:
        """The file is on disk up to its end: count the fsync."""
        self.syncs += 1
        self.synced = handle.tell()
        self._last_sync = self._clock.now()
