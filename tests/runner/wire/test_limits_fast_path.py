"""The fast path of ``Limits.acquire`` (issue 16 §1): a request with nothing to wait for is
granted without a single event-loop round trip, and the fast path never outruns a limit — a
pause read mid-run, a conversation's spacing, the adaptive pace, the in-flight cap.

In process on a fake clock; the HTTP-level promise (nothing sent into a pause while requests go
by the fast path) is judged by the emulator's ledger at the end.
"""

from __future__ import annotations

import random
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import anyio
import pytest

from runner.clock import FakeClock
from runner.errors import ExitCode
from runner.kinds.base import Product
from runner.values import ProductLimit, Scope
from runner.wire.adaptive import AdaptiveSettings
from runner.wire.limits import Limits
from tests.runner.conftest import deleted, point_at, run_cli, successful_deletes
from tests.runner.test_run_faults import SUPPORT_SERVICE, job
from tests.runner.wire.test_limits import KEY, OTHER, UNPACED, granted_at, limits_on
from tests.runner.wire.test_pause_at_send import selected

CONV = Product.CONVERSATIONS
THIRD = Scope("conversation", "CH" + "4" * 32)


def at_once(coro: Coroutine[Any, Any, float]) -> float | None:
    """What ``coro`` returns when it finishes without yielding to the event loop once; None
    (the coroutine closed) when it would have waited."""
    try:
        coro.send(None)
    except StopIteration as done:
        return float(done.value)
    coro.close()
    return None


async def test_a_request_with_nothing_to_wait_for_never_yields() -> None:
    clock = FakeClock()
    limits = limits_on(clock, rate=10.0)
    assert at_once(limits.acquire(CONV, KEY)) == clock.now()
    assert at_once(limits.acquire(CONV, OTHER)) == clock.now()
    assert at_once(limits.acquire(Product.MEMORY, None)) == clock.now()


async def test_the_fast_path_keeps_a_conversations_spacing() -> None:
    """The second request of a conversation 0.1 s apart waits; another conversation does not."""
    clock = FakeClock()
    limits = limits_on(clock, rate=10.0)
    first = at_once(limits.acquire(CONV, KEY))
    limits.release(CONV)
    assert at_once(limits.acquire(CONV, KEY)) is None
    assert at_once(limits.acquire(CONV, OTHER)) == first
    limits.release(CONV)
    (second,) = await granted_at(clock, limits, [(CONV, KEY)])
    assert first is not None and second - first >= 0.1


async def test_the_fast_path_honours_a_pause_read_mid_run() -> None:
    """After a 429 of one conversation's request, no request of the product takes the fast
    path before the pause ends — neither that conversation nor another — and every one takes
    it again once it has."""
    clock = FakeClock()
    limits = limits_on(clock)
    sent_at = at_once(limits.acquire(CONV, KEY))
    limits.release(CONV)
    limits.throttled(CONV, KEY, 0.3, sent_at=sent_at)
    paused_at = clock.now()
    assert at_once(limits.acquire(CONV, OTHER)) is None
    assert at_once(limits.acquire(CONV, None)) is None
    granted = await granted_at(clock, limits, [(CONV, KEY), (CONV, OTHER)])
    assert min(granted) - paused_at >= 0.3
    clock.advance(1.0)
    assert at_once(limits.acquire(CONV, OTHER)) == clock.now()


async def test_the_fast_path_takes_no_slot_that_is_not_free() -> None:
    clock = FakeClock()
    limits = limits_on(clock, concurrency=1)
    assert at_once(limits.acquire(CONV, KEY)) is not None
    assert at_once(limits.acquire(CONV, OTHER)) is None  # the one slot is held
    limits.release(CONV)
    # (A third conversation: the closed request above kept its pacer turn of OTHER.)
    assert at_once(limits.acquire(CONV, THIRD)) is not None


async def test_the_fast_path_keeps_the_adaptive_pace() -> None:
    """A product paced by its controller (slow start at 100/s): the credit banked allows a few
    at once, then the next request waits for its turn instead of leaving at once."""
    clock = FakeClock()
    limits = Limits(
        concurrency=1000,
        per_conversation_rate=1e6,
        per_service_rate=1e6,
        products={p: ProductLimit() for p in Product},
        rng=random.Random(1),
        clock=clock,
        adaptive=AdaptiveSettings(initial=100.0, catch_up_s=0.05),
    )
    immediate = 0
    while at_once(limits.acquire(CONV, None)) is not None:
        immediate += 1
        assert immediate < 100, "the pace never made a request wait"
    assert immediate <= 6  # 100/s banks at most catch_up_s of it: 5 (plus the first turn)
    before = clock.now()
    (granted,) = await granted_at(clock, limits, [(CONV, None)], step=0.001)
    assert granted > before


def test_unpaced_settings_pace_nothing() -> None:
    """The controllers of :data:`UNPACED` (used above) let everything go: the tests above see
    the conversation's pacer and the pauses, not a slow start."""
    clock = FakeClock()
    limits = limits_on(clock)
    assert limits.controllers[CONV].rate() is None
    assert UNPACED.initial > UNPACED.unbounded


# --- over HTTP: the emulator's ledger -----------------------------------------------------------


@pytest.mark.parametrize("mode", ["seconds", "absent"])
async def test_requests_on_the_fast_path_send_nothing_into_a_pause(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """Conversations paced far above the server's 10/s (their pacer rarely makes a request
    wait, so most go by the fast path) and many in flight: the server's 429s pause each
    conversation and the product mid-run, and no request arrives in any of those pauses;
    every message is deleted once."""
    async with start_emulator(retry_after=mode, conversation_aps=10.0) as emu:
        point_at(monkeypatch, emu.url)
        expected = await selected(emu, "message")
        spec = job(
            workdir,
            f"service: {SUPPORT_SERVICE}\n"
            "targets:\n  - kind: messages\n    where: {conversations: all}\n"
            "retry: {base_delay: 0.05, max_delay: 0.5, max_attempts: 30}\n"
            "limits: {per_conversation_rate: 1000, concurrency: 32}\n",
        )
        with anyio.fail_after(120):
            code = await run_cli("run", spec)
        ledger = await emu.ledger()
    assert code == ExitCode.OK
    assert deleted(ledger) >= expected
    assert max(successful_deletes(ledger).values()) == 1
    assert ledger["throttled"]["conversation_aps"] > 0  # pauses were read mid-run
    assert ledger["sent_during_pause"] == dict.fromkeys(ledger["sent_during_pause"], 0)
