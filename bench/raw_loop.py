"""The baseline of ``overhead``: the least a client can do — one aiohttp session, N workers,
a DELETE per manifest line, nothing recorded.

    python -m bench.raw_loop URL MANIFEST CONCURRENCY
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp


async def purge(url: str, manifest: Path, concurrency: int) -> None:
    """Delete every message of the manifest with ``concurrency`` workers."""
    lines = manifest.read_text().splitlines()[1:]
    paths = []
    for line in lines:
        sid, conversation = line.split(",")
        paths.append(f"/v1/Conversations/{conversation}/Messages/{sid}")
    paths.reverse()
    auth = aiohttp.BasicAuth("AC" + "e3" * 16, "token")
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(url, auth=auth, connector=connector) as session:

        async def worker() -> None:
            while paths:
                async with session.delete(paths.pop()) as resp:
                    await resp.read()

        async with asyncio.TaskGroup() as tg:
            for _ in range(concurrency):
                tg.create_task(worker())


if __name__ == "__main__":
    asyncio.run(purge(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])))
