"""The run's real clock: a deadline already past, or a negative sleep, returns at once (anyio's
own sleep raises ValueError for a negative delay, which stopped runs with exit 8 when a pause's
end passed between Limits._wait_pauses reading it and sleeping to it)."""

from __future__ import annotations

import time

import anyio
import pytest

from runner.clock import MONOTONIC


@pytest.mark.parametrize("backend", ["asyncio", "uvloop"])
def test_a_deadline_already_past_returns_at_once(backend: str) -> None:
    async def main() -> None:
        await MONOTONIC.sleep_until(time.monotonic() - 0.5)
        await MONOTONIC.sleep(-0.5)

    options = {"use_uvloop": backend == "uvloop"}
    anyio.run(main, backend="asyncio", backend_options=options)
