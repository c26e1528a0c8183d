"""The two hand-off primitives of the per-target path: the in-flight cap and the work queue."""

from __future__ import annotations

import math
from collections import Counter

import anyio
import pytest

from runner.clock import FakeClock
from runner.engine.workqueue import WorkQueue
from runner.kinds.base import Product
from runner.values import Scope
from runner.wire.slots import Slots
from tests.runner.wire.test_limits import limits_on

CONV = Product.CONVERSATIONS


async def test_slots_cap_what_is_held_and_serve_waiters_in_order() -> None:
    """No more than the total are held at once, and freed slots go to waiters in order."""
    slots = Slots(2)
    await slots.acquire()
    await slots.acquire()
    order: list[int] = []

    async def wait(n: int) -> None:
        await slots.acquire()
        order.append(n)

    async with anyio.create_task_group() as tg:
        for n in range(3):
            tg.start_soon(wait, n)
            await anyio.wait_all_tasks_blocked()  # queue them in a known order
        assert order == [] and slots.used == 2
        slots.release()
        await anyio.wait_all_tasks_blocked()
        assert order == [0]
        slots.release()
        slots.release()
        await anyio.wait_all_tasks_blocked()
        assert order == [0, 1, 2]
    assert slots.used == 2


async def test_slots_lowered_cap_applies_as_holders_finish_and_regrows() -> None:
    """A lowered cap admits nobody until holders drop below it; raising it wakes a waiter."""
    slots = Slots(3)
    for _ in range(3):
        await slots.acquire()
    slots.total = 1
    got = anyio.Event()

    async def wait() -> None:
        await slots.acquire()
        got.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        slots.release()
        slots.release()
        await anyio.wait_all_tasks_blocked()
        assert not got.is_set()  # one still held, and the cap is one
        slots.total = 2
        await got.wait()
    assert slots.used == 2


async def test_a_cancelled_waiter_neither_keeps_nor_loses_a_slot() -> None:
    """A waiter cancelled in the queue leaves the count as it was: nothing leaked, nothing lost."""
    slots = Slots(1)
    await slots.acquire()
    with anyio.move_on_after(0.02):
        await slots.acquire()
    slots.release()
    assert slots.used == 0
    await slots.acquire()  # the slot is free again, not leaked to the cancelled waiter
    assert slots.used == 1


async def test_queue_takes_from_every_queued_page_in_turn_and_ends() -> None:
    """Items come one from each queued page in turn, and get() ends once closed and empty."""
    queue: WorkQueue[str] = WorkQueue(capacity=100, low=10)
    await queue.put_many(["a1", "a2", "a3"])
    await queue.put_many(["b1", "b2"])
    await queue.put_many(["c1"])
    queue.close()
    got = []
    with pytest.raises(anyio.EndOfStream):
        while True:
            got.append(await queue.get())
    # One conversation's page must not hold every worker behind its pace.
    assert got == ["a1", "b1", "c1", "a2", "b2", "a3"]


async def test_queue_passes_over_pages_not_ready_while_another_is() -> None:
    """A page whose next item would wait is skipped while another page has one that would not,
    and taken from in turn again once it would not; when every one would wait, the item that
    waits least is taken (the first in turn of those that wait as little)."""
    delay = {"a": 0.0, "b": math.inf, "c": 0.0}
    queue: WorkQueue[str] = WorkQueue(capacity=100, low=10, delay=lambda item: delay[item[0]])
    await queue.put_many(["a1", "a2", "a3", "a4"])
    await queue.put_many(["b1", "b2", "b3"])
    await queue.put_many(["c1", "c2", "c3"])
    assert [await queue.get() for _ in range(3)] == ["a1", "c1", "a2"]
    delay["b"] = 0.0
    assert [await queue.get() for _ in range(3)] == ["b1", "c2", "a3"]
    # Every page would wait: the least wait is taken, then the first in turn of equal waits.
    delay |= {"a": 0.5, "b": 0.2, "c": 0.9}
    assert await queue.get() == "b2"
    delay |= {"a": 0.3, "b": 0.3, "c": 0.3}
    assert await queue.get() == "c3"  # the order in turn is now c, a, b
    assert await queue.get() == "a4"
    delay["b"] = math.inf
    # Only b is left, and it would wait: it is taken all the same (its taker waits for it).
    assert await queue.get() == "b3"
    assert len(queue) == 0


async def test_queue_waits_for_a_long_page_to_run_low_and_for_room() -> None:
    """A long page holds its producer until low is left; a full queue takes no new page."""
    queue: WorkQueue[int] = WorkQueue(capacity=4, low=2)
    returned = anyio.Event()

    async def produce() -> None:
        await queue.put_many(range(5))
        returned.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(produce)
        await anyio.wait_all_tasks_blocked()
        assert len(queue) == 5 and not returned.is_set()  # queued whole, producer held
        assert [await queue.get() for _ in range(2)] == [0, 1]
        await anyio.wait_all_tasks_blocked()
        assert not returned.is_set()  # 3 left, more than low
        assert await queue.get() == 2
        with anyio.fail_after(1):
            await returned.wait()  # 2 left: the producer may prepare its next page
    await queue.put_many([5])
    await queue.put_many([6])  # short pages return at once while there is room
    assert len(queue) == 4
    with anyio.move_on_after(0.05) as scope:
        await queue.put_many([7])  # full
    assert scope.cancelled_caught
    assert [await queue.get() for _ in range(4)] == [3, 5, 6, 4]
    assert len(queue) == 0


async def test_a_producer_waiting_for_room_wakes_only_below_room() -> None:
    """With ``room`` under ``capacity``, a producer held by a full queue is let go once fewer
    than ``room`` items are left, not as soon as one is taken: it then queues several pages in
    one go (whose write-ahead lines share one fsync)."""
    queue: WorkQueue[int] = WorkQueue(capacity=4, low=2, room=2)
    for n in range(4):
        await queue.put_many([n])
    returned = anyio.Event()

    async def produce() -> None:
        await queue.put_many([4])
        returned.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(produce)
        await anyio.wait_all_tasks_blocked()
        assert await queue.get() == 0
        assert await queue.get() == 1
        await anyio.wait_all_tasks_blocked()
        assert not returned.is_set()  # 2 left: room for a page, but not under `room` yet
        assert await queue.get() == 2
        with anyio.fail_after(1):
            await returned.wait()
    assert [await queue.get() for _ in range(2)] == [3, 4]


async def test_a_waiter_cancelled_before_a_release_leaves_the_slot_free() -> None:
    """A waiter whose task is cancelled just before a slot is freed (and before it runs again)
    neither takes the slot nor loses it: the next caller gets it."""
    slots = Slots(1)
    await slots.acquire()
    scope = anyio.CancelScope()

    async def waiter() -> None:
        with scope:
            await slots.acquire()
            pytest.fail("a cancelled waiter got through")  # pragma: no cover

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        scope.cancel()
        slots.release()  # meets the cancelled waiter first: it takes nothing
    assert slots.used == 0
    assert slots.take()


async def test_workers_choosing_by_delay_keep_every_scope_at_its_rate() -> None:
    """Workers that take the item its scope's pace lets go soonest keep every Service at its
    30/s, however many pages each has queued. Taken by page in turn, the three of a Service
    with three pages drew three workers of four into its booked slots, and the one with one
    page ran at a third of its rate (10/s). In process on a fake clock, 1 ms at a time."""
    clock = FakeClock()
    limits = limits_on(clock)
    busy, quiet = Scope("service", "IS" + "1" * 32), Scope("service", "IS" + "2" * 32)
    queue: WorkQueue[Scope] = WorkQueue(
        capacity=1000, low=100, delay=lambda scope: limits.delay(CONV, scope)
    )
    for scope in (busy, busy, busy, quiet):
        await queue.put_many([scope] * 60)
    sent: Counter[Scope] = Counter()
    start = clock.now()

    async def worker() -> None:
        while True:
            scope = await queue.get()
            granted = await limits.acquire(CONV, scope)
            limits.release(CONV)
            if granted < start + 1.0:
                sent[scope] += 1

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(worker)
        while clock.now() < start + 1.0:
            await anyio.wait_all_tasks_blocked()
            clock.advance(0.001)
        tg.cancel_scope.cancel()
    assert sent[busy] == sent[quiet] == 30
