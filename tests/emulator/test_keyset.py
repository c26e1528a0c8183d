"""Keyset paging under arbitrary deletions: nothing skipped, nothing repeated, order kept."""

from __future__ import annotations

import random

import aiohttp
import pytest

from runner.emulator import generate

from .conftest import auth_header, fast_settings, start


@pytest.mark.parametrize("trial", range(4))
async def test_random_deletes_between_pages(trial: int) -> None:
    """Whatever is deleted between pages, every survivor is listed exactly once, in order."""
    rng = random.Random(trial)
    dataset = generate("scale", seed=trial, conversations=1, messages_per_conversation=120,
                       services=0, conversations_v2=0, configurations=0, stores=0)
    conv = dataset.conversations[0]
    order = rng.choice(["asc", "desc"])
    server, emu = await start(fast_settings(), dataset)
    deleted: set[int] = set()
    listed: list[int] = []
    try:
        async with aiohttp.ClientSession(emu.url, headers=auth_header(emu.settings)) as s:
            base = f"/v1/Conversations/{conv.sid}/Messages"
            url: str | None = f"{base}?Order={order}&PageSize={rng.randint(1, 15)}"
            while url:
                page = await (await s.get(url)).json()
                listed += [m["index"] for m in page["messages"]]
                # delete some listed items and some not yet listed (another worker's purge)
                for index in rng.sample(range(120), rng.randint(0, 6)) + listed[-2:]:
                    if index not in deleted:
                        sid = dataset.message_sids.sid(conv.no, index)
                        assert (await s.delete(f"{base}/{sid}")).status == 204
                        deleted.add(index)
                url = page["meta"]["next_page_url"]
    finally:
        await server.close()
    assert emu.checker.problems == []
    assert len(listed) == len(set(listed))
    assert listed == sorted(listed, reverse=order == "desc")
    never_deleted = set(range(120)) - deleted
    assert never_deleted <= set(listed)
