"""Fixtures for end-to-end tests: a real emulator on 127.0.0.1 and the real CLI against it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import anyio.abc
import pytest
import structlog
from aiohttp import web

from runner.cli import main
from runner.emulator import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    EMULATOR_KEY,
    Dataset,
    EmulatorSettings,
    build_app,
    generate,
)
from runner.emulator import Emulator as EmulatorState

REPO = Path(__file__).resolve().parents[2]
FAST_OPERATIONS = {"operation_pending_s": 0.05, "operation_running_s": 0.05}


@dataclass
class Emulator:
    """A running emulator and the admin calls tests make on it."""

    url: str
    dataset: Dataset
    session: aiohttp.ClientSession
    state: EmulatorState | None = None  # when served by this process: see :meth:`until`

    async def ledger(self) -> dict[str, Any]:
        """The whole ledger."""
        async with self.session.get(f"{self.url}/_emulator/ledger") as resp:
            assert resp.status == 200
            body: dict[str, Any] = await resp.json()
            return body

    async def resources(self, kind: str) -> list[dict[str, Any]]:
        """Every live resource of ``kind``."""
        async with self.session.get(f"{self.url}/_emulator/resources", params={"kind": kind}) as r:
            assert r.status == 200
            items: list[dict[str, Any]] = (await r.json())["items"]
            return items

    def client_gone(self) -> None:
        """A client process was killed: the pauses it had read bound it, not its successor
        (which the `sent_during_pause` count then judges on the pauses it reads itself)."""
        assert self.state is not None, "served by start_emulator or serving"
        self.state.pauses.forget()

    def requests(self) -> int:
        """How many requests it has answered so far."""
        assert self.state is not None, "served by start_emulator or serving"
        return self.state.ledger.request_count

    async def until(self, *, requests: int = 0, deletions: int = 0) -> None:
        """Return once it has answered ``requests`` requests and deleted ``deletions``
        resources (an event of its ledger, not a poll: a test waits on it for a process)."""
        state = self.state
        assert state is not None, "served by start_emulator or serving"
        ledger = state.ledger

        def done() -> bool:
            state.settle()  # Operations that are due have deleted their resources
            total = sum(ledger.deleted_by_kind.values())
            return ledger.request_count >= requests and total >= deletions

        await ledger.until(done)

    async def configure(self, **changes: Any) -> None:
        """Change settings at runtime."""
        async with self.session.post(f"{self.url}/_emulator/settings", json=changes) as resp:
            assert resp.status == 200, await resp.text()


StartEmulator = Callable[..., Any]


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """An in-process CLI run points structlog at that test's captured stderr, which pytest closes
    after it: every test starts from structlog's defaults (which look up stdout at each call)."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.fixture
def start_emulator() -> Callable[..., Any]:
    """A factory: ``async with start_emulator(**settings) as emu`` serves the demo dataset."""

    @asynccontextmanager
    async def start(
        preset: str = "demo",
        dataset_seed: int = 0,
        dataset_args: dict[str, Any] | None = None,
        **settings: Any,
    ) -> AsyncIterator[Emulator]:
        dataset = generate(preset, seed=dataset_seed, **(dataset_args or {}))
        config = EmulatorSettings(**{**FAST_OPERATIONS, **settings})
        async with serving(config, dataset) as emulator:
            yield emulator

    return start


@asynccontextmanager
async def serving(config: EmulatorSettings, dataset: Dataset) -> AsyncIterator[Emulator]:
    """Serve ``dataset`` on 127.0.0.1 (as runner.emulator.running_emulator does), its state at
    hand for :meth:`Emulator.until`."""
    app = build_app(config, dataset)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        async with aiohttp.ClientSession() as session:
            yield Emulator(url, dataset, session, app[EMULATOR_KEY])
    finally:
        await runner.cleanup()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A clean working directory with the emulator's default credentials in the environment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", DEFAULT_ACCOUNT_SID)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", DEFAULT_AUTH_TOKEN)
    for name in ("TWILIO_API_KEY", "TWILIO_API_SECRET", "TWILIO_REGION", "TWILIO_EDGE"):
        monkeypatch.delenv(name, raising=False)
    yield tmp_path


def point_at(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """Aim bulkops at the emulator, as a user would with the documented variables."""
    monkeypatch.setenv("BULKOPS_CONVERSATIONS_URL", url)
    monkeypatch.setenv("BULKOPS_MEMORY_URL", url)


async def start_bulkops(
    argv: list[str], workdir: Path, *, watched: bool = False
) -> anyio.abc.Process:
    """`python -m runner ARGV` as a real process in ``workdir``, its output appended to files
    there (an unread pipe would block the process once full) — or, if ``watched``, its log
    lines (standard error) on a pipe, which the caller must read to its end."""
    with (workdir / "stdout.log").open("ab") as out, (workdir / "stderr.log").open("ab") as err:
        return await anyio.open_process(
            [sys.executable, "-m", "runner", *argv, "--log-format", "json"],
            env=dict(os.environ),
            cwd=workdir,
            stdout=out,
            stderr=subprocess.PIPE if watched else err,
        )


async def until_or_ended(process: anyio.abc.Process, waiting: Awaitable[None]) -> None:
    """Return once ``waiting`` is done or ``process`` has ended, whichever comes first. Both
    are events (an emulator's :meth:`Emulator.until`, the process's end): a test waiting for
    another process is bounded by its timeout, not by a wall-clock deadline of its own."""
    async with anyio.create_task_group() as tg:

        async def wait() -> None:
            await waiting
            tg.cancel_scope.cancel()

        tg.start_soon(wait)
        await process.wait()
        tg.cancel_scope.cancel()


async def run_cli(*argv: str | os.PathLike[str]) -> int:
    """Run ``bulkops ARGV`` in a worker thread (it starts its own event loop), return its code."""
    return await anyio.to_thread.run_sync(partial(main, [str(a) for a in argv]))


def successful_deletes(ledger: dict[str, Any]) -> Counter[str]:
    """How many times each path was answered 202/204 to a DELETE that acted — an idempotent
    replay (the same Idempotency-Key answered with the original Operation) does not count."""
    replayed = {r["request_seq"] for r in ledger["replays"]}
    return Counter(
        r["path"]
        for r in ledger["requests"]
        if r["method"] == "DELETE" and r["status"] in (202, 204) and r["seq"] not in replayed
    )


def deleted(ledger: dict[str, Any], *vias: str) -> set[tuple[str, str]]:
    """(kind, id) of every deletion the ledger records, optionally only by the given routes."""
    return {(d["kind"], d["id"]) for d in ledger["deletions"] if not vias or d["via"] in vias}


def checkpoints(directory: Path) -> list[Path]:
    """Checkpoint logs written under ``directory``."""
    return sorted(directory.glob("checkpoints/*.jsonl"))


async def interrupted_then_resumed(
    emu: Emulator, spec: Path, workdir: Path, expected: set[tuple[str, str]]
) -> Path:
    """Run ``spec`` as a real process, SIGINT it once the emulator has deleted two things, then
    `bulkops resume` its log: the run must have stopped part-way (exit 130), and the two of
    them together delete exactly ``expected``, each once (by the ledger). The log's path."""
    process = await start_bulkops(["run", str(spec)], workdir)
    async with process:
        await until_or_ended(process, emu.until(deletions=2))
        process.send_signal(signal.SIGINT)
        with anyio.fail_after(10):
            assert await process.wait() == 130
    partial = deleted(await emu.ledger())
    assert partial and partial < expected

    (log,) = checkpoints(workdir)
    assert await run_cli("resume", log) == 0

    ledger = await emu.ledger()
    assert deleted(ledger) == expected
    assert max(successful_deletes(ledger).values()) == 1
    return log
