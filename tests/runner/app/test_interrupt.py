"""Ctrl-C and SIGTERM: a graceful stop, exit 130, and a resume that finishes the job."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from runner.errors import ExitCode
from tests.runner.conftest import (
    Emulator,
    checkpoints,
    deleted,
    point_at,
    run_cli,
    start_bulkops,
    successful_deletes,
    until_or_ended,
)
from tests.runner.test_run_faults import SUPPORT_SERVICE, job


async def wait_for_deletions(
    emu: Emulator, count: int, process: anyio.abc.Process | None = None
) -> None:
    """Until ``emu`` has deleted ``count`` resources (the run that asked may not have logged
    them yet), or ``process`` has ended, whichever comes first. Events (the emulator's ledger,
    the process's end), not polls: the bound is the test's timeout."""
    if process is None:
        await emu.until(deletions=count)
    else:
        await until_or_ended(process, emu.until(deletions=count))


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
    """The run stops with exit 130 and a footer saying so, without a traceback; `bulkops
    resume` deletes the rest exactly once. (That the stop waits at most the grace for what is
    in flight is shown on a FakeClock in test_clock.py.)"""
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
            await wait_for_deletions(emu, 5)
            process.send_signal(signum)
            code = await process.wait()

        assert code == ExitCode.INTERRUPTED
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
