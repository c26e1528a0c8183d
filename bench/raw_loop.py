"""The baseline of ``overhead`` and ``fanout``: the least a client can do — one aiohttp session,
N workers, a DELETE per manifest line, nothing recorded, nothing paced, nothing retried.

    python -m bench.raw_loop URL MANIFEST CONCURRENCY [PATH_PREFIX] [--loop asyncio|uvloop]

PATH_PREFIX (default ``/v1/Conversations``) is where the manifest's conversations live, e.g.
``/v1/Services/IS…/Conversations``; credentials come from TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN.
``--loop`` (default asyncio, the stock loop) is the event loop it runs on, as bulkops' own.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
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


def main() -> None:
    """Parse the command line and purge on the loop it names."""
    parser = argparse.ArgumentParser(prog="python -m bench.raw_loop")
    parser.add_argument("url")
    parser.add_argument("manifest", type=Path)
    parser.add_argument("concurrency", type=int)
    parser.add_argument("prefix", nargs="?", default="/v1/Conversations")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = parser.parse_args()
    work = purge(args.url, args.manifest, args.concurrency, args.prefix)
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(work)
    else:
        asyncio.run(work)


if __name__ == "__main__":
    main()
