"""Bad input through the real CLI: exit 2, the problem named, and not one request on the wire."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from runner.errors import ExitCode
from tests.runner.conftest import REPO, point_at, run_cli
from tests.runner.spec.test_bad_specs import CASES, generate_bad_row_manifest, read_case

REJECTED = [p for p in CASES if read_case(p).expect is not None]


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in REJECTED])
async def test_bad_input_exits_2_and_sends_nothing(
    path: Path,
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each corpus case makes `bulkops run` exit 2 naming the problem; the ledger stays empty."""
    case = read_case(path)
    if case.generate is not None:
        copy = workdir / path.name
        shutil.copy(path, copy)
        generate_bad_row_manifest(workdir / case.generate)
        path = copy
    async with start_emulator() as emu:
        if case.config:
            for name in list(os.environ):
                if name.startswith(("TWILIO_", "BULKOPS_")):
                    monkeypatch.delenv(name)
            for name, value in case.env.items():
                monkeypatch.setenv(name, value)
            argv: list[Any] = ["run", REPO / "jobs" / "demo.yaml", "--config", path]
        else:
            point_at(monkeypatch, emu.url)
            argv = ["run", path]

        code = await run_cli(*argv)

        err = capsys.readouterr().err
        assert code == ExitCode.BAD_INPUT
        assert case.expect is not None and case.expect in " ".join(err.split())
        assert "nothing was sent" in err
        assert (await emu.ledger())["requests"] == []


async def test_plan_and_dry_run_send_no_delete(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`bulkops plan` and `run --dry-run` list targets with GETs only and delete nothing."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        for job in sorted((REPO / "jobs").glob("*.yaml")):
            assert await run_cli("plan", job) == ExitCode.OK, job
            assert await run_cli("run", job, "--dry-run") == ExitCode.OK, job
        methods = {r["method"] for r in (await emu.ledger())["requests"]}
        assert methods == {"GET"}
        assert not list(workdir.glob("checkpoints/*"))
