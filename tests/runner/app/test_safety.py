"""Safety brakes and secrecy: max_deletions, and no credential or PII in any artifact."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runner.emulator import DEFAULT_AUTH_TOKEN
from runner.errors import ExitCode
from tests.runner.conftest import (
    REPO,
    checkpoints,
    deleted,
    point_at,
    run_cli,
    successful_deletes,
)
from tests.runner.test_run_faults import SUPPORT_SERVICE, job, report_rows


async def test_explicit_targets_over_max_deletions_send_nothing(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Explicit ids beyond safety.max_deletions stop the run before its first request: exit 3."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        stores = [s["id"] for s in await emu.resources("memory_store")]
        spec = job(
            workdir,
            f"targets:\n  - {{kind: memory_stores, ids: {stores}}}\n"
            f"safety: {{max_deletions: {len(stores) - 1}}}\n",
        )

        assert await run_cli("run", spec) == ExitCode.ABORTED
        assert (await emu.ledger())["requests"] == []


async def test_discovery_beyond_max_deletions_is_a_hard_stop(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Discovery selecting more than max_deletions stops the run with at most that many deleted."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        spec = job(
            workdir,
            f"service: {SUPPORT_SERVICE}\ntargets:\n"
            "  - {kind: messages, where: {conversations: all}}\n"
            "safety: {max_deletions: 10}\n",
        )

        assert await run_cli("run", spec) == ExitCode.ABORTED
        # Pages are admitted whole before any of them is sent, so the brake trips on the page
        # that crosses the limit: what earlier pages held may be deleted, never more than 10,
        # and no more than 10 are even logged as requested.
        ledger = await emu.ledger()
        assert len(deleted(ledger)) <= 10
        rows = report_rows(workdir)
        assert {r["outcome"] for r in rows} <= {"pending", "deleted"}
        assert 0 < len(rows) <= 10
        gone = {i for _, i in deleted(ledger)}
        assert {r["id"] for r in rows if r["outcome"] == "deleted"} == gone


async def test_no_secret_or_pii_reaches_any_artifact(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Logs, checkpoints and reports of a full run (and of a failing one, and of erasure
    requests found and not found), and the evidence of a verify, hold IDs only."""
    async with start_emulator(fault_500=0.05, seed=3) as emu:
        point_at(monkeypatch, emu.url)
        pii = emu.dataset.pii_samples()
        assert len(pii) > 20
        # Erasure requests name people: their identities and addresses stay in the spec and
        # its requests file (neither is an artifact), whether they are found or not.
        default = emu.dataset.default_service.sid
        people = [
            p for c in emu.dataset.conversations if c.service_sid == default for p in c.participants
        ]
        person = next(p.identity for p in people if p.identity)
        phone = next(p.address for p in people if p.address)
        (workdir / "requests.jsonl").write_text(
            json.dumps({"identities": [person], "addresses": [phone]}) + "\n"
        )
        nobody = ["nobody-4711@example.org", "+15550001111"]
        # In every Service at once (the person is found in some, looked for in all).
        erase = job(
            workdir,
            "service: all\ntargets:\n  - {kind: identity, from_file: requests.jsonl}\n"
            f"  - {{kind: identity, identities: ['{nobody[0]}'], addresses: ['{nobody[1]}']}}\n",
            "erase",
        )
        prom = workdir / "metrics" / "bulkops.prom"
        prom.parent.mkdir()
        code = await run_cli(
            "run", erase, "--log-format", "json", "--log-level", "debug",
            "--metrics-textfile", prom,
        )  # fmt: skip
        assert code == ExitCode.OK
        assert prom.read_text()
        pii += [person, phone, *nobody]
        demo = REPO / "jobs" / "demo.yaml"
        code = await run_cli("run", demo, "--log-format", "json", "--log-level", "debug")
        assert code == ExitCode.OK
        await emu.configure(operation_failure_rate=1.0)
        failing = job(workdir, "targets:\n  - {kind: memory_stores, where: {all: true}}\n")
        await run_cli("run", failing, "--log-format", "json", "--log-level", "debug")
        # And the evidence of a verify of the full run (no fault: retries would only be slow).
        await emu.configure(fault_500=0.0)
        for name in ("demo-", "erase-"):
            (log,) = (p for p in checkpoints(workdir) if p.name.startswith(name))
            code = await run_cli("verify", log, "--log-format", "json", "--log-level", "debug")
            assert code == ExitCode.OK
        out = capsys.readouterr()
        assert "target_finished" in out.err
        artifacts = {"stdout": out.out, "stderr": out.err}
        for path in workdir.rglob("*"):
            if path.is_file() and path.suffix != ".yaml" and path.name != "requests.jsonl":
                # A resume snapshot is binary; its meta block (open and failed targets) is text.
                artifacts[str(path)] = path.read_bytes().decode("utf-8", "replace")
                if "checkpoints" in path.parts:
                    assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"
        assert len(artifacts) >= 8
        assert len([p for p in artifacts if p.endswith(".verify.json")]) == 2
        assert [p for p in artifacts if p.endswith(".prom")]
        assert [p for p in artifacts if p.endswith(".snap")], "no resume snapshot was audited"
        for name, text in artifacts.items():
            assert DEFAULT_AUTH_TOKEN not in text, name
            leaked = [s for s in pii if s in text]
            assert not leaked, f"{name} leaks {leaked[:3]}"


async def test_max_deletions_option_clears_a_brake_without_a_spec_edit(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run stopped by safety.max_deletions (exit 3) is resumed with a higher --max-deletions:
    no spec edit, no --force, and the run finishes with every User deleted exactly once."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        users = {
            u["sid"] for u in await emu.resources("user") if u["service_sid"] == SUPPORT_SERVICE
        }
        assert len(users) > 2
        spec = job(
            workdir,
            f"service: {SUPPORT_SERVICE}\n"
            "targets:\n  - {kind: users, where: {all: true}}\nsafety: {max_deletions: 1}\n",
        )
        assert await run_cli("run", spec) == ExitCode.ABORTED
        (log,) = checkpoints(workdir)
        assert len(deleted(await emu.ledger())) <= 1

        # A limit below what the run selects stops it again, counting what it already deleted.
        assert await run_cli("resume", log, "--max-deletions", "2") == ExitCode.ABORTED
        assert len(deleted(await emu.ledger())) <= 2

        assert await run_cli("resume", log, "--max-deletions", str(len(users))) == ExitCode.OK
        ledger = await emu.ledger()
        assert deleted(ledger) == {("user", sid) for sid in users}
        assert max(successful_deletes(ledger).values()) == 1


async def test_max_deletions_option_brakes_a_run_the_spec_does_not(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--max-deletions on `run` brakes a spec that has no limit (and refuses explicit ids beyond
    it before the first request)."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        stores = [s["id"] for s in await emu.resources("memory_store")]
        spec = job(workdir, f"targets:\n  - {{kind: memory_stores, ids: {stores}}}\n")

        assert (
            await run_cli("run", spec, "--max-deletions", str(len(stores) - 1)) == ExitCode.ABORTED
        )
        assert (await emu.ledger())["requests"] == []


@pytest.mark.parametrize("value", ["0", "-3", "ten"])
async def test_max_deletions_option_must_be_a_positive_number(
    workdir: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    """--max-deletions 0 (or not a number) is a usage error naming the option: exit 2."""
    spec = job(workdir, "targets:\n  - {kind: memory_stores, where: {all: true}}\n")
    with pytest.raises(SystemExit) as usage:
        await run_cli("run", spec, "--max-deletions", value)
    assert usage.value.code == ExitCode.BAD_INPUT
    err = capsys.readouterr().err
    assert f"--max-deletions: {value!r} is not a whole number of at least 1" in err
