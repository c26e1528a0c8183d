"""`bulkops resume`: changed specs, locks, moved checkpoints and retried failures."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path
from typing import Any

import pytest

from runner.errors import ExitCode
from runner.log.replay import read_checkpoint
from tests.runner.app.test_interrupt import wait_for_deletions
from tests.runner.conftest import (
    checkpoints,
    deleted,
    point_at,
    run_cli,
    start_bulkops,
    successful_deletes,
)
from tests.runner.test_run_faults import SUPPORT_SERVICE, job, report_rows

V2_PURGE = (
    "targets:\n  - {kind: conversations, api: v2, where: {all: true}}\n"
    "operations: {poll_interval: 0.05}\n"
)


async def test_resume_refuses_a_changed_spec_unless_forced(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A spec edited since the run started is refused, naming the change; --force overrides."""
    async with start_emulator(operation_failure_rate=1.0) as emu:
        point_at(monkeypatch, emu.url)
        spec = job(workdir, V2_PURGE)
        assert await run_cli("run", spec) == ExitCode.FAILURES
        (log,) = checkpoints(workdir)
        spec.write_text(spec.read_text().replace("poll_interval: 0.05", "poll_interval: 0.1"))
        requests = len((await emu.ledger())["requests"])
        capsys.readouterr()

        assert await run_cli("resume", log, "--retry-failed") == ExitCode.BAD_INPUT
        err = " ".join(capsys.readouterr().err.split())
        assert "operations.poll_interval: 0.05 -> 0.1" in err
        assert len((await emu.ledger())["requests"]) == requests

        await emu.configure(operation_failure_rate=0.0)
        assert await run_cli("resume", log, "--retry-failed", "--force") == ExitCode.OK
        assert await emu.resources("conversation_v2") == []


async def test_retry_failed_from_another_directory_after_moving_the_checkpoint(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Paths in the log are relative to it: a moved job directory resumes from anywhere."""
    async with start_emulator(operation_failure_rate=1.0) as emu:
        point_at(monkeypatch, emu.url)
        first = workdir / "first"
        first.mkdir()
        monkeypatch.chdir(first)
        job(first, V2_PURGE)
        assert await run_cli("run", first / "job.yaml") == ExitCode.FAILURES
        before = {c["id"] for c in await emu.resources("conversation_v2")}
        moved = workdir / "elsewhere" / "moved"
        shutil.move(first, moved)
        monkeypatch.chdir(workdir)
        (log,) = sorted(moved.glob("checkpoints/*.jsonl"))
        await emu.configure(operation_failure_rate=0.0)

        code = await run_cli("resume", log)
        assert code == ExitCode.FAILURES, "failed targets stay failed without the flag"
        assert await run_cli("resume", log, "--retry-failed") == ExitCode.OK

        ledger = await emu.ledger()
        assert deleted(ledger) == {("conversation_v2", i) for i in before}
        assert {r["outcome"] for r in report_rows(moved)} == {"deleted"}


async def test_a_second_process_cannot_drive_a_checkpoint_in_use(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """While a run holds its checkpoint, `resume` of it exits 2 and sends nothing."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        spec = job(
            workdir,
            f"service: {SUPPORT_SERVICE}\ntargets:\n"
            "  - {kind: messages, where: {conversations: all}}\n"
            "limits: {per_conversation_rate: 3}\n",
        )
        process = await start_bulkops(["run", str(spec)], workdir)
        async with process:
            await wait_for_deletions(emu, 1)
            (log,) = checkpoints(workdir)
            seen = len((await emu.ledger())["requests"])
            capsys.readouterr()
            code = await run_cli("resume", log)
            err = capsys.readouterr().err
            process.kill()
            await process.wait()

        assert code == ExitCode.BAD_INPUT
        assert "in use by another bulkops process" in " ".join(err.split())
        resumed_requests = [
            r for r in (await emu.ledger())["requests"][seen:] if r["method"] == "DELETE"
        ]
        assert len(resumed_requests) <= 1 + 3 * 12, "only the first process kept deleting"
        assert await run_cli("resume", log) == ExitCode.OK
        assert max(successful_deletes(await emu.ledger()).values()) == 1


async def test_resuming_a_finished_run_rewrites_a_lost_report(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run killed after its last log line but before its report: resume writes the report
    from the log and sends nothing."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        job(workdir, V2_PURGE)
        assert await run_cli("run", workdir / "job.yaml") == ExitCode.OK
        (log,) = checkpoints(workdir)
        before = report_rows(workdir)
        assert before and {r["outcome"] for r in before} == {"deleted"}
        for suffix in (".report.csv", ".report.json"):
            log.with_suffix(suffix).unlink()
        requests = len((await emu.ledger())["requests"])

        assert await run_cli("resume", log) == ExitCode.OK
        assert report_rows(workdir) == before
        assert log.with_suffix(".report.json").stat().st_mode & 0o777 == 0o600
        assert len((await emu.ledger())["requests"]) == requests


async def test_resume_does_not_list_again_the_conversations_it_listed(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Discovery continues from its recorded progress: the messages of a conversation the
    killed run listed in full are not listed again; every message is still deleted once."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        expected = {
            ("message", m["sid"])
            for m in await emu.resources("message")
            if m["service_sid"] == SUPPORT_SERVICE
        }
        spec = job(
            workdir,
            f"service: {SUPPORT_SERVICE}\ntargets:\n"
            "  - {kind: messages, where: {conversations: all}}\n"
            "limits: {per_conversation_rate: 4}\n",
        )
        process = await start_bulkops(["run", str(spec)], workdir)
        async with process:
            await wait_for_deletions(emu, 5)
            process.send_signal(signal.SIGKILL)
            await process.wait()
        (log,) = checkpoints(workdir)
        listed = read_checkpoint(log).children_listed.get(0, set())
        assert listed, "the killed run had listed some conversations in full"
        before = len((await emu.ledger())["requests"])

        assert await run_cli("resume", log) == ExitCode.OK
        ledger = await emu.ledger()
        relisted = [
            r["path"]
            for r in ledger["requests"][before:]
            if r["method"] == "GET" and any(f"/{sid}/Messages" in r["path"] for sid in listed)
        ]
        assert relisted == []
        assert deleted(ledger) == expected
        assert max(successful_deletes(ledger).values()) == 1
