"""Ctrl-C and SIGTERM: a graceful stop within 5 s, exit 130, and a resume that finishes the job."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from runner.errors import CheckpointError, ExitCode
from runner.log.records import State
from runner.log.replay import read_checkpoint
from tests.runner.conftest import (
    checkpoints,
    deleted,
    point_at,
    run_cli,
    start_bulkops,
    successful_deletes,
)
from tests.runner.test_run_faults import SUPPORT_SERVICE, job


def deletions_logged(workdir: Path) -> int:
    """How many deletions the run's checkpoint records so far (grouped lines counted per id)."""
    logs = checkpoints(workdir)
    try:
        counts = read_checkpoint(logs[0]).counts() if logs else {}
    except CheckpointError:  # no header yet
        return 0
    return sum(n for (_, state), n in counts.items() if state is State.DELETED)


async def wait_for_deletions(workdir: Path, count: int) -> None:
    """Until the run in ``workdir`` has logged ``count`` deletions."""
    with anyio.fail_after(30):
        # Another process writes the log: polling it is the only way to watch it.
        while deletions_logged(workdir) < count:  # noqa: ASYNC110
            await anyio.sleep(0.05)


@pytest.mark.parametrize(
    "signum",
    [
        pytest.param(signal.SIGINT, id="SIGINT"),
        pytest.param(signal.SIGTERM, id="SIGTERM"),
        pytest.param(signal.SIGHUP, id="SIGHUP"),  # a closed terminal stops like SIGTERM
    ],
)
async def test_signal_stops_gracefully_and_resume_finishes(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    signum: signal.Signals,
) -> None:
    """The run stops within 5 s with exit 130 and a footer saying so, without a traceback;
    `bulkops resume` deletes the rest exactly once."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        conversations = [
            c["sid"]
            for c in await emu.resources("conversation_v1")
            if c["service_sid"] == SUPPORT_SERVICE
        ][:3]
        expected = {
            ("message", m["sid"])
            for m in await emu.resources("message")
            if m["conversation_sid"] in conversations
        }
        spec = job(
            workdir,
            f"service: {SUPPORT_SERVICE}\ntargets:\n"
            f"  - {{kind: messages, where: {{conversations: {conversations}}}}}\n"
            "limits: {per_conversation_rate: 6}\n",
        )
        process = await start_bulkops(["run", str(spec)], workdir)
        async with process:
            await wait_for_deletions(workdir, 5)
            process.send_signal(signum)
            sent = time.monotonic()
            with anyio.fail_after(10):
                code = await process.wait()
            stopped_in = time.monotonic() - sent

        assert code == ExitCode.INTERRUPTED
        assert stopped_in < 5.0
        partial = deleted(await emu.ledger())
        assert partial and partial < expected

        (log,) = checkpoints(workdir)
        footer = json.loads(log.read_text().splitlines()[-1])
        assert footer["t"] == "E" and footer["exit"] == ExitCode.INTERRUPTED
        assert "Traceback" not in (workdir / "stderr.log").read_text()
        assert await run_cli("resume", log) == ExitCode.OK

        ledger = await emu.ledger()
        assert deleted(ledger) == expected
        assert max(successful_deletes(ledger).values()) == 1
