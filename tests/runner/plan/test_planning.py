"""Selection semantics over real HTTP: covered children, de-duplication, time windows, brakes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from runner.errors import ExitCode
from tests.runner.conftest import deleted, point_at, run_cli, successful_deletes
from tests.runner.test_run_faults import SUPPORT_SERVICE, job, report_rows


async def pick(emu: Any) -> tuple[str, list[str], str, str]:
    """Two Support-service conversations: one with two messages to name, one with one."""
    convs = [
        c["sid"]
        for c in await emu.resources("conversation_v1")
        if c["service_sid"] == SUPPORT_SERVICE
    ]
    messages = await emu.resources("message")
    first = [m["sid"] for m in messages if m["conversation_sid"] == convs[0]][:2]
    other = next(m["sid"] for m in messages if m["conversation_sid"] == convs[1])
    return convs[0], first, convs[1], other


def covered_spec(directory: Path, doomed: str, first: list[str], keep: str, other: str) -> Path:
    """A job deleting conversation ``doomed`` and naming messages inside and outside it, twice."""
    ids = [f"{doomed}/{m}" for m in first] + [f"{keep}/{other}"]
    return job(
        directory,
        f"service: {SUPPORT_SERVICE}\ntargets:\n"
        f"  - {{kind: conversations, ids: [{doomed}]}}\n"
        f"  - {{kind: messages, ids: {ids}}}\n"
        f"  - {{kind: messages, ids: {ids[-1:]}}}\n"
        "retry: {max_attempts: 2, base_delay: 0.01, max_delay: 0.02}\n",
    )


async def test_children_of_a_deleted_conversation_are_covered(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Messages inside a conversation the job deletes are covered, not deleted one by one;
    a message selected twice is deleted once."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        doomed, first, keep, other = await pick(emu)

        code = await run_cli("run", covered_spec(workdir, doomed, first, keep, other))

        assert code == ExitCode.OK
        ledger = await emu.ledger()
        assert deleted(ledger, "request") == {("conversation_v1", doomed), ("message", other)}
        assert max(successful_deletes(ledger).values()) == 1
        outcomes = {r["id"]: r["outcome"] for r in report_rows(workdir)}
        assert outcomes == {doomed: "deleted", other: "deleted"} | dict.fromkeys(first, "covered")


async def test_children_are_deleted_when_their_conversation_cannot_be(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the conversation's delete fails, its selected messages are still deleted."""
    async with start_emulator(fault_20009=1.0) as emu:
        point_at(monkeypatch, emu.url)
        doomed, first, keep, other = await pick(emu)

        code = await run_cli("run", covered_spec(workdir, doomed, first, keep, other))

        assert code == ExitCode.FAILURES
        assert deleted(await emu.ledger()) == {("message", m) for m in [*first, other]}
        outcomes = {r["id"]: r["outcome"] for r in report_rows(workdir)}
        assert outcomes[doomed] == "failed"


async def test_created_after_and_before_bound_a_window(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Messages are deleted only inside [created_after, created_before)."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        now = datetime.now(UTC)
        low, high = now - timedelta(days=200), now - timedelta(days=100)
        expected = {
            ("message", m["sid"])
            for m in await emu.resources("message")
            if m["service_sid"] == SUPPORT_SERVICE
            and low <= datetime.fromisoformat(m["date_created"]) < high
        }
        assert expected
        spec = job(
            workdir,
            f"service: {SUPPORT_SERVICE}\ntargets:\n"
            "  - kind: messages\n"
            "    where: {conversations: all, created_after: 200d, created_before: 100d}\n",
        )

        assert await run_cli("run", spec) == ExitCode.OK
        assert deleted(await emu.ledger()) == expected


async def test_failure_rate_brake_aborts_the_run(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More failures than safety.max_failure_rate (after the minimum count) abort with exit 3."""
    async with start_emulator(operation_failure_rate=1.0) as emu:
        point_at(monkeypatch, emu.url)
        spec = job(
            workdir,
            "targets:\n  - {kind: conversations, api: v2, where: {all: true}}\n"
            "operations: {poll_interval: 0.05}\n"
            "safety: {max_failure_rate: 0.5, failure_rate_min_count: 2}\n",
        )

        assert await run_cli("run", spec) == ExitCode.ABORTED


async def test_status_and_report_read_the_checkpoint(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`status` and `report --format json` describe a finished run from its log alone."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        stores = {s["id"] for s in await emu.resources("memory_store")}
        spec = job(
            workdir,
            "targets:\n  - {kind: memory_stores, where: {all: true}}\n"
            "operations: {poll_interval: 0.05}\n",
        )
        assert await run_cli("run", spec) == ExitCode.OK
        (log,) = sorted(workdir.glob("checkpoints/*.jsonl"))
        capsys.readouterr()

        assert await run_cli("status", log) == ExitCode.OK
        status = capsys.readouterr().out
        assert "memory stores" in status and "finished" in status

        out = workdir / "report.json"
        assert await run_cli("report", log, "--format", "json", "--out", out) == ExitCode.OK
        doc = json.loads(out.read_text())
        assert doc["exit_code"] == ExitCode.OK
        assert doc["summary"]["totals"] == {"deleted": len(doc["targets"])}
        assert {t["id"] for t in doc["targets"]} == stores


async def test_status_of_an_interrupted_run_gives_an_eta(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`status` of a run without its footer reports what is left and an ETA."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        spec = job(
            workdir,
            f"service: {SUPPORT_SERVICE}\ntargets:\n"
            "  - {kind: participants, where: {conversations: all}}\n",
        )
        assert await run_cli("run", spec) == ExitCode.OK
        (log,) = sorted(workdir.glob("checkpoints/*.jsonl"))
        lines = log.read_bytes().splitlines(keepends=True)
        log.write_bytes(b"".join(lines[:-1]))  # as if the run were still going: no footer
        capsys.readouterr()

        assert await run_cli("status", log) == ExitCode.OK

        out = " ".join(capsys.readouterr().out.split())
        assert "ended without a footer" in out and "ETA" in out
        assert f"continue with: bulkops resume {log}" in out
