"""Discovery over real HTTP against the emulator: children listed page by page as emit takes
them, conversations skipped when this job deleted them, and a resume's listed conversations."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from runner.emulator import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN
from runner.engine.discovery import Discovery, ListedConversations
from runner.kinds.base import Product, Target
from runner.kinds.registry import by_name
from runner.kinds.v1 import V1_PAGE, ListChildren, conversations_prefix
from runner.values import ProductLimit, RetryPolicy
from runner.wire.client import TwilioClient
from runner.wire.limits import Limits
from runner.wire.requester import Requester

MESSAGE = by_name("message")
PARTICIPANT = by_name("participant")

MESSAGES = 2 * V1_PAGE + 50  # three pages a conversation
DATASET = {
    "conversations": 3,
    "messages_per_conversation": MESSAGES,
    "participants_per_conversation": 1,
    "conversations_v2": 0,
    "configurations": 0,
    "stores": 0,
}


@asynccontextmanager
async def requester_at(emu: Any, workers: int = 4) -> AsyncIterator[Requester]:
    """The real requester aimed at ``emu``, with limits that do not bind in a test."""
    limits = Limits(
        concurrency=workers,
        per_conversation_rate=1000.0,
        per_service_rate=1000.0,
        products={p: ProductLimit() for p in Product},
        rng=random.Random(1),
    )
    async with TwilioClient(
        {p: emu.url for p in Product}, (DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN)
    ) as client:
        yield Requester(client, limits, RetryPolicy(max_attempts=2), random.Random(1))


def listings(ledger: dict[str, Any]) -> Counter[str]:
    """GETs by path."""
    return Counter(r["path"] for r in ledger["requests"] if r["method"] == "GET")


async def conversations(emu: Any) -> list[str]:
    return sorted(c["sid"] for c in await emu.resources("conversation_v1"))


def service_of(emu: Any) -> str:
    """The Service the scale dataset's conversations are in (not the default one)."""
    return str(emu.dataset.conversations[0].service_sid)


async def test_a_page_is_asked_for_only_once_the_last_one_was_taken(start_emulator: Any) -> None:
    async with start_emulator("scale", dataset_args=DATASET) as emu:
        sid = (await conversations(emu))[0]
        path = f"{conversations_prefix(service_of(emu))}/{sid}/Messages"
        taken = anyio.Event()
        pages: list[Sequence[Target]] = []

        async def emit(targets: Sequence[Target]) -> None:
            pages.append(targets)
            if len(pages) == 1:
                await taken.wait()

        async with requester_at(emu) as requester, anyio.create_task_group() as tg:
            discovery = Discovery(requester, service_of(emu))
            tg.start_soon(discovery.run, ListChildren(MESSAGE, (sid,)), emit)
            await anyio.wait_all_tasks_blocked()
            assert listings(await emu.ledger())[path] == 1
            taken.set()

        assert [len(p) for p in pages] == [V1_PAGE, V1_PAGE, MESSAGES - 2 * V1_PAGE]
        assert listings(await emu.ledger())[path] == 3
        assert {t.parent for p in pages for t in p} == {sid}


@pytest.mark.parametrize("how", ["deleted", "listed before"])
async def test_a_conversation_is_not_listed_again(start_emulator: Any, how: str) -> None:
    """Children of a conversation this job deleted are not listed (they went with it), nor
    those a resumed run recorded as listed in full; the others are, and are recorded."""
    async with start_emulator("scale", dataset_args=DATASET) as emu:
        first, *others = await conversations(emu)
        recorded: list[str] = []

        async def record(sid: str) -> None:
            recorded.append(sid)

        skip = {first}.__contains__
        found: list[Target] = []

        async def emit(targets: Sequence[Target]) -> None:
            found.extend(targets)

        async with requester_at(emu) as requester:
            if how == "deleted":
                discovery = Discovery(requester, service_of(emu), skip_conversation=skip)
                listed = ListedConversations(lambda _sid: False, record)
            else:
                discovery = Discovery(requester, service_of(emu))
                listed = ListedConversations(skip, record)
            await discovery.run(ListChildren(PARTICIPANT, None), emit, listed)

        gets = listings(await emu.ledger())
        assert gets[f"{conversations_prefix(service_of(emu))}/{first}/Participants"] == 0
        assert gets[f"{conversations_prefix(service_of(emu))}/{others[0]}/Participants"] == 1
        assert {t.parent for t in found} == set(others)
        assert sorted(recorded) == others
