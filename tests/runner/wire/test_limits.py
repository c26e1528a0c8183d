"""The limits and the pauses of a 429, in process on a fake clock: which scopes a 429 pauses,
that nothing of a paused scope is granted before its pause ends (on entry and at the last step
before sending), the spacing after a pause, and ``max_pause``.

The HTTP-level promise (the emulator's ``sent_during_pause`` is 0) is test_pause_at_send.py's.
"""

from __future__ import annotations

import itertools
import random

import anyio
import pytest

from runner.clock import FakeClock
from runner.errors import PausedTooLong
from runner.kinds.base import Product
from runner.values import ProductLimit, Scope
from runner.wire.adaptive import AdaptiveSettings
from runner.wire.backoff import Backoff
from runner.wire.limits import Limits
from runner.wire.pauses import ACCOUNT, decide, pause_length

KEY = Scope("conversation", "CH" + "2" * 32)
OTHER = Scope("conversation", "CH" + "3" * 32)
CONV = Product.CONVERSATIONS
UNPACED = AdaptiveSettings(initial=1e6)  # past `unbounded`: the controllers pace nothing


def limits_on(clock: FakeClock, *, concurrency: int = 4, rate: float = 1000.0,
              max_pause: float = 900.0) -> Limits:
    """Limits on ``clock``: ``concurrency`` in flight, conversations paced at ``rate``, and no
    adaptive pacing of the products (its slow start is test_adaptive.py's)."""
    return Limits(concurrency=concurrency, per_conversation_rate=rate, per_service_rate=30.0,
                  products={p: ProductLimit() for p in Product}, rng=random.Random(1),
                  clock=clock, max_pause=max_pause, adaptive=UNPACED)


async def granted_at(clock: FakeClock, limits: Limits,
                     requests: list[tuple[Product, Scope | None]], step: float = 0.01
                     ) -> list[float]:
    """The clock times at which ``requests`` (product, scope), started together, are granted,
    moving the clock on by ``step`` each time every task is blocked."""
    result: dict[int, float] = {}

    async def request(n: int, product: Product, key: Scope | None) -> None:
        result[n] = await limits.acquire(product, key)
        limits.release(product)

    async with anyio.create_task_group() as tg:
        for n, (product, key) in enumerate(requests):
            tg.start_soon(request, n, product, key)
        while len(result) < len(requests):
            await anyio.wait_all_tasks_blocked()
            if len(result) < len(requests):
                clock.advance(step)
    return [result[n] for n in range(len(requests))]


# --- who a 429 pauses, and for how long ----------------------------------------------------------


def test_a_pause_is_retry_after_first_then_backoff_and_always_jittered() -> None:
    """The pause is the 429's Retry-After when it has one, else backoff by the 429s so far; the
    end is jittered by up to a fifth of it (50 ms at least)."""
    backoff = Backoff(0.5, 30.0)
    assert pause_length(7.0, 3, backoff, random.Random(1)) == 7.0
    assert 0.0 <= pause_length(None, 3, backoff, random.Random(1)) <= 4.0
    pause = decide(CONV, KEY, 10.0, now=100.0, rng=random.Random(1), about_concurrency=False)
    assert 110.0 <= pause.until <= 112.0


@pytest.mark.parametrize(
    ("key", "about_concurrency", "name"),
    [
        (None, False, "product conversations"),
        (KEY, False, f"conversation {KEY.id}"),
        (KEY, True, ACCOUNT),
    ],
)
def test_a_429_pauses_every_scope_it_may_have_come_from(
    key: Scope | None, about_concurrency: bool, name: str
) -> None:
    """The account for a concurrency 429, else the product, and a scoped request's scope."""
    pause = decide(CONV, key, 1.0, now=0.0, rng=random.Random(1),
                   about_concurrency=about_concurrency)
    assert pause.account is about_concurrency and pause.scope == key and pause.name() == name


async def test_a_scoped_429_pauses_its_scope_and_its_product() -> None:
    """Twilio answers a conversation's limit and a product's with the same 20429: after a 429
    of a message delete, neither that conversation, nor another one, nor a listing of the
    product is granted before the pause ends; another product is."""
    clock = FakeClock()
    limits = limits_on(clock)
    (sent_at,) = await granted_at(clock, limits, [(CONV, KEY)])
    limits.throttled(CONV, KEY, 0.3, sent_at=sent_at)
    paused_at = clock.now()
    memory, *paused = await granted_at(
        clock, limits, [(Product.MEMORY, None), (CONV, KEY), (CONV, OTHER), (CONV, None)]
    )
    assert memory == paused_at
    assert min(paused) - paused_at >= 0.3, paused


async def test_a_concurrency_429_pauses_the_account() -> None:
    """A 429 reporting more requests in flight than any answer did pauses every product."""
    clock = FakeClock()
    limits = limits_on(clock)
    limits.accepted(CONV, 10)
    limits.throttled(CONV, None, 0.5, concurrent=40)
    paused_at = clock.now()
    granted = await granted_at(clock, limits, [(Product.MEMORY, None), (CONV, OTHER)])
    assert min(granted) - paused_at >= 0.5


# --- the re-check before sending ---------------------------------------------------------------


async def test_a_request_waiting_for_a_slot_when_a_429_arrives_waits_out_the_pause() -> None:
    """A request that passed every other limit and waits for an in-flight slot does not leave
    into a pause that began while it waited (the old Limits checked pauses only on entry)."""
    clock = FakeClock()
    limits = limits_on(clock, concurrency=1)
    granted: list[float] = []

    async def second() -> None:
        granted.append(await limits.acquire(CONV, KEY))
        limits.release(CONV)

    sent_at = await limits.acquire(CONV, None)
    async with anyio.create_task_group() as tg:
        tg.start_soon(second)
        await anyio.wait_all_tasks_blocked()  # the second request waits for the slot
        limits.throttled(CONV, None, 0.3, sent_at=sent_at)
        paused_at = clock.now()
        limits.release(CONV)
        await anyio.wait_all_tasks_blocked()
        assert not granted
        while not granted:
            clock.advance(0.01)
            await anyio.wait_all_tasks_blocked()
    assert granted[0] - paused_at >= 0.3


async def test_requests_of_one_conversation_keep_their_spacing_after_a_pause() -> None:
    """Requests of one conversation that were queued when it was paused leave one pacing
    interval apart after the pause, not bunched at its end."""
    clock = FakeClock()
    limits = limits_on(clock, concurrency=1, rate=10.0)  # 0.1 s apart
    granted: list[float] = []

    async def send() -> None:
        granted.append(await limits.acquire(CONV, KEY))
        limits.release(CONV)

    sent_at = await limits.acquire(CONV, None)
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(send)
        await anyio.wait_all_tasks_blocked()
        limits.throttled(CONV, KEY, 0.2, sent_at=sent_at)
        paused_at = clock.now()
        limits.release(CONV)
        while len(granted) < 3:
            await anyio.wait_all_tasks_blocked()
            clock.advance(0.005)
    granted.sort()
    assert granted[0] - paused_at >= 0.2
    gaps = [b - a for a, b in itertools.pairwise(granted)]
    assert min(gaps) >= 0.099, gaps


async def test_a_pause_beyond_max_pause_is_refused_not_slept() -> None:
    """A 429 asking for more than max_pause raises PausedTooLong at once, and so does every
    request that would have waited for that pause: the clock never moves."""
    clock = FakeClock()
    limits = limits_on(clock)
    with pytest.raises(PausedTooLong) as info:
        limits.throttled(Product.MEMORY, None, 1e9)
    assert info.value.scope == "product memory" and info.value.seconds == 1e9
    with pytest.raises(PausedTooLong):
        await limits.acquire(Product.MEMORY, None)
    with pytest.raises(PausedTooLong, match="conversation CH2"):
        limits.throttled(CONV, KEY, 1e9)
    with pytest.raises(PausedTooLong):
        await limits.acquire(CONV, KEY)
    assert clock.sleepers == 0
