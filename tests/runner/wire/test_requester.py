"""The requester against the emulator over HTTP: a 429 is retried after its Retry-After (backoff
when it has none), faults are retried up to ``max_attempts``, 429s up to ``max_elapsed``, and a
refusal is not retried. The ledger's server-side times judge each wait."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from runner.emulator import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN
from runner.errors import PermanentError, RateLimited, TransientError, Withheld
from runner.kinds.base import Product
from runner.values import ProductLimit, RetryPolicy
from runner.wire.adaptive import AdaptiveSettings
from runner.wire.client import TwilioClient
from runner.wire.limits import Limits
from runner.wire.requester import Requester

LIST = "/v1/Conversations"
CONV = Product.CONVERSATIONS


@asynccontextmanager
async def requester_for(
    emu: Any,
    policy: RetryPolicy,
    concurrency: int = 4,
    *,
    connections: int = 100,
    adaptive: AdaptiveSettings | None = None,
) -> AsyncIterator[Requester]:
    """A requester of ``policy`` aimed at ``emu``, with the run's default limits."""
    async with TwilioClient(
        {p: emu.url for p in Product}, (DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN),
        connections=connections,
    ) as client:
        limits = Limits(concurrency=concurrency, per_conversation_rate=30.0, per_service_rate=30.0,
                        products={p: ProductLimit() for p in Product}, rng=random.Random(1),
                        max_pause=policy.max_pause, adaptive=adaptive)
        yield Requester(client, limits, policy, random.Random(1))


def statuses(ledger: dict[str, Any]) -> list[int]:
    return [r["status"] for r in ledger["requests"]]


@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_a_429_is_retried_after_its_retry_after(start_emulator: Any, form: str) -> None:
    """A 429 asking for a second (as seconds or an HTTP-date) is retried no sooner, and the
    retry's answer is the send's."""
    async with start_emulator(product_rate={"conversations": (1.0, 1)}, retry_after=form,
                              retry_after_s=1.0) as emu:
        async with requester_for(emu, RetryPolicy()) as requester:
            assert (await requester.send("GET", CONV, LIST)).status == 200
            assert (await requester.send("GET", CONV, LIST)).status == 200
            assert requester.tally.throttled >= 1
        ledger = await emu.ledger()
    requests = ledger["requests"]
    assert statuses(ledger)[:2] == [200, 429] and statuses(ledger)[-1] == 200
    assert requests[2]["time"] - requests[1]["time"] >= 0.95  # the HTTP-date is whole seconds
    assert ledger["sent_during_pause"]["product_rate"] == 0


async def test_faults_are_retried_up_to_max_attempts(start_emulator: Any) -> None:
    """A server answering 503 to everything gets exactly ``max_attempts`` requests, and the
    last fault is raised."""
    policy = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02)
    async with start_emulator(fault_503=1.0) as emu:
        async with requester_for(emu, policy) as requester:
            with pytest.raises(TransientError):
                await requester.send("GET", CONV, LIST)
            assert requester.tally.retries == 2
        assert statuses(await emu.ledger()) == [503, 503, 503]


async def test_429s_without_retry_after_are_retried_by_backoff_until_max_elapsed(
    start_emulator: Any,
) -> None:
    """429s without Retry-After are waited out by backoff (they are not faults: max_attempts
    does not stop them), and ``max_elapsed`` ends the retries."""
    policy = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.05, max_elapsed=0.5)
    async with start_emulator(product_rate={"conversations": (0.001, 1)},
                              retry_after="absent") as emu:
        async with requester_for(emu, policy) as requester:
            assert (await requester.send("GET", CONV, LIST)).status == 200
            with pytest.raises(RateLimited):
                await requester.send("GET", CONV, LIST)
        answers = statuses(await emu.ledger())
    assert answers[0] == 200 and set(answers[1:]) == {429}
    assert len(answers) > 1 + policy.max_attempts


async def test_a_refusal_is_not_retried(start_emulator: Any) -> None:
    """A 404 is an answer: raised at once, one request."""
    async with start_emulator() as emu:
        async with requester_for(emu, RetryPolicy()) as requester:
            with pytest.raises(PermanentError):
                await requester.send("GET", CONV, "/v1/Conversations/CH" + "0" * 32)
        assert statuses(await emu.ledger()) == [404]


async def test_a_slow_start_times_the_round_trips_of_real_answers(start_emulator: Any) -> None:
    """Each answer the requester gets tells the product's controller how long its round trip
    took (from the moment the limits let it go), which its slow start doubles by (issue 16):
    over HTTP, not only on a fake clock. With the time unknown it would double every 0.2 s
    whatever the server."""
    async with start_emulator() as emu:
        async with requester_for(emu, RetryPolicy()) as requester:
            control = requester.limits.controllers[CONV]
            assert control._rtt is None
            for _ in range(3):
                assert (await requester.send("GET", CONV, LIST)).status == 200
            assert control._rtt is not None and 0.0 < control._rtt < 10.0
        assert len((await emu.ledger())["requests"]) == 3


async def test_a_request_waiting_for_the_slot_of_a_429_is_not_sent_into_its_pause(
    start_emulator: Any,
) -> None:
    """A request's slot is given back as soon as its reply is whole, before its sender has read
    it; a 429 there must still pause the request that waits for that slot. One slot, every
    answer 0.3 s late: the second request waits for the slot while the first is answered 429
    (Retry-After 1 s), and reaches the emulator no sooner than 1 s after that 429 was sent
    (the emulator's clock judges; it fails when the slot wakes its waiter before the 429's
    sender has run)."""
    latency = 0.3
    async with start_emulator(product_rate={"conversations": (1.0, 1)}, retry_after="seconds",
                              retry_after_s=1.0, latency_median_s=latency,
                              latency_p99_s=latency) as emu:
        async with requester_for(emu, RetryPolicy(), concurrency=1) as requester:
            assert (await requester.send("GET", CONV, LIST)).status == 200  # the burst's token
            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    for _ in range(2):
                        tg.start_soon(requester.send, "GET", CONV, LIST)
        ledger = await emu.ledger()
    requests = ledger["requests"]  # each timed when answered, `latency` after it arrived
    assert [r["status"] for r in requests[:2]] == [200, 429]
    throttled_at = requests[1]["time"]
    assert all(r["time"] - latency - throttled_at >= 0.95 for r in requests[2:])
    assert [r["status"] for r in requests].count(200) == 3


async def test_a_hold_that_comes_while_a_delete_waits_for_a_connection_holds_it(
    start_emulator: Any,
) -> None:
    """A DELETE its limits let go, waiting for a free connection when a hold comes to cover its
    target, is not sent once the connection is free: Withheld, and the emulator never sees it.

    One connection, two in-flight slots: the second DELETE is let go (no hold yet) and waits for
    the first's connection; the hold here is "the server has answered a request", true by the
    time that connection is free (it was sent before, by the ledger's count)."""
    async with start_emulator() as emu:
        first, second = (await emu.resources("message"))[:2]
        paths = [
            f"/v1/Services/{m['service_sid']}/Conversations/{m['conversation_sid']}"
            f"/Messages/{m['sid']}"
            for m in (first, second)
        ]
        # No pace to learn first: both DELETEs are let go at once.
        adaptive = AdaptiveSettings(initial=AdaptiveSettings().unbounded)
        async with requester_for(emu, RetryPolicy(), concurrency=2, connections=1,
                                 adaptive=adaptive) as requester:
            held: list[bool] = []
            holds: list[bool] = []  # what the hold said each time it was asked

            def hold() -> bool:
                holds.append(emu.requests() > 0)
                return holds[-1]

            async def delete(path: str, withhold: Any) -> None:
                try:
                    await requester.send("DELETE", CONV, path, withhold=withhold)
                except Withheld:
                    held.append(True)

            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(delete, paths[0], None)  # takes the one connection
                    tg.start_soon(delete, paths[1], hold)
        ledger = await emu.ledger()
        left = {m["sid"] for m in await emu.resources("message")}
    assert held == [True]
    assert holds.count(True) == 1  # a hold counts what it holds: asked again, it would count twice
    assert [(r["method"], r["path"]) for r in ledger["requests"]] == [("DELETE", paths[0])]
    assert first["sid"] not in left and second["sid"] in left
    assert requester.tally.requests["DELETE"] == 1
