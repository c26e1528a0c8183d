"""The baseline of ``overhead`` and ``fanout``: the least a client can do — one aiohttp session,
N workers, a DELETE per manifest line, nothing recorded, nothing paced, nothing retried.

    python -m bench.raw_loop URL MANIFEST CONCURRENCY [PATH_PREFIX]

PATH_PREFIX (default ``/v1/Conversations``) is where the manifest's conversations live, e.g.
``/v1/Services/IS…/Conversations``; credentials come from TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN.
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
from pathlib import Path

import aiohttp


async def purge(url: str, manifest: Path, concurrency: int, prefix: str) -> None:
    """Delete every message of the manifest with ``concurrency`` workers."""
    lines = manifest.read_text().splitlines()[1:]
    paths = []
    for line in lines:
        sid, conversation = line.split(",")
        paths.append(f"{prefix}/{conversation}/Messages/{sid}")
    paths.reverse()
    account = os.environ.get("TWILIO_ACCOUNT_SID", "AC" + "e3" * 16)
    token = os.environ.get("TWILIO_AUTH_TOKEN", "token")
    auth = "Basic " + base64.b64encode(f"{account}:{token}".encode()).decode()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(
        url, headers={"Authorization": auth}, connector=connector
    ) as session:

        async def worker() -> None:
            while paths:
                async with session.delete(paths.pop()) as resp:
                    await resp.read()

        async with asyncio.TaskGroup() as tg:
            for _ in range(concurrency):
                tg.create_task(worker())


if __name__ == "__main__":
    prefix = sys.argv[4] if len(sys.argv) > 4 else "/v1/Conversations"
    asyncio.run(purge(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), prefix))
