"""An in-flight cap whose size can change while requests hold it.

anyio's CapacityLimiter yields to the event loop twice on every acquisition, contended or not,
and was the largest single cost of bulkops' per-request path in the ``overhead`` profile. A
free slot is taken here without yielding; waiters queue in order and are woken one per freed
slot, so a lowered cap (Twilio's concurrency 429) takes effect as requests finish.

A waiter waits on a bare asyncio future (bulkops runs on anyio's asyncio backend only, see
runner.app.loop): an anyio Event costs about ten times as much to make, and where the cap is
the bound (every request waits for a slot) that was a few percent of the client's CPU. An anyio
cancel scope cancels the waiting task, and with it the future.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Slots:
    """``total`` requests at once; FIFO for the rest."""

    def __init__(self, total: int) -> None:
        if total < 1:
            raise ValueError("Slots needs a total of at least 1")
        self._total = total
        self._used = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def total(self) -> int:
        """How many may be held at once."""
        return self._total

    @total.setter
    def total(self, value: int) -> None:
        self._total = max(1, value)
        self._wake()

    @property
    def used(self) -> int:
        """How many are held now."""
        return self._used

    def take(self) -> bool:
        """Take a free slot now (no waiter is ahead); False, nothing taken, when none is."""
        if self._used < self._total and not self._waiters:
            self._used += 1
            return True
        return False

    async def acquire(self) -> None:
        """Take a slot, waiting behind earlier callers when none is free."""
        if self.take():
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                self.release()  # handed a slot while being cancelled: pass it on
            elif turn in self._waiters:  # (_wake drops a cancelled one it meets first)
                self._waiters.remove(turn)
            raise

    def release(self) -> None:
        """Give a slot back (to the next waiter, when the cap allows one)."""
        self._used -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._used < self._total:
            turn = self._waiters.popleft()
            if turn.done():
                continue  # its task was cancelled and has not run yet: it takes no slot
            self._used += 1
            turn.set_result(None)
