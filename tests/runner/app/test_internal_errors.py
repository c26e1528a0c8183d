"""An unexpected exception anywhere in a run: exit 8, a footer that says 8, one line, and a resume.

Each case injects a RuntimeError into the one function of a stage (pytest's monkeypatch, in the
process: the CLI runs in a worker thread), runs the real CLI against the real emulator, and
judges by the emulator's ledger and the checkpoint file: nothing recorded as done that the
server did not do, and `bulkops resume` — without the fault — deleting the rest exactly once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import runner.app.display
import runner.app.job
import runner.app.metrics
import runner.engine.admission
import runner.engine.operations
import runner.engine.scheduler
import runner.log.records
import runner.log.replay
import runner.log.writer
import runner.wire.client
from runner.engine.discovery import Discovery
from runner.errors import ExitCode
from runner.kinds.base import ResourceKind, Target
from runner.log.records import State
from runner.log.replay import read_checkpoint
from runner.report.completion import rows
from runner.values import Progress
from runner.wire.client import TwilioClient
from tests.runner.conftest import checkpoints, deleted, point_at, run_cli, successful_deletes
from tests.runner.test_run_faults import SUPPORT_SERVICE, job

CONVERSATIONS = [
    "CH14c303b9bc1bc52cb9735b4903ab9511",
    "CHd54c322fe69868c382f734b19fd64d9e",
    "CH1ecdcc7a2a63428a7575f0b38631e598",
    "CH425adf383cfc316f78bcfd4b29371163",
]
SPEC = (
    f"service: {SUPPORT_SERVICE}\n"
    "targets:\n"
    f"  - {{kind: messages, where: {{conversations: {CONVERSATIONS}}}}}\n"
    "  - {kind: conversations, api: v2, where: {all: true}}\n"
    "operations: {poll_interval: 0.05}\n"
)

Install = Callable[[pytest.MonkeyPatch], None]


class Boom(RuntimeError):
    """The injected fault; its text must never reach the output."""

    def __init__(self) -> None:
        super().__init__("SECRET-TEXT body of a message, +14155550143")


def on_call(number: int) -> Callable[[], bool]:
    """A counter that answers True on its ``number``-th call only."""
    calls = 0

    def tick() -> bool:
        nonlocal calls
        calls += 1
        return calls == number

    return tick


def in_discovery(mp: pytest.MonkeyPatch) -> None:
    """The third page a source hands on raises (as a list item nothing can parse would)."""
    original = Discovery.run
    third = on_call(3)

    async def run(
        self: Discovery, source: Any, emit: Any, listed: Any = None, services_listed: Any = None
    ) -> None:
        async def faulty(targets: Sequence[Target]) -> None:
            if third():
                raise Boom
            await emit(targets)

        await original(self, source, faulty, listed, services_listed)

    mp.setattr(Discovery, "run", run)


def in_admission(mp: pytest.MonkeyPatch) -> None:
    """The sixtieth found target raises as it is admitted (hashing its key)."""
    original = runner.log.records.key_hash
    tenth = on_call(60)

    def key_hash(key: str) -> int:
        if tenth():
            raise Boom
        return original(key)

    mp.setattr(runner.engine.admission, "key_hash", key_hash)


def in_send(mp: pytest.MonkeyPatch) -> None:
    """The fifth message DELETE raises after the server has deleted it (its answer is lost)."""
    original = TwilioClient.request
    fifth = on_call(5)

    async def request(
        self: TwilioClient, method: str, product: Any, path: str, **kwargs: Any
    ) -> Any:
        reply = await original(self, method, product, path, **kwargs)
        if method == "DELETE" and "/Messages/" in path and fifth():
            raise Boom
        return reply

    mp.setattr(TwilioClient, "request", request)


def in_outcome(mp: pytest.MonkeyPatch) -> None:
    """Reading the second 202 of an async DELETE raises (the Operation has started)."""
    original = runner.engine.operations.parse_accepted
    second = on_call(2)

    def parse_accepted(*args: Any) -> Any:
        if second():
            raise Boom
        return original(*args)

    mp.setattr(runner.engine.scheduler, "parse_accepted", parse_accepted)


def in_poll(mp: pytest.MonkeyPatch) -> None:
    """The third Operation tracker raises after its first poll was answered."""
    original = runner.engine.operations.follow
    third = on_call(3)

    async def follow(requester: Any, product: Any, accepted: Any, **kwargs: Any) -> None:
        if third():
            await requester.send("GET", product, accepted.status_url)
            raise Boom
        await original(requester, product, accepted, **kwargs)

    mp.setattr(runner.engine.scheduler, "follow", follow)


def in_writer(mp: pytest.MonkeyPatch) -> None:
    """The checkpoint writer raises on its first batch holding a deletion."""
    original = runner.log.records.group_records
    raised = False

    def group_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        nonlocal raised
        if not raised and any(r.get("s") == "D" for r in records):
            raised = True
            raise Boom
        return original(records)

    mp.setattr(runner.log.writer, "group_records", group_records)


def in_report(mp: pytest.MonkeyPatch) -> None:
    """Writing the report at the end raises, after the footer was written."""

    def write_reports(*_args: Any) -> None:
        raise Boom

    mp.setattr(runner.app.job, "write_reports", write_reports)


def in_display(mp: pytest.MonkeyPatch) -> None:
    """The progress display raises once the first target is done."""
    original = runner.engine.scheduler.Engine._finish
    done = False
    first_done: anyio.Event | None = None  # made by the display, in the run's event loop

    def finish(self: runner.engine.scheduler.Engine, *args: Any, **kwargs: Any) -> None:
        nonlocal done
        original(self, *args, **kwargs)
        done = True
        if first_done is not None:
            first_done.set()

    async def show_progress(
        _progress: Progress[ResourceKind, State], *_args: Any, **_kwargs: Any
    ) -> None:
        nonlocal first_done
        if not done:
            first_done = anyio.Event()
            await first_done.wait()
        raise Boom

    mp.setattr(runner.engine.scheduler.Engine, "_finish", finish)
    mp.setattr(runner.app.display, "show_progress", show_progress)


def in_metrics(mp: pytest.MonkeyPatch) -> None:
    """The metrics exporter raises on its first write."""

    async def write_periodically(*_args: Any, **_kwargs: Any) -> None:
        await anyio.lowlevel.checkpoint()
        raise Boom

    mp.setattr(runner.app.metrics, "write_periodically", write_periodically)


STAGES = [
    pytest.param(in_discovery, "discovery", (), id="discovery"),
    pytest.param(in_admission, "admitting", (), id="admission"),
    pytest.param(in_send, "deletion worker", (), id="send"),
    pytest.param(in_outcome, "deletion worker", (), id="outcome"),
    pytest.param(in_poll, "Operation tracker", (), id="poll"),
    pytest.param(in_writer, "checkpoint writer", (), id="writer"),
    pytest.param(in_report, "report", (), id="report"),
    pytest.param(in_display, "progress display", (), id="display"),
    pytest.param(in_metrics, "metrics", ("--metrics-textfile", "m.prom"), id="metrics"),
]


def footers(log: Path) -> list[int]:
    """The exit codes of the log's footers, in order."""
    lines = [json.loads(raw) for raw in log.read_text().splitlines() if raw.strip()]
    return [line["exit"] for line in lines if line.get("t") == "E"]


def recorded_done(log: Path) -> set[tuple[str, str]]:
    """(kind, id) of every target the log records as deleted or gone (after a request or not)."""
    return {
        (row["kind"], row["id"])
        for row in rows(read_checkpoint(log))
        if row["outcome"] in ("deleted", "gone", "gone_after_request")
    }


async def expected_targets(emu: Any) -> set[tuple[str, str]]:
    """What SPEC selects in the demo dataset."""
    messages = {
        ("message", m["sid"])
        for m in await emu.resources("message")
        if m["conversation_sid"] in CONVERSATIONS
    }
    return messages | {("conversation_v2", c["id"]) for c in await emu.resources("conversation_v2")}


def human_lines(stderr: str) -> list[str]:
    """What stderr says to a person: its plain lines, and the text of the `said` events that
    stand for them with JSON logs (the other JSON log lines left out)."""
    said = []
    for line in stderr.splitlines():
        if not line.startswith("{"):
            said += [line] if line.strip() else []
        elif (event := json.loads(line)).get("event") == "said":
            said.append(event["text"])
    return said


def log_events(stderr: str, name: str) -> list[dict[str, Any]]:
    """The JSON log events called ``name`` on stderr."""
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [e for e in events if e.get("event") == name]


@pytest.mark.parametrize(("install", "stage", "extra"), STAGES)
async def test_an_internal_error_stops_with_8_and_resume_finishes(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    install: Install,
    stage: str,
    extra: tuple[str, ...],
) -> None:
    """A fault at this stage exits 8 with footer 8, one line and no traceback, records nothing
    as done that the server did not do, and `bulkops resume` deletes the rest exactly once."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        expected = await expected_targets(emu)
        spec = job(workdir, SPEC)

        with pytest.MonkeyPatch.context() as mp:
            install(mp)
            code = await run_cli("run", spec, "--log-format", "json", *extra)

        (log,) = checkpoints(workdir)
        err = capsys.readouterr().err
        assert code == ExitCode.INTERNAL
        assert footers(log)[-1] == 8
        assert "Traceback" not in err and "SECRET-TEXT" not in err and "+1415" not in err
        (line,) = human_lines(err)
        assert line.startswith("internal error: ") and stage in line
        assert "Boom" in line and f"bulkops resume {log}" in line
        (event,) = log_events(err, "internal_error")
        assert event["error_type"].endswith("Boom") and event["frames"]
        assert set(event["frames"][0]) == {"file", "line", "function"}
        ledger = await emu.ledger()
        before = recorded_done(log)
        assert before <= deleted(ledger)
        deleted_before = len(deleted(ledger))

        capsys.readouterr()
        assert await run_cli("resume", log) == ExitCode.OK

        ledger = await emu.ledger()
        assert deleted(ledger) == expected
        assert max(successful_deletes(ledger).values()) == 1
        assert recorded_done(log) == expected
        assert footers(log)[-1] == 0
        with capsys.disabled():  # `pytest -s` shows the figures docs/reliability.md quotes
            figures = {
                "stage": stage,
                "selected": len(expected),
                "deleted_before_fault": deleted_before,
                "recorded_done_before_fault": len(before),
                "lost": len(expected - deleted(ledger)),
                "duplicates": sum(n - 1 for n in successful_deletes(ledger).values()),
            }
            print(f"\nFIGURES {json.dumps(figures)}")


async def test_resume_or_start_and_status_continue_a_run_stopped_by_an_internal_error(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`status` names exit 8 and the resume; `run --resume-or-start` continues that run (not a
    new one) and finishes it."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        expected = await expected_targets(emu)
        spec = job(workdir, SPEC)
        with pytest.MonkeyPatch.context() as mp:
            in_send(mp)
            assert await run_cli("run", spec) == ExitCode.INTERNAL
        (log,) = checkpoints(workdir)
        capsys.readouterr()

        assert await run_cli("status", log) == ExitCode.OK
        out = " ".join(capsys.readouterr().out.split())
        assert f"stopped by an internal error (exit 8) — continue with: bulkops resume {log}" in out

        assert await run_cli("run", spec, "--resume-or-start") == ExitCode.OK
        assert "resume-or-start: resume" in capsys.readouterr().out
        assert checkpoints(workdir) == [log]
        ledger = await emu.ledger()
        assert deleted(ledger) == expected
        assert max(successful_deletes(ledger).values()) == 1


async def test_a_fault_outside_a_run_is_one_line_and_exit_8(
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A command that is not a run (here `report`) meeting an unexpected exception prints one
    line naming it, exit 8, and no traceback or exception text."""
    log = workdir / "x.jsonl"

    def read_checkpoint(*_args: Any, **_kwargs: Any) -> Any:
        raise Boom

    # The CLI imports it when the command runs: patched where it is imported from.
    monkeypatch.setattr(runner.log.replay, "read_checkpoint", read_checkpoint)

    assert await run_cli("report", log) == ExitCode.INTERNAL

    err = capsys.readouterr().err
    assert "Traceback" not in err and "SECRET-TEXT" not in err
    (line,) = human_lines(err)
    assert line.startswith("internal error: ") and "`bulkops report`" in line

