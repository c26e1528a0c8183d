"""The one clock of a run: what every wait reads and sleeps on, injected so tests can drive it.

Monotonic seconds of the event loop (asyncio's ``loop.time()`` is ``time.monotonic()``), read
directly: ``anyio.current_time()`` costs a backend lookup on every call, and the limits read the
clock several times per request. :class:`FakeClock` stands still until a test moves it, so a
test of a pause or a spacing orders its steps by events, not by real sleeps.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol

import anyio
import anyio.lowlevel

__all__ = ["MONOTONIC", "Clock", "FakeClock", "MonotonicClock"]


class Clock(Protocol):
    """Seconds on a monotonic scale, and sleeping on that scale."""

    def now(self) -> float:
        """The time now."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return ``seconds`` from now (at once, after a checkpoint, when 0 or less)."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once :meth:`now` has reached ``deadline``."""
        ...


class MonotonicClock:
    """The event loop's clock: :func:`time.monotonic` and :func:`asyncio.sleep`.

    asyncio's own sleep, not :func:`anyio.sleep`: bulkops runs on anyio's asyncio backend only
    (see runner.app.loop), where anyio.sleep is asyncio.sleep behind a backend lookup, paid by
    every pacing wait (an anyio cancel scope cancels either alike)."""

    now = staticmethod(time.monotonic)

    # A deadline the caller found ahead may have passed by the time it is read again here (a
    # busy machine): anyio.sleep refused the negative delay (ValueError, an internal error, exit
    # 8, out of Limits._wait_pauses). Past is now.
    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds if seconds > 0.0 else 0.0)

    async def sleep_until(self, deadline: float) -> None:
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))


MONOTONIC = MonotonicClock()


class FakeClock:
    """A clock that moves only when a test calls :meth:`advance`; sleepers wake in order.

    Wait for the sleepers (:meth:`until_sleeping`, or ``anyio.wait_all_tasks_blocked()`` when
    nothing else is in flight), then advance.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._order = itertools.count()
        self._fell_asleep: anyio.Event | None = None  # made on first use: it needs the loop

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self._now + seconds)

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self._now:
            await anyio.lowlevel.checkpoint()
            return
        woken = anyio.Event()
        entry = (deadline, next(self._order), woken)
        heapq.heappush(self._sleepers, entry)
        if self._fell_asleep is not None:
            self._fell_asleep.set()
            self._fell_asleep = None
        try:
            await woken.wait()
        finally:
            if not woken.is_set():  # cancelled: no longer a sleeper (sleepers counts them)
                self._sleepers.remove(entry)
                heapq.heapify(self._sleepers)

    def advance(self, seconds: float) -> None:
        """Move the time on by ``seconds`` and wake every sleeper whose deadline has come."""
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            heapq.heappop(self._sleepers)[2].set()

    @property
    def sleepers(self) -> int:
        """How many tasks are sleeping on this clock."""
        return len(self._sleepers)

    async def until_sleeping(self, count: int) -> None:
        """Return once ``count`` tasks (or more) sleep on this clock.

        An event, not a poll: where tasks also wait on sockets, "every task blocked" (what
        ``wait_all_tasks_blocked`` sees) may just mean a reply is on its way, but the sleepers
        a test expects are a fact it can wait for before it moves the time on.
        """
        while len(self._sleepers) < count:
            if self._fell_asleep is None:
                self._fell_asleep = anyio.Event()
            await self._fell_asleep.wait()
