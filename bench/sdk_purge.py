"""The same purge written as a user would with the official twilio SDK (the ``peers`` rivals).

    python -m bench.sdk_purge URL SERVICE sequential|gather OUT.json

``sequential`` lists and deletes one message at a time. ``gather`` lists every message, then
deletes them all with ``asyncio.gather`` under a 64-slot semaphore through the SDK's async
client; a 429 surfaces as an exception (the SDK does not retry it) and that deletion is lost.
Both write their counts to OUT.json as they go (the sequential one is stopped by a time box).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from runner.emulator import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN


def _dump(out: Path, counts: dict[str, int]) -> None:
    out.write_text(json.dumps(counts))


def sequential(url: str, service: str, out: Path) -> None:
    """for each conversation, for each message: delete."""
    client = Client(DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN)
    client.conversations.base_url = url
    counts = {"deleted": 0, "lost_429": 0, "errors": 0}
    svc = client.conversations.v1.services(service)
    for conversation in svc.conversations.stream(page_size=100):
        for message in svc.conversations(conversation.sid).messages.stream(page_size=100):
            try:
                message.delete()
                counts["deleted"] += 1
            except TwilioRestException as exc:
                counts["lost_429" if exc.status == 429 else "errors"] += 1
            if sum(counts.values()) % 20 == 0:
                _dump(out, counts)
    _dump(out, counts)


async def gather(url: str, service: str, out: Path) -> None:
    """List everything, then asyncio.gather the deletes under a 64-slot semaphore."""
    client = Client(DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, http_client=AsyncTwilioHttpClient())
    client.conversations.base_url = url
    svc = client.conversations.v1.services(service)
    semaphore = asyncio.Semaphore(64)
    counts = {"deleted": 0, "lost_429": 0, "errors": 0}

    async def delete(conversation: str, message: str) -> None:
        async with semaphore:
            try:
                await svc.conversations(conversation).messages(message).delete_async()
                counts["deleted"] += 1
            except TwilioRestException as exc:
                counts["lost_429" if exc.status == 429 else "errors"] += 1

    jobs: list[Any] = []
    for conversation in await svc.conversations.list_async(page_size=100):
        for message in await svc.conversations(conversation.sid).messages.list_async(
                page_size=100):
            jobs.append(delete(conversation.sid, message.sid))
    await asyncio.gather(*jobs)
    await client.http_client.close()
    _dump(out, counts)


if __name__ == "__main__":
    url, service, mode, path = sys.argv[1:5]
    if mode == "sequential":
        sequential(url, service, Path(path))
    else:
        asyncio.run(gather(url, service, Path(path)))
