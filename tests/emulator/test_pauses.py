"""The ledger's ``sent_during_pause``: requests that arrived in a pause a 429 asked for, counted
from the moment the client had read that 429 (its connection's next request), per scope."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import anyio
import pytest

from runner.emulator import Dataset

from .conftest import Running, auth_header, fast_settings, start

LONG = 30.0  # a pause no test outlives: every request after the 429 falls inside it


@asynccontextmanager
async def served(dataset: Dataset, **settings: Any) -> AsyncIterator[Running]:
    """An emulator with ``settings`` (spec-checked), closed afterwards."""
    server, emu = await start(fast_settings(**settings), dataset)
    try:
        yield emu
    finally:
        await server.close()
    assert emu.checker.problems == []


@asynccontextmanager
async def connection(emu: Running) -> AsyncIterator[aiohttp.ClientSession]:
    """A client with exactly one connection: its requests go out one after another on it."""
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(
        emu.url, headers=auth_header(emu.settings), connector=connector
    ) as session:
        yield session


async def status(session: aiohttp.ClientSession, method: str, path: str) -> int:
    async with session.request(method, path) as resp:
        await resp.read()
        return resp.status


def message_paths(dataset: Dataset, conv_no: int) -> list[str]:
    conv = dataset.conversations[conv_no]
    return [
        f"/v1/Services/{conv.service_sid}/Conversations/{conv.sid}/Messages/"
        f"{dataset.message_sids.sid(conv.no, i)}"
        for i in range(conv.message_count)
    ]


async def until_429(session: aiohttp.ClientSession, paths: list[str]) -> list[str]:
    """DELETE ``paths`` in order until one is answered 429; returns the ones not yet sent."""
    for n, path in enumerate(paths):
        if await status(session, "DELETE", path) == 429:
            return paths[n + 1 :]
    raise AssertionError("no 429")


def counts(emu: Running) -> dict[str, int]:
    return dict(emu.emulator.ledger.sent_during_pause)


async def test_a_client_that_ignores_retry_after_is_counted(demo: Dataset) -> None:
    """A raw client that sends on after a conversation's 429 has every later request of that
    conversation counted, and nothing else."""
    async with served(demo, conversation_aps=2.0, retry_after_s=LONG) as emu:
        async with connection(emu) as http:
            rest = await until_429(http, message_paths(demo, 0))
            for path in rest[:3]:
                await status(http, "DELETE", path)
            # Another conversation is another scope: not paused.
            await status(http, "DELETE", message_paths(demo, 1)[0])
        assert counts(emu) == {
            "conversation_aps": 3, "service_aps": 0, "product_rate": 0, "account_concurrency": 0
        }


async def test_requests_in_flight_before_the_429_was_read_are_not_counted(
    demo: Dataset,
) -> None:
    """A request on another connection that arrives after the 429 but before its client showed
    it had read it (no request yet on the 429's connection) was in flight: not counted; once
    the 429's connection is used again, every request of the scope counts."""
    async with served(demo, conversation_aps=2.0, retry_after_s=LONG) as emu:
        paths = message_paths(demo, 0)
        async with connection(emu) as first, connection(emu) as second:
            rest = await until_429(first, paths)
            await status(second, "DELETE", rest[0])
            assert counts(emu)["conversation_aps"] == 0
            await status(first, "DELETE", rest[1])
            await status(second, "DELETE", rest[2])
        assert counts(emu)["conversation_aps"] == 2


@pytest.mark.parametrize("mode", ["seconds", "http-date"])
async def test_a_product_pause_covers_every_request_of_the_product(
    demo: Dataset, mode: str
) -> None:
    """A product's 429 (Retry-After as seconds or an HTTP-date) pauses every request of that
    product, listings included, and no other product's."""
    async with served(
        demo, product_rate={"conversations": (1.0, 1)}, retry_after=mode, retry_after_s=LONG
    ) as emu:
        async with connection(emu) as http:
            assert await status(http, "GET", "/v2/Conversations") == 200
            assert await status(http, "GET", "/v2/Conversations") == 429
            await status(http, "GET", "/v1/Conversations")
            await status(http, "DELETE", message_paths(demo, 0)[0])
            assert await status(http, "GET", "/v1/ControlPlane/Stores") == 200
        assert counts(emu)["product_rate"] == 2


async def test_an_account_pause_covers_every_request(
    demo: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A concurrency 429 pauses the whole account: the next request of any product counts."""
    async with served(
        demo, account_concurrency=1, latency_median_s=0.3, latency_p99_s=0.3
    ) as emu:
        # The event of the slow request taking the account's one slot (it then holds it for
        # its latency), not a poll of the in-flight count.
        concurrency = emu.emulator.concurrency
        admit = concurrency.enter
        entered = anyio.Event()

        def enter(cap: int | None) -> bool:
            admitted = admit(cap)
            entered.set()
            return admitted

        monkeypatch.setattr(concurrency, "enter", enter)
        async with (
            connection(emu) as slow,
            connection(emu) as http,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(status, slow, "GET", "/v2/Conversations")
            await entered.wait()
            assert await status(http, "GET", "/v1/ControlPlane/Stores") == 429
            await status(http, "GET", "/v2/Conversations")
        assert counts(emu)["account_concurrency"] == 1


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param({"retry_after": "absent"}, id="no-retry-after"),
        pytest.param({"retry_after_s": 0.0}, id="retry-after-0"),
    ],
)
async def test_no_pause_asked_counts_nothing(demo: Dataset, settings: dict[str, Any]) -> None:
    """A 429 without Retry-After, or with ``Retry-After: 0``, asks for no pause: sending on is
    not counted."""
    async with served(demo, conversation_aps=2.0, **settings) as emu:
        async with connection(emu) as http:
            rest = await until_429(http, message_paths(demo, 0))
            for path in rest[:3]:
                await status(http, "DELETE", path)
        assert sum(counts(emu).values()) == 0


async def test_a_settings_change_lifts_the_pauses(demo: Dataset) -> None:
    """Changing a limit lifts the pauses asked for so far (the counts stay)."""
    async with served(demo, conversation_aps=2.0, retry_after_s=LONG) as emu:
        async with connection(emu) as http:
            rest = await until_429(http, message_paths(demo, 0))
            await status(http, "DELETE", rest[0])
            async with http.post("/_emulator/settings", json={"conversation_aps": None}) as r:
                assert r.status == 200
            await status(http, "DELETE", rest[1])
            async with http.get("/_emulator/ledger/summary") as r:
                summary = await r.json()
        assert summary["sent_during_pause"]["conversation_aps"] == 1


async def test_retry_after_s_asks_for_huge_pauses_in_both_forms(demo: Dataset) -> None:
    """``retry_after_s`` sets every 429's Retry-After: 1000000000 as seconds, and the last
    second of year 9999 as an HTTP-date when the pause would pass it."""
    limits = {"product_rate": {"conversations": (1.0, 1)}, "retry_after_s": 1e9}
    async with served(demo, **limits) as emu, connection(emu) as http:
        await status(http, "GET", "/v2/Conversations")
        async with http.get("/v2/Conversations") as r:
            assert r.status == 429 and r.headers["Retry-After"] == "1000000000"
        changes = {"retry_after": "http-date", "retry_after_s": 1e12}
        async with http.post("/_emulator/settings", json=changes) as r:
            assert r.status == 200
        async with http.get("/v2/Conversations") as r:
            assert r.status == 429
            assert r.headers["Retry-After"] == "Fri, 31 Dec 9999 23:59:59 GMT"
