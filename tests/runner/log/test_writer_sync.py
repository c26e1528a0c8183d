"""When the checkpoint writer fsyncs: at once for a write-ahead line someone waits on (a lazy
group commit: write-ahead lines nobody waits for yet share the next fsync), within
``SYNC_EVERY`` for outcome lines alone (written and flushed meanwhile), and always at close."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio

from runner.clock import FakeClock
from runner.engine.scheduler import Work, on_disk
from runner.engine.workqueue import WorkQueue
from runner.kinds.base import Target
from runner.kinds.registry import by_name
from runner.log.lock import open_log
from runner.log.records import State, target_record
from runner.log.replay import iter_target_lines
from runner.log.writer import SYNC_EVERY, CheckpointWriter
from tests.runner.log.test_checkpoint import HEADER


def message(n: int) -> Target:
    return Target(by_name("message"), f"IM{n:032x}", f"CH{n // 10:032x}")


@asynccontextmanager
async def running_writer(path: Path, clock: FakeClock) -> AsyncIterator[CheckpointWriter]:
    """A writer running on a new log at ``path``; closed (drained, fsynced) on the way out."""
    with open_log(path, HEADER) as handle:
        writer = CheckpointWriter(path, HEADER.started_at, clock)
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer.run, handle)
            yield writer
            writer.close()


async def test_outcomes_are_written_at_once_and_fsynced_with_the_next_durable_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "run.jsonl"
    clock = FakeClock()
    async with running_writer(path, clock) as writer:
        writer.put(target_record(message(1), State.DELETED, ts=0))
        await anyio.wait_all_tasks_blocked()
        # On the file (a killed process leaves it), not yet fsynced.
        assert [r.target for r in iter_target_lines(path)] == [message(1)]
        assert (writer.records_written, writer.syncs) == (1, 0)
        before = writer.synced

        durable = writer.put_durable(target_record(message(2), State.REQUESTED))
        await durable.wait()
        # The write-ahead line is fsynced before anyone acts on it, the outcome with it.
        assert writer.syncs == 1
        assert writer.synced == path.stat().st_size > before

        # Outcomes alone again: fsynced once SYNC_EVERY has passed since the last fsync.
        writer.put(target_record(message(2), State.DELETED, ts=0))
        await anyio.wait_all_tasks_blocked()
        assert (writer.records_written, writer.syncs) == (3, 1)
        clock.advance(SYNC_EVERY)
        writer.put(target_record(message(3), State.DELETED, ts=0))
        writer.close()
    # That batch was fsynced on its own (SYNC_EVERY had passed), and the close fsyncs again.
    assert writer.syncs == 3
    assert writer.synced == path.stat().st_size
    assert [r.state for r in iter_target_lines(path)] == [
        State.DELETED,
        State.REQUESTED,
        State.DELETED,
        State.DELETED,
    ]


async def test_write_ahead_lines_nobody_waits_for_share_one_fsync(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    async with running_writer(path, FakeClock()) as writer:
        pages = []
        for n in range(3):  # three pages of discovery, each queued in its own batch
            pages.append(writer.put_durable(target_record(message(n), State.REQUESTED)))
            await anyio.wait_all_tasks_blocked()
        # Written (a killed process leaves them), not fsynced, nobody told they are durable.
        assert [r.target for r in iter_target_lines(path)] == [message(n) for n in range(3)]
        assert writer.syncs == 0 and not any(page.is_set() for page in pages)

        # A worker waits for the second page's line: one fsync, and it covers all three.
        await pages[1].wait()
        assert writer.syncs == 1 and all(page.is_set() for page in pages)
        assert writer.synced == path.stat().st_size

        # A line queued while nobody waits is fsynced for the first one who does.
        later = writer.put_durable(target_record(message(3), State.REQUESTED))
        await anyio.wait_all_tasks_blocked()
        assert writer.syncs == 1 and not later.is_set()
        # Waiting on the promise itself asks for the fsync: no timed one comes (the clock
        # stands still), so a promise that only waited would hang here.
        with anyio.fail_after(10):
            await later.wait()
        assert writer.syncs == 2 and later.is_set()
    assert writer.syncs == 3  # the close's own


async def test_a_worker_takes_work_on_disk_before_a_new_page_and_asks_for_its_fsync(
    tmp_path: Path,
) -> None:
    """A page queued after the last fsync is passed over while an older page on disk has work
    (no worker sits out an fsync that others need not wait for), and being passed over asks
    for its fsync at once: with the clock standing still no timed one would come."""
    path = tmp_path / "run.jsonl"
    async with running_writer(path, FakeClock()) as writer:
        queue: WorkQueue[Work] = WorkQueue(
            capacity=100, low=10, delay=lambda work: 0.0 if on_disk(work) else math.inf
        )
        old = [message(n) for n in range(3)]
        kept = writer.put_durable(target_record(old[0], State.REQUESTED))
        await kept.wait()
        await queue.put_many([(target, kept) for target in old])
        new = [message(n) for n in range(3, 5)]
        pending = writer.put_durable(target_record(new[0], State.REQUESTED))
        await queue.put_many([(target, pending) for target in new])
        await anyio.wait_all_tasks_blocked()
        assert writer.syncs == 1 and not pending.is_set()

        assert (await queue.get())[0] == old[0]
        assert (await queue.get())[0] == old[1]  # the new page was next in turn: passed over
        with anyio.fail_after(10):
            # The promise's own event: Durable.wait() would ask for the fsync itself.
            await pending._event.wait()
        assert writer.syncs == 2
        got = [(await queue.get())[0] for _ in range(3)]
        assert got == [new[0], old[2], new[1]]  # in turn again once on disk
