"""The clock a run is given is the one it waits on: a run driven on a FakeClock, against the
emulator, ends by its --max-duration budget when the test moves that clock past it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from runner.app.job import GRACE_SECONDS, RunOptions, RunResult, start_run
from runner.app.run import RunRequest, plan_job
from runner.clock import FakeClock
from runner.errors import ExitCode
from runner.kinds.base import ResourceKind
from runner.log.records import State
from runner.log.replay import read_checkpoint
from runner.values import Progress
from tests.runner.conftest import point_at
from tests.runner.test_run_faults import job

BUDGET = 60.0  # seconds of the fake clock; the test takes a fraction of one of the real clock
POLL = 2.0


async def no_display(_progress: Progress[ResourceKind, State]) -> None:
    """Shows nothing and never returns (the run cancels it)."""
    await anyio.sleep_forever()


async def test_max_duration_is_measured_on_the_injected_clock(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With every Operation left pending, a run on a FakeClock sends its deletes and polls
    only when the clock moves; moved past --max-duration and then the grace, it stops with
    exit 7, its Operations still accepted in the log for a resume, and nothing more sent."""
    # The emulator's Operations stay PENDING (and ask to be polled every POLL seconds): only the
    # budget can end this run.
    async with start_emulator(operation_pending_s=3600.0, operation_retry_after_s=POLL) as emu:
        point_at(monkeypatch, emu.url)
        ids = sorted(c["id"] for c in await emu.resources("conversation_v2"))[:3]
        spec = job(
            workdir,
            "targets:\n  - {kind: conversations, api: v2, ids: [" + ", ".join(ids) + "]}\n"
            f"operations: {{poll_interval: {POLL:g}}}\n"
            # A configured rate is paced on the loop's clock, and not at all this far under it:
            # every sleeper on the fake clock is then one this test counts.
            "limits: {conversations: {rate: 1000, burst: 100}}\n",
        )
        plan, config, _shard = plan_job(RunRequest(job=spec))
        clock = FakeClock()
        result: list[RunResult] = []

        async def run() -> None:
            result.append(
                await start_run(
                    plan,
                    config,
                    spec,
                    None,
                    None,
                    no_display,
                    clock=clock,
                    directory=workdir,
                    options=RunOptions(max_duration=BUDGET),
                )
            )

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            # The budget's timer and one tracker per accepted delete, all on the fake clock.
            await clock.until_sleeping(1 + len(ids))
            assert len(await deletes(emu)) == len(ids)
            assert await status_polls(emu) == 0  # the clock has not moved: no poll is due
            clock.advance(BUDGET)  # the trackers poll once, the budget runs out
            # The trackers wait for their next poll, the hard stop for the grace.
            await clock.until_sleeping(1 + len(ids))
            assert not result  # in flight requests get their grace
            assert await status_polls(emu) == len(ids)  # one poll each, when the clock said
            clock.advance(GRACE_SECONDS)

        (ended,) = result
        assert ended.exit_code == ExitCode.OUT_OF_TIME
        sent = await deletes(emu)
        assert sorted(r["path"].rsplit("/", 1)[1] for r in sent) == ids  # each once
        assert all(r["status"] == 202 for r in sent)
        assert not (await emu.ledger())["deletions"]  # no Operation completed
        replay = read_checkpoint(ended.checkpoint)
        assert replay.exit_code == ExitCode.OUT_OF_TIME
        assert {rec.state for rec in replay.open.values()} == {State.ACCEPTED}
        assert len(replay.open) == len(ids)


async def status_polls(emu: Any) -> int:
    """GETs of an Operation's status the emulator was asked for."""
    ledger = await emu.ledger()
    return sum(1 for r in ledger["requests"] if r["method"] == "GET" and "Operation" in r["path"])


async def deletes(emu: Any) -> list[dict[str, Any]]:
    """The DELETEs the emulator was asked for."""
    ledger = await emu.ledger()
    return [r for r in ledger["requests"] if r["method"] == "DELETE"]
