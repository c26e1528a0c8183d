"""`bulkops status`: the state in words, the pace over the time at work, a job's latest run."""

from __future__ import annotations

import dataclasses
import fcntl
import os
from pathlib import Path
from typing import Any

import pytest

from runner.errors import ExitCode
from runner.log.records import State, footer_record, progress_record, target_record
from runner.log.replay import read_checkpoint
from tests.runner.conftest import run_cli
from tests.runner.log.test_checkpoint import HEADER, message, requested, write_log

# A run of one source (the header's spec lists one target) over ten messages.
ONE_SOURCE = dataclasses.replace(HEADER, canonical_spec={"targets": [{"kind": "messages"}]})
TARGETS = [message(n) for n in range(10)]


def session(first: int, count: int, ts: int) -> list[dict[str, Any]]:
    """Targets ``first``… requested, then deleted at ``ts`` seconds into the run."""
    chosen = TARGETS[first : first + count]
    return [
        *(requested(t) for t in chosen),
        *(target_record(t, State.DELETED, ts=ts, with_parent=False) for t in chosen),
    ]


def interrupted_then_resumed(path: Path) -> Path:
    """A log of two processes, a day apart: 4 deleted in the first 10 s (then Ctrl-C, exit
    130), 4 more in the 10 s of a resume a day later, interrupted again; 2 left requested."""
    day = 86_400
    return write_log(
        path,
        progress_record(0, 10, done=True),
        *session(0, 4, 9),
        footer_record(ExitCode.INTERRUPTED, 10),
        *session(4, 4, day + 5),
        *(requested(t) for t in TARGETS[8:]),
        footer_record(ExitCode.INTERRUPTED, day + 10),
        header=ONE_SOURCE,
    )


def said(capsys: pytest.CaptureFixture[str]) -> str:
    return " ".join(capsys.readouterr().out.split())


def test_active_time_sums_each_process_not_the_pause_between() -> None:
    """The replay's time at work is 10 s + 5 s (from the resume's first timed line to its
    footer), not the day between the two processes."""
    path = interrupted_then_resumed(Path(os.environ.get("TMPDIR", "/tmp")) / "x.jsonl")
    try:
        replay = read_checkpoint(path)
    finally:
        path.unlink()
    assert replay.active_seconds == 15
    assert replay.exit_code == ExitCode.INTERRUPTED


async def test_interrupted_run_in_words_with_the_resume_command(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An interrupted run: its state and the command that continues it, the rate over the
    time at work (8 targets in 15 s), an ETA; never `exit code None`."""
    log = interrupted_then_resumed(workdir / "purge-r1.jsonl")

    assert await run_cli("status", log) == ExitCode.OK

    out = said(capsys)
    assert f"interrupted (exit 130) — continue with: bulkops resume {log}" in out
    assert "rate 0.5 targets/s over 15 s of work" in out
    assert "ETA about 4 s for the 2 targets left" in out
    assert "None" not in out


async def test_finished_run_in_words(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A finished run says so with its counts (thousands grouped) and no command to go on."""
    log = write_log(
        workdir / "purge-r1.jsonl",
        progress_record(0, 10, done=True),
        *session(0, 10, 3),
        footer_record(ExitCode.OK, 4),
        header=ONE_SOURCE,
    )

    assert await run_cli("status", log) == ExitCode.OK

    out = said(capsys)
    assert "finished: 10 deleted, 0 failed" in out
    assert "continue with" not in out and "ETA" not in out


async def test_a_run_in_progress_is_running_with_its_pid(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """While a process holds the log's lock, status says `running (pid …)`, the pid the job's
    lock file names."""
    log = write_log(workdir / "purge-r1.jsonl", *session(0, 4, 2), header=ONE_SOURCE)
    (workdir / ".purge.lock").write_text("4242\n")
    fd = os.open(log, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as the running process holds it
        assert await run_cli("status", log) == ExitCode.OK
    finally:
        os.close(fd)

    out = said(capsys)
    assert "running (pid 4242)" in out
    assert "ETA unknown: 1 of 1 sources still being listed" in out


async def test_status_of_a_job_spec_reads_its_latest_run(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`status JOB.yaml` finds the job's newest checkpoint in the config's checkpoint
    directory (./checkpoints by default), not an older one or another job's."""
    directory = workdir / "checkpoints"
    directory.mkdir(mode=0o700)
    older = dataclasses.replace(ONE_SOURCE, run_id="r1", started="2026-11-20T06:00:00+00:00")
    newer = dataclasses.replace(ONE_SOURCE, run_id="r2", started="2026-11-21T06:00:00+00:00")
    other = dataclasses.replace(newer, job="other", started="2026-11-22T06:00:00+00:00")
    write_log(directory / "purge-r2.jsonl", footer_record(ExitCode.OK, 1), header=newer)
    write_log(directory / "purge-r1.jsonl", footer_record(130, 1), header=older)
    write_log(directory / "other-r3.jsonl", footer_record(130, 1), header=other)
    spec = workdir / "purge.yaml"
    spec.write_text(
        "version: 1\nname: purge\ntargets:\n  - {kind: memory_stores, where: {all: true}}\n"
    )

    assert await run_cli("status", spec) == ExitCode.OK
    assert "job purge · run r2" in said(capsys)

    elsewhere = workdir / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    assert await run_cli("status", spec, "--checkpoint-dir", elsewhere) == ExitCode.BAD_INPUT
    assert f"no checkpoint of job 'purge' in {elsewhere}" in " ".join(
        capsys.readouterr().err.split()
    )


async def test_failures_and_brakes_in_words(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run that finished with failures names --retry-failed; one a brake stopped says to
    look first, and how --max-deletions goes on."""
    failed = target_record(TARGETS[9], State.FAILED, ts=3, code=50300, with_parent=False)
    log = write_log(
        workdir / "purge-r1.jsonl",
        progress_record(0, 10, done=True),
        *session(0, 9, 3),
        requested(TARGETS[9]),
        failed,
        footer_record(ExitCode.FAILURES, 4),
        header=ONE_SOURCE,
    )
    assert await run_cli("status", log) == ExitCode.OK
    assert (
        f"finished: 9 deleted, 1 failed — continue with: bulkops resume --retry-failed {log}"
        in said(capsys)
    )

    braked = write_log(
        workdir / "purge-r2.jsonl", *session(0, 2, 1), footer_record(3, 2), header=ONE_SOURCE
    )
    assert await run_cli("status", braked) == ExitCode.OK
    out = said(capsys)
    assert "stopped by a safety brake (exit 3); look at the report before going on" in out
    assert f"`bulkops resume --max-deletions N {braked}`" in out
