"""Injected faults: configured rates (within 20 % over 2,000 requests) and reproducible order."""

from __future__ import annotations

import time

import aiohttp
import pytest

from runner.emulator import Dataset, generate

from .conftest import auth_header, fast_settings, start

N = 2_000
RATE = 0.1


async def _run(dataset: Dataset, fault: str, path: str = "/v2/Conversations",
               method: str = "GET", seed: int = 1, n: int = N, check: bool = True
               ) -> tuple[list[str], int, int]:
    """Send n requests one at a time; returns the client-side outcomes, the ledger's count of
    the fault and the number of requests the server saw."""
    settings = fast_settings(seed=seed, slow_delay_s=0.0, **{f"fault_{fault}": RATE})
    server, emu = await start(settings, dataset, check=check)
    outcomes: list[str] = []
    try:
        # A fresh connection per request: aiohttp silently retries an idempotent request once
        # when a reused keep-alive connection drops, which would hide resets.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(emu.url, headers=auth_header(settings),
                                         connector=connector) as s:
            for i in range(n):
                conv = dataset.conversations[i % len(dataset.conversations)]
                url = path.format(i=i, sid=conv.sid)
                try:
                    async with s.request(method, url) as r:
                        raw = await r.read()
                        outcome = str(r.status)
                        if r.status == 200:
                            try:
                                r._body = raw
                                await r.json()
                            except ValueError:
                                outcome = "bad_body"
                        outcomes.append(outcome)
                except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError):
                    outcomes.append("reset")
    finally:
        await server.close()
    assert emu.checker.problems == []
    return outcomes, emu.emulator.ledger.faults[fault], emu.emulator.ledger.request_count


@pytest.mark.parametrize(("fault", "outcome"), [
    pytest.param("500", "500", id="500"),
    pytest.param("503", "503", id="503"),
    pytest.param("reset", "reset", id="reset"),
    pytest.param("bad_body", "bad_body", id="bad-body"),
])
async def test_fault_rates(demo: Dataset, fault: str, outcome: str) -> None:
    """Each fault appears at its configured rate within 20 % over 2,000 requests."""
    outcomes, counted, served = await _run(demo, fault)
    assert abs(counted / served - RATE) <= 0.2 * RATE, (counted, served)
    seen = outcomes.count(outcome)
    if fault == "reset":
        # aiohttp retries an idempotent request once when the connection drops before the
        # response, so the client sees an error only when the retry is reset too.
        assert served == N + counted - seen and seen >= 1
    else:
        assert counted == seen and served == N


async def test_20009_on_conversation_deletes() -> None:
    """Error 20009 hits v1 conversation deletes at its rate and leaves them in place.

    2,000 distinct DELETE paths would take 8 s to spec-check; the same 204 and error exchanges
    are validated in test_v1 and test_rejects_20009_body_shape.
    """
    many = generate("scale", seed=2, conversations=N, messages_per_conversation=0, services=0,
                    conversations_v2=0, configurations=0, stores=0)
    outcomes, counted, _ = await _run(many, "20009", path="/v1/Conversations/{sid}",
                                   method="DELETE", check=False)
    assert abs(outcomes.count("409") - RATE * N) <= 0.2 * RATE * N
    assert counted == outcomes.count("409") and outcomes.count("204") == N - counted


async def test_slow_responses(demo: Dataset) -> None:
    """A slow fault delays the response by slow_delay_s."""
    settings = fast_settings(fault_slow=1.0, slow_delay_s=0.2)
    server, emu = await start(settings, demo)
    try:
        async with aiohttp.ClientSession(emu.url, headers=auth_header(settings)) as s:
            began = time.monotonic()
            assert (await s.get("/v2/Conversations")).status == 200
            assert time.monotonic() - began >= 0.2
    finally:
        await server.close()
    assert emu.emulator.ledger.faults["slow"] == 1


async def test_latency_distribution(demo: Dataset) -> None:
    """Latency follows the configured median (p99 bounds the tail)."""
    settings = fast_settings(latency_median_s=0.01, latency_p99_s=0.04)
    server, emu = await start(settings, demo, check=False)
    durations = []
    try:
        async with aiohttp.ClientSession(emu.url, headers=auth_header(settings)) as s:
            for _ in range(100):
                began = time.monotonic()
                (await s.get("/v1/ControlPlane/Stores")).release()
                durations.append(time.monotonic() - began)
    finally:
        await server.close()
    durations.sort()
    assert 0.008 <= durations[50] <= 0.02


async def test_same_seed_same_sequence(demo: Dataset) -> None:
    """The same seed gives the same fault sequence; another seed does not."""
    a, _, _ = await _run(demo, "500", seed=7, n=300)
    b, _, _ = await _run(demo, "500", seed=7, n=300)
    c, _, _ = await _run(demo, "500", seed=8, n=300)
    assert a == b and a != c


async def test_rejects_20009_body_shape(demo: Dataset) -> None:
    """A 20009 answer is Twilio's error body (spec-checked) and the conversation stays."""
    settings = fast_settings(fault_20009=1.0)
    server, emu = await start(settings, demo)
    conv = next(c for c in demo.conversations if c.service_sid == demo.default_service.sid)
    try:
        async with aiohttp.ClientSession(emu.url, headers=auth_header(settings)) as s:
            r = await s.delete(f"/v1/Conversations/{conv.sid}")
            assert r.status == 409 and (await r.json())["code"] == 20009
            assert (await s.get(f"/v1/Conversations/{conv.sid}")).status == 200
    finally:
        await server.close()
    assert emu.checker.problems == []
