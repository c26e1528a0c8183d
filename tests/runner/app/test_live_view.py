"""The live view, through a pseudo-terminal: what a frame shows mid-run, a Ctrl-C that leaves no
half-drawn frame behind, totals that count the earlier run after a resume, and no live view
with ``--log-format json``.

What the terminal shows is what a VT100 emulator (pyte) makes of the bytes the run wrote,
scrollback included: a frame drawn over, or left half-erased, would be there to see.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import termios
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pyte
import pytest

from runner.errors import ExitCode
from runner.log.records import State
from runner.log.replay import read_checkpoint
from tests.runner.conftest import checkpoints, point_at
from tests.runner.test_run_faults import SUPPORT_SERVICE, job

COLUMNS, ROWS = 120, 40
ROW = re.compile(
    r"^(?P<kind>messages|participants|total)\s+[━╸╺ ]+\s+"
    r"(?P<done>[\d,]+)/(?P<estimate>~?)(?P<selected>[\d,]+)\s+\d+%\s+(?P<rate>[\d.,]+|-)/s"
)
TRAFFIC = re.compile(r"429s: (?P<throttled>[\d,]+) · retries: (?P<retries>[\d,]+)")


class Terminal:
    """``bulkops ARGV`` on a pseudo-terminal, and the screen a terminal would show of it."""

    def __init__(self, process: anyio.abc.Process, master: int) -> None:
        self.process = process
        self.master = master
        self.screen = pyte.HistoryScreen(COLUMNS, ROWS, history=2000)
        self.stream = pyte.ByteStream(self.screen)

    @classmethod
    async def start(cls, argv: list[str], workdir: Path) -> Terminal:
        """Start the run with a terminal of :data:`COLUMNS` x :data:`ROWS` as its stdio."""
        master, slave = os.openpty()
        termios.tcsetwinsize(slave, (ROWS, COLUMNS))
        process = await anyio.open_process(
            [sys.executable, "-m", "runner", *argv],
            env={**os.environ, "TERM": "xterm-256color"},
            cwd=workdir,
            stdin=slave,
            stdout=slave,
            stderr=slave,
        )
        os.close(slave)
        return cls(process, master)

    def lines(self) -> list[str]:
        """Every line shown so far, scrollback first, without trailing blanks."""
        history = [
            "".join(line[x].data for x in range(COLUMNS)).rstrip()
            for line in self.screen.history.top
        ]
        return [*history, *(line.rstrip() for line in self.screen.display)]

    async def _read(self) -> bool:
        """Take in what the run wrote since; False once it has closed the terminal."""
        await anyio.wait_readable(self.master)
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: no process holds the terminal any more
            return False
        self.stream.feed(data)
        return bool(data)

    async def until(self, condition: Callable[[list[str]], bool], what: str) -> list[str]:
        """The lines shown once ``condition`` holds of them."""
        with anyio.fail_after(30):
            while not condition(self.lines()):
                if not await self._read():
                    raise AssertionError(f"the run ended before {what}:\n" + self.text())
        return self.lines()

    async def finish(self) -> int:
        """Read to the end; the exit code."""
        with anyio.fail_after(30):
            while await self._read():
                pass
            code = await self.process.wait()
        os.close(self.master)
        return code

    def text(self) -> str:
        """The whole terminal, for a failing assertion's message."""
        return "\n".join(self.lines()).rstrip()


def rows(lines: list[str]) -> dict[str, dict[str, str]]:
    """The live view's rows now on show, by kind (the last one drawn)."""
    found: dict[str, dict[str, str]] = {}
    for line in lines:
        match = ROW.match(line)
        if match:
            found[match["kind"]] = match.groupdict()
    return found


def number(text: str) -> int:
    """A count as the view shows it (with thousands separators)."""
    return int(text.replace(",", ""))


def busy_with_429s(lines: list[str]) -> bool:
    """A frame mid-run: some targets done, some left, and 429s counted."""
    total = rows(lines).get("total")
    traffic = [m for m in map(TRAFFIC.search, lines) if m]
    return (
        total is not None
        and 10 <= number(total["done"]) < number(total["selected"])
        and bool(traffic)
        and number(traffic[-1]["throttled"]) > 0
    )


async def test_live_view_mid_run_interrupt_and_resume(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frame names the job and its checkpoint and shows per-kind done/selected, a rate and
    the 429 and retry counts; after Ctrl-C the terminal holds the final frame once, below the
    interrupt message, and nothing of an earlier frame; the resume's totals count the targets
    the interrupted run finished."""
    # The server allows 2 deletes/s per conversation, bulkops starts at 30: 429s, a slow run.
    async with start_emulator(conversation_aps=2) as emu:
        point_at(monkeypatch, emu.url)
        conversations = {
            c["sid"]
            for c in await emu.resources("conversation_v1")
            if c["service_sid"] == SUPPORT_SERVICE
        }
        children = [*await emu.resources("message"), *await emu.resources("participant")]
        expected = sum(1 for item in children if item["conversation_sid"] in conversations)
        spec = job(
            workdir,
            f"service: {SUPPORT_SERVICE}\ntargets:\n"
            "  - {kind: messages, where: {conversations: all}}\n"
            "  - {kind: participants, where: {conversations: all}}\n",
            name="purge",
        )
        terminal = await Terminal.start(["run", str(spec)], workdir)
        frame = await terminal.until(busy_with_429s, "a frame with 429s")
        terminal.process.send_signal(signal.SIGINT)
        code = await terminal.finish()

        (log,) = checkpoints(workdir)
        # The path is folded at the terminal's width, never cut.
        assert "bulkops job purge" in frame and str(log) in "".join(frame), terminal.text()
        shown = rows(frame)
        assert {"messages", "participants", "total"} <= shown.keys(), terminal.text()
        assert all(row["rate"] != "-" for row in shown.values()), terminal.text()
        assert TRAFFIC.search("\n".join(frame)), terminal.text()

        assert code == ExitCode.INTERRUPTED
        lines = terminal.lines()
        stopping = [i for i, line in enumerate(lines) if re.search(r"\[warning +\] stopping", line)]
        headers = [i for i, line in enumerate(lines) if line == "bulkops job purge"]
        assert len(stopping) == 1 and len(headers) == 1, terminal.text()
        assert stopping[0] < headers[0], terminal.text()
        # The frame's rows are the only lines with a bar: one per kind and the total.
        barred = [line for line in lines if "━" in line and not line.startswith(("┏", "┡"))]
        assert len(barred) == 3 and all(ROW.match(line) for line in barred), terminal.text()

        finished = sum(
            n for (_, state), n in read_checkpoint(log).counts().items() if state.is_final
        )
        assert 0 < finished < expected
        await emu.configure(conversation_aps=None)
        terminal = await Terminal.start(["resume", str(log)], workdir)
        first = await terminal.until(lambda lines: "total" in rows(lines), "the first frame")
        assert number(rows(first)["total"]["done"]) >= finished, terminal.text()
        assert await terminal.finish() == ExitCode.OK
        total = rows(terminal.lines())["total"]
        assert (number(total["done"]), number(total["selected"])) == (expected, expected)
        assert not total["estimate"]
        counts = read_checkpoint(log).counts()
        assert sum(n for (_, s), n in counts.items() if s is State.DELETED) == expected


async def test_no_live_view_with_json_logs(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --log-format json the terminal gets JSON log lines and the summary, no live view."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        (conversation, *_) = await emu.resources("conversation_v1")
        spec = job(
            workdir, f"targets:\n  - {{kind: conversations, ids: [{conversation['sid']}]}}\n"
        )
        terminal = await Terminal.start(["run", str(spec), "--log-format", "json"], workdir)
        assert await terminal.finish() == ExitCode.OK
        text = terminal.text()
        assert '"event": "run_finished"' in text
        assert "bulkops job" not in text and not rows(terminal.lines()), text
