"""``--loop``: a run goes on the loop asked for (uvloop by default when it can be imported) and
says which; uvloop asked for where it cannot be imported, or an unknown loop, is bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from runner.app import loop
from runner.app.documents import summary_document
from runner.cli import build_parser
from runner.errors import ConfigError, ExitCode
from runner.log.records import decode_footer_object
from runner.log.replay import read_checkpoint
from tests.runner.conftest import REPO, checkpoints, deleted, point_at, run_cli
from tests.runner.test_run_faults import MESSAGE_PURGE, SUPPORT_SERVICE, job

# bulkops' command line in a Python where `import uvloop` fails, as in one it is not installed
# in: a None in sys.modules makes the import raise ImportError.
WITHOUT_UVLOOP = (
    "import sys; sys.modules['uvloop'] = None; from runner.cli import main; "
    "sys.exit(main(sys.argv[1:]))"
)


async def _three_messages(emu: Any, workdir: Path) -> tuple[Path, set[tuple[str, str]]]:
    """A job deleting three messages of the Support Service, and what it should delete."""
    chosen = [m for m in await emu.resources("message") if m["service_sid"] == SUPPORT_SERVICE]
    chosen = chosen[:3]
    ids = ", ".join(f'"{m["conversation_sid"]}/{m["sid"]}"' for m in chosen)
    spec = job(
        workdir, f"service: {SUPPORT_SERVICE}\ntargets:\n  - {{kind: messages, ids: [{ids}]}}\n"
    )
    return spec, {("message", m["sid"]) for m in chosen}


def _events(path: Path, name: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == name]


async def _bulkops(
    *argv: str | Path, python: str = WITHOUT_UVLOOP
) -> subprocess.CompletedProcess[bytes]:
    """bulkops' command line as a process of its own (uvloop blocked out by default)."""
    return await anyio.run_process(
        [sys.executable, "-c", python, *map(str, argv)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )


@pytest.mark.parametrize("name", [pytest.param("asyncio"), pytest.param("uvloop")])
async def test_each_loop_runs_a_purge_and_says_which(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """`--loop asyncio` and `--loop uvloop` each delete the job's messages, and the
    run_finished line, the log's footer, the JSON report and the summary name that loop."""
    if name == "uvloop":
        pytest.importorskip("uvloop")
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        spec, expected = await _three_messages(emu, workdir)
        logs = workdir / "run.log"

        code = await run_cli(
            "run", spec, "--loop", name, "--log-format", "json", "--log-file", logs
        )

        assert code == ExitCode.OK
        assert deleted(await emu.ledger()) == expected
    (finished,) = _events(logs, "run_finished")
    assert finished["loop"] == name
    (log,) = checkpoints(workdir)
    footer = decode_footer_object(json.loads(log.read_text().splitlines()[-1]))
    assert footer.loop == name
    report = json.loads(log.with_suffix(".report.json").read_text())
    assert report["loop"] == name
    assert summary_document(read_checkpoint(log), log)["loop"] == name


async def test_a_resume_on_another_loop_is_the_one_reported(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A log driven on uvloop and resumed on asyncio reports asyncio: the report names the loop
    of the last process that drove it."""
    pytest.importorskip("uvloop")
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        expected = {
            ("message", m["sid"])
            for m in await emu.resources("message")
            if m["service_sid"] == SUPPORT_SERVICE
        }
        spec = job(workdir, MESSAGE_PURGE)
        # The brake stops the first process short of the job (exit 3), so the resume drives it.
        code = await run_cli("run", spec, "--loop", "uvloop", "--max-deletions", "1")
        assert code == ExitCode.ABORTED
        (log,) = checkpoints(workdir)
        assert read_checkpoint(log).loop == "uvloop"

        code = await run_cli("resume", log, "--loop", "asyncio", "--max-deletions", "100000")
        assert code == ExitCode.OK
        assert deleted(await emu.ledger()) == expected

    assert read_checkpoint(log).loop == "asyncio"
    assert json.loads(log.with_suffix(".report.json").read_text())["loop"] == "asyncio"


def test_auto_picks_uvloop_when_it_can_be_imported() -> None:
    """With nothing asked for, a command runs on uvloop where it is importable."""
    pytest.importorskip("uvloop")
    assert loop.choose("auto") == "uvloop"
    assert loop.run(_running) == "uvloop"
    assert loop.choose("asyncio") == "asyncio"
    assert loop.run(_running) == "asyncio"


async def _running() -> str:
    return loop.running()


def test_an_unknown_loop_name_is_refused() -> None:
    """choose() refuses a loop it does not know, naming the ones it does."""
    with pytest.raises(ConfigError, match="choose one of auto, asyncio, uvloop"):
        loop.choose("trio")


async def test_auto_without_uvloop_runs_on_asyncio(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where uvloop cannot be imported, the default runs the job on asyncio's loop."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        spec, expected = await _three_messages(emu, workdir)

        done = await _bulkops("run", spec, "--log-format", "json")

        assert done.returncode == ExitCode.OK, done.stderr.decode()
        assert deleted(await emu.ledger()) == expected
    (log,) = checkpoints(workdir)
    assert read_checkpoint(log).loop == "asyncio"


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        pytest.param(
            ("--loop", "uvloop"),
            "--loop uvloop: uvloop is not installed (or cannot be imported) in this Python; "
            "pip install uvloop (Linux and macOS), or run with --loop asyncio",
            id="uvloop-missing",
        ),
        pytest.param(
            ("--loop", "trio"),
            "argument --loop: invalid choice: 'trio' (choose from 'auto', 'asyncio', 'uvloop')",
            id="unknown-loop",
        ),
    ],
)
@pytest.mark.parametrize("command", ["run", "plan"])
async def test_a_loop_that_cannot_run_is_bad_input(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    argv: tuple[str, ...],
    said: str,
    command: str,
) -> None:
    """uvloop asked for where it cannot be imported, or a loop bulkops does not know: exit 2,
    a message naming the option and the fix, and no request sent."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        spec, _expected = await _three_messages(emu, workdir)
        before = emu.requests()

        done = await _bulkops(command, spec, *argv)

        assert done.returncode == ExitCode.BAD_INPUT
        assert said in " ".join(done.stderr.decode().split())
        assert emu.requests() == before  # nothing sent
    assert checkpoints(workdir) == []


def test_a_footer_naming_an_unknown_loop_is_not_trusted() -> None:
    """A footer's loop is read as asyncio or uvloop only: anything else is a malformed line."""
    assert decode_footer_object({"t": "E", "exit": 0, "loop": "uvloop"}).loop == "uvloop"
    assert decode_footer_object({"t": "E", "exit": 0}).loop is None
    with pytest.raises(ValueError, match="'loop' is not one of asyncio, uvloop"):
        decode_footer_object({"t": "E", "exit": 0, "loop": "<script>"})


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["run", "job.yaml"], id="run"),
        pytest.param(["resume", "log.jsonl"], id="resume"),
        pytest.param(["apply", "plan.jsonl"], id="apply"),
        pytest.param(["plan", "job.yaml"], id="plan"),
        pytest.param(["verify", "log.jsonl"], id="verify"),
        pytest.param(["demo"], id="demo"),
    ],
)
def test_every_command_that_drives_the_engine_takes_loop(argv: list[str]) -> None:
    """run, resume, apply, plan, verify and demo take --loop, auto unless told."""
    parser = build_parser()
    assert parser.parse_args(argv).loop == "auto"
    assert parser.parse_args([*argv, "--loop", "asyncio"]).loop == "asyncio"


def test_the_engine_is_started_in_one_place() -> None:
    """No module of runner/ but app/loop calls anyio.run: every command's loop is --loop's."""
    callers = [
        path.relative_to(REPO).as_posix()
        for path in (REPO / "runner").rglob("*.py")
        if "anyio.run(" in path.read_text() and path.name != "loop.py"
    ]
    assert callers == []
