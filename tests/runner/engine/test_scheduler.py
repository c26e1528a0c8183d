"""The engine over real HTTP against the emulator: phases and covered children, and the bounded
queue holding discovery back; a real client, requester, checkpoint writer and log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from runner.clock import MONOTONIC
from runner.engine.discovery import CHUNK
from runner.engine.scheduler import Engine, EngineSettings
from runner.kinds.base import Target
from runner.kinds.registry import by_name
from runner.kinds.v1 import ListChildren
from runner.log.lock import open_log
from runner.log.records import State
from runner.log.replay import read_checkpoint
from runner.log.writer import CheckpointWriter
from runner.plan.selection import Explicit, Source
from tests.runner.app.test_run_e2e import SUPPORT_SERVICE
from tests.runner.engine.test_discovery import requester_at
from tests.runner.log.test_checkpoint import HEADER, sid

MESSAGE = by_name("message")
PARTICIPANT = by_name("participant")
CONVERSATION_V1 = by_name("conversation_v1")


def settings(workers: int = 4) -> EngineSettings:
    return EngineSettings(
        run_id=HEADER.run_id,
        service=None,
        webhooks=None,
        workers=workers,
        poll_interval=0.05,
        operation_timeout=30.0,
        max_deletions=None,
        max_failure_rate=1.0,
        failure_rate_min_count=1000,
    )


@asynccontextmanager
async def engine_at(
    emu: Any, sources: list[Source], log: Path, *, workers: int = 4
) -> AsyncIterator[tuple[Engine, CheckpointWriter, Any]]:
    """An engine against ``emu`` with a new checkpoint log at ``log`` (its writer not started:
    the caller starts it, or not, to hold the workers at their write-ahead)."""
    async with requester_at(emu, workers) as requester:
        with open_log(log, HEADER) as handle:
            writer = CheckpointWriter(log, HEADER.started_at)
            try:
                engine = Engine(settings(workers), requester, sources, writer, clock=MONOTONIC)
                yield engine, writer, handle
            finally:
                writer.close()


async def run_to_end(engine: Engine, writer: CheckpointWriter, handle: Any) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run, handle)
        with anyio.fail_after(30):
            await engine.run()
        writer.close()


async def a_conversation_with_messages(emu: Any) -> tuple[str, list[str]]:
    """A default-Service v1 conversation of the demo dataset and its messages' SIDs."""
    messages = await emu.resources("message")
    for conversation in await emu.resources("conversation_v1"):
        if conversation["service_sid"] == SUPPORT_SERVICE:
            continue
        children = [m["sid"] for m in messages if m["conversation_sid"] == conversation["sid"]]
        if len(children) >= 2:
            return conversation["sid"], children
    raise AssertionError("the demo dataset has a default-Service conversation with messages")


async def test_children_wait_for_their_conversation_and_are_covered_by_it(
    start_emulator: Any, tmp_path: Path
) -> None:
    """The conversation's phase goes first; its named messages are then covered (no DELETE),
    and listing its children is skipped (no GET), though both sources come first in the job."""
    async with start_emulator() as emu:
        conversation, messages = await a_conversation_with_messages(emu)
        sources: list[Source] = [
            Explicit(
                MESSAGE, tuple(Target(MESSAGE, m, conversation) for m in messages)
            ),
            ListChildren(PARTICIPANT, (conversation,)),
            Explicit(CONVERSATION_V1, (Target(CONVERSATION_V1, conversation),)),
        ]
        log = tmp_path / "run.jsonl"
        async with engine_at(emu, sources, log) as (engine, writer, handle):
            await run_to_end(engine, writer, handle)

        requests = (await emu.ledger())["requests"]
        assert [(r["method"], r["path"]) for r in requests] == [
            ("DELETE", f"/v1/Conversations/{conversation}")
        ]
        assert engine.progress.outcomes == {
            (CONVERSATION_V1, State.DELETED): 1,
            (MESSAGE, State.COVERED): len(messages),
        }
        replay = read_checkpoint(log)
        assert all(
            replay.state_of(Target(MESSAGE, m, conversation)) is State.COVERED
            for m in messages
        )


async def test_a_conversation_already_gone_covers_too_and_others_children_are_deleted(
    start_emulator: Any, tmp_path: Path
) -> None:
    """A conversation already gone (404) covers its children as a deleted one does; a child of
    a conversation the job does not delete is deleted on its own."""
    async with start_emulator() as emu:
        conversation, messages = await a_conversation_with_messages(emu)
        missing = sid("CH", 12345)
        orphan = Target(MESSAGE, sid("IM", 1), missing)
        sources: list[Source] = [
            Explicit(
                MESSAGE, (Target(MESSAGE, messages[0], conversation), orphan)
            ),
            Explicit(CONVERSATION_V1, (Target(CONVERSATION_V1, missing),)),
        ]
        async with engine_at(emu, sources, tmp_path / "run.jsonl") as (engine, writer, handle):
            await run_to_end(engine, writer, handle)

        assert engine.progress.outcomes == {
            (CONVERSATION_V1, State.GONE): 1,  # gone counts as deleted: covers
            (MESSAGE, State.COVERED): 1,
            (MESSAGE, State.DELETED): 1,
        }


@pytest.mark.parametrize("workers", [1, 3])
async def test_discovery_waits_while_the_workers_hold_a_page(
    start_emulator: Any, tmp_path: Path, workers: int
) -> None:
    """With the log stalled, workers cannot send (write-ahead), so the queue does not drain:
    discovery admits one page of a long source and waits; nothing at all is sent."""
    async with start_emulator() as emu:
        targets = tuple(
            Target(MESSAGE, sid("IM", n), sid("CH", n)) for n in range(10 * CHUNK)
        )
        sources: list[Source] = [Explicit(MESSAGE, targets)]
        log = tmp_path / "run.jsonl"
        async with (
            engine_at(emu, sources, log, workers=workers) as (engine, _writer, _handle),
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(engine.run)
            await anyio.wait_all_tasks_blocked()
            assert sum(engine.progress.found.values()) == CHUNK
            assert not engine.progress.discovery_done
            engine.hard_stop()

        assert (await emu.ledger())["requests"] == []
