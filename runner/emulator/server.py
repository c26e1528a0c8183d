"""Running the emulator on a real socket: in-process (``running_emulator``) or as a CLI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from .app import build_app
from .dataset import Dataset
from .settings import EmulatorSettings


@asynccontextmanager
async def running_emulator(
    settings: EmulatorSettings, dataset: Dataset, port: int = 0, host: str = "127.0.0.1"
) -> AsyncIterator[str]:
    """Serve the emulator until the block exits; yields its base URL (``http://host:port``)."""
    runner = web.AppRunner(build_app(settings, dataset), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound: int = runner.addresses[0][1]
        yield f"http://{host}:{bound}"
    finally:
        await runner.cleanup()


serve = running_emulator
