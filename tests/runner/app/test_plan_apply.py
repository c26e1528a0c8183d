"""Plan → review → apply (issue #6): `bulkops plan JOB --out PLAN` lists, `bulkops apply PLAN`
deletes exactly that list — judged by the emulator's ledger — and refuses a plan that is old,
damaged or whose spec changed, sending nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from runner.errors import ExitCode
from runner.plan.planfile import read_plan
from tests.runner.app.test_interrupt import wait_for_deletions
from tests.runner.conftest import (
    checkpoints,
    deleted,
    point_at,
    run_cli,
    start_bulkops,
    successful_deletes,
)
from tests.runner.test_run_faults import SUPPORT_SERVICE, job

SPEC = f"""service: {SUPPORT_SERVICE}
targets:
  - kind: conversations
    where: {{state: closed}}
  - kind: messages
    where: {{conversations: all, created_before: 1d}}
  - kind: conversations
    api: v2
    where: {{all: true}}
limits: {{per_conversation_rate: 8}}
operations: {{poll_interval: 0.05}}
"""


def assert_deleted_exactly(ledger: dict[str, Any], chosen: set[tuple[str, str]]) -> None:
    """Every listed target went (itself, or with its conversation), once; nothing else did."""
    cascaded = {("message", d["id"]) for d in ledger["deletions"] if d["via"] == "cascade"}
    direct = deleted(ledger, "request", "operation")
    assert direct | cascaded >= chosen
    assert direct <= chosen
    assert max(successful_deletes(ledger).values()) == 1


def listed(plan: Path) -> set[tuple[str, str]]:
    """(kind, id) of every target the plan lists."""
    found = read_plan(plan)
    return {(t.kind.name, t.id) for r in found.counts for t in found.targets(r)}


async def test_apply_deletes_exactly_what_the_plan_lists(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`plan --out` sends only GETs; `apply` deletes the listed targets (covered messages go
    with their conversation), lists nothing itself, and touches nothing else."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        spec = job(workdir, SPEC)
        plan = workdir / "reviewed.plan"
        assert await run_cli("plan", spec, "--out", plan) == ExitCode.OK
        after_plan = (await emu.ledger())["requests"]
        assert after_plan and {r["method"] for r in after_plan} == {"GET"}
        chosen = listed(plan)
        assert {k for k, _ in chosen} == {"conversation_v1", "message", "conversation_v2"}
        text = plan.read_text()
        assert "body" not in text and "author" not in text  # IDs only

        assert await run_cli("apply", plan) == ExitCode.OK
        ledger = await emu.ledger()
        applied = ledger["requests"][len(after_plan) :]
        lists = [r for r in applied if r["method"] == "GET" and "/Operations/" not in r["path"]]
        assert lists == [], "apply lists nothing: its targets are the plan's"
        assert_deleted_exactly(ledger, chosen)


async def test_apply_refuses_a_changed_spec_an_old_plan_and_a_damaged_one(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each refusal exits 2 with its reason, and the emulator sees no request at all."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        spec = job(workdir, SPEC)
        plan = workdir / "reviewed.plan"
        assert await run_cli("plan", spec, "--out", plan) == ExitCode.OK
        requests = len((await emu.ledger())["requests"])
        capsys.readouterr()

        lines = plan.read_bytes().splitlines(keepends=True)
        # A plan made two hours ago (its header's time: the digest covers the targets only).
        header = orjson.loads(lines[0])
        header["created"] = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
        aged = workdir / "aged.plan"
        aged.write_bytes(orjson.dumps(header) + b"\n" + b"".join(lines[1:]))
        assert await run_cli("apply", aged, "--max-age", "1h") == ExitCode.BAD_INPUT
        assert "older than --max-age" in capsys.readouterr().err

        edited = workdir / "edited.plan"
        target = orjson.loads(lines[1])
        target["ids"] = target["ids"][:-1] if len(target["ids"]) > 1 else target["ids"] * 2
        edited.write_bytes(lines[0] + orjson.dumps(target) + b"\n" + b"".join(lines[2:]))
        assert await run_cli("apply", edited) == ExitCode.BAD_INPUT
        assert "cut or edited" in capsys.readouterr().err
        cut = workdir / "cut.plan"
        cut.write_bytes(b"".join(lines[:-1]))
        assert await run_cli("apply", cut) == ExitCode.BAD_INPUT
        assert "end line is missing" in capsys.readouterr().err

        spec.write_text(spec.read_text().replace("created_before: 1d", "created_before: 2d"))
        assert await run_cli("apply", plan) == ExitCode.BAD_INPUT
        err = " ".join(capsys.readouterr().err.split())
        assert "changed since plan" in err and "created_before: '1d' -> '2d'" in err

        assert len((await emu.ledger())["requests"]) == requests
        assert checkpoints(workdir) == []


async def test_a_killed_apply_resumes_from_its_plan(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An apply killed part-way resumes from the plan it recorded: the list is finished exactly
    once, and nothing the plan does not list is deleted."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        spec = job(workdir, SPEC.replace("per_conversation_rate: 8", "per_conversation_rate: 3"))
        plan = workdir / "reviewed.plan"
        assert await run_cli("plan", spec, "--out", plan) == ExitCode.OK
        chosen = listed(plan)

        process = await start_bulkops(["apply", str(plan)], workdir)
        async with process:
            await wait_for_deletions(emu, 3)
            process.send_signal(signal.SIGKILL)
            await process.wait()
        (log,) = checkpoints(workdir)
        assert await run_cli("resume", log) == ExitCode.OK

        ledger = await emu.ledger()
        assert_deleted_exactly(ledger, chosen)


async def test_apply_on_a_terminal_asks_and_a_no_sends_nothing(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above --confirm-above, apply on a terminal asks; anything but "yes" exits 3 with nothing
    sent. (Off a terminal it never asks: the test above applies without --yes.)"""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        spec = job(workdir, SPEC)
        plan = workdir / "reviewed.plan"
        assert await run_cli("plan", spec, "--out", plan) == ExitCode.OK
        requests = len((await emu.ledger())["requests"])

        primary, secondary = os.openpty()
        child: subprocess.Popen[bytes] | None = None
        with (
            (workdir / "out.txt").open("wb") as out,
            (workdir / "err.txt").open("wb") as err,
        ):
            try:
                child = subprocess.Popen(  # noqa: ASYNC220 (a terminal needs a plain child)
                    [sys.executable, "-m", "runner", "apply", str(plan), "--confirm-above", "1"],
                    stdin=secondary,
                    stdout=out,
                    stderr=err,
                    env=dict(os.environ),
                    cwd=workdir,
                )
                os.write(primary, b"no\n")
                # A plain child has no awaitable end: a worker thread waits for it.
                await anyio.to_thread.run_sync(child.wait, abandon_on_cancel=True)
            finally:
                if child is not None and child.poll() is None:  # timed out: the child goes too
                    child.kill()
                os.close(primary)
                os.close(secondary)
        assert child is not None and child.returncode == ExitCode.ABORTED
        assert "not confirmed" in (workdir / "err.txt").read_text()
        assert len((await emu.ledger())["requests"]) == requests
