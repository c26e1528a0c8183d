"""`bulkops verify` end to end: a real run against the emulator, then a verify over HTTP, judged by
the emulator's ledger and resources and by the evidence file (checked against its schema)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from runner.cli import main
from tests.runner.conftest import REPO, checkpoints, point_at, run_cli
from tests.runner.test_run_faults import SUPPORT_SERVICE, job

SCHEMA = json.loads((REPO / "docs" / "schemas" / "verify.json").read_text())

# Every kind bulkops deletes, small enough to run in a second: the demo's rules and old Users.
PURGE = f"""service: {SUPPORT_SERVICE}
targets:
  - kind: conversations
    where: {{state: closed, created_before: 180d}}
  - kind: messages
    where: {{conversations: all, created_before: 90d}}
  - kind: participants
    where: {{conversations: {{state: inactive, updated_before: 120d}}}}
  - kind: conversations
    api: v2
    where: {{status: CLOSED}}
  - kind: configurations
    where: {{created_before: 30d}}
  - kind: memory_stores
    where: {{all: true}}
  - kind: users
    where: {{created_before: 180d}}
retry: {{max_attempts: 3, base_delay: 0.01, max_delay: 0.05}}
operations: {{poll_interval: 0.1}}
"""
# A quicker purge for the tests of the verify itself: a few dozen targets of three kinds.
SMALL = f"""service: {SUPPORT_SERVICE}
targets:
  - kind: conversations
    api: v2
    where: {{status: CLOSED}}
  - kind: memory_stores
    where: {{all: true}}
  - kind: users
    where: {{created_before: 180d}}
retry: {{max_attempts: 3, base_delay: 0.01, max_delay: 0.05}}
operations: {{poll_interval: 0.1}}
"""


def evidence(workdir: Path) -> dict[str, Any]:
    """The verify file of the one run in ``workdir``, checked against its schema."""
    (log,) = checkpoints(workdir)
    document: dict[str, Any] = json.loads(log.with_suffix(".verify.json").read_text())
    jsonschema.validate(document, SCHEMA)
    return document


def fetches(ledger: dict[str, Any], since: int) -> list[dict[str, Any]]:
    """The GETs of single resources (not lists, not Operations) after request ``since``."""
    return [
        r
        for r in ledger["requests"]
        if r["seq"] > since
        and r["method"] == "GET"
        and not r["path"].endswith(("Messages", "Participants", "Conversations", "Users"))
        and not r["path"].endswith(("Configurations", "Stores"))
        and "/Operations/" not in r["path"]
    ]


async def purged(emu: Any, workdir: Path, spec: str = SMALL) -> tuple[Path, int]:
    """Run a purge; its log and the last ledger sequence number of the run."""
    assert await run_cli("run", job(workdir, spec)) == 0
    (log,) = checkpoints(workdir)
    return log, (await emu.ledger())["requests"][-1]["seq"]


async def test_verify_passes_after_a_full_run(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a run that deleted every kind, verify fetches each target the log records as gone
    (every GET answers 404), lists the selection again, sends no DELETE, exits 0, and files the
    evidence: counts per kind, the cutoffs the run froze, the SHA-256 of the reports it
    verified."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        log, ran = await purged(emu, workdir, PURGE)

        assert await run_cli("verify", log) == 0

        ledger = await emu.ledger()
        after = [r for r in ledger["requests"] if r["seq"] > ran]
        assert {r["method"] for r in after} == {"GET"}
        fetched = fetches(ledger, ran)
        assert fetched and {r["status"] for r in fetched} == {404}
        document = evidence(workdir)
        assert document["verified"] is True and document["exit_code"] == 0
        assert document["remaining"] == [] and document["errors"] == []
        assert document["checked"] == document["population"] == len(fetched)
        assert set(document["by_kind"]) == {
            "message",
            "participant",
            "conversation_v1",
            "conversation_v2",
            "configuration",
            "memory_store",
            "user",
        }
        assert document["listing"]["sources"] == 7 and document["sample"] is None
        frozen = json.loads(log.with_suffix(".report.json").read_text())["resolved"]
        assert document["resolved"] == frozen and len(frozen["cutoffs"]) == 5
        for suffix in (".report.csv", ".report.json"):
            report = log.with_suffix(suffix)
            digest = hashlib.sha256(report.read_bytes()).hexdigest()
            assert document["reports"][report.name] == digest


async def test_verify_fails_naming_what_remains(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """When the server answers some deletes without acting, the run exits 0 but verify exits 1
    and names exactly those targets, found by their fetch and by the listing, IDs only."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        conv = next(
            c
            for c in await emu.resources("conversation_v1")
            if c["service_sid"] == SUPPORT_SERVICE and c["state"] != "closed"
        )
        cutoff = datetime.now(UTC) - timedelta(days=90)
        old = [
            m
            for m in await emu.resources("message")
            if m["conversation_sid"] == conv["sid"]
            and datetime.fromisoformat(m["date_created"]) < cutoff
        ]
        v2 = next(c for c in await emu.resources("conversation_v2") if c["status"] == "CLOSED")
        user = next(
            u
            for u in await emu.resources("user")
            if u["service_sid"] == SUPPORT_SERVICE
            and datetime.fromisoformat(u["date_created"]) < cutoff - timedelta(days=90)
        )
        kept = {
            ("message", old[0]["sid"]),
            ("conversation_v2", v2["id"]),
            ("user", user["sid"]),
        }
        await emu.configure(keep_resources=[i for _k, i in kept])
        log, _ran = await purged(emu, workdir, PURGE)
        capsys.readouterr()

        assert await run_cli("verify", log) == 1

        document = evidence(workdir)
        assert document["verified"] is False
        assert {(r["kind"], r["id"]) for r in document["remaining"]} == kept
        assert all(r["found_by"] == ["fetch", "listing"] for r in document["remaining"])
        err = capsys.readouterr().err
        assert all(i in err for _k, i in kept) and "not verified" in err


async def test_sample_checks_n_with_a_recorded_seed(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--sample N fetches N targets, records the seed, and the same seed fetches the same ones;
    without --seed a seed is drawn and recorded. Evidence that cannot be written is no proof."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        log, ran = await purged(emu, workdir)

        assert await run_cli("verify", log, "--sample", "5", "--seed", "7") == 0
        first = fetches(await emu.ledger(), ran)
        document = evidence(workdir)
        assert len(first) == document["checked"] == 5 < document["population"]
        assert document["sample"] == {"size": 5, "seed": 7}
        since = (await emu.ledger())["requests"][-1]["seq"]
        assert await run_cli("verify", log, "--sample", "5", "--seed", "7") == 0
        again = fetches(await emu.ledger(), since)
        assert sorted(r["path"] for r in again) == sorted(r["path"] for r in first)

        assert await run_cli("verify", log, "--sample", "2") == 0
        assert isinstance(evidence(workdir)["sample"]["seed"], int)

        log.with_suffix(".verify.json").unlink()
        log.with_suffix(".verify.json").mkdir()
        capsys.readouterr()
        assert await run_cli("verify", log, "--sample", "1") == 1
        assert "not verified: cannot write" in " ".join(capsys.readouterr().err.split())


async def test_a_429_during_verify_is_waited_out(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Throttled during verify, it pauses as the 429 asks (nothing is sent into a pause) and
    still proves every target gone; a pause longer than retry.max_pause stops it (exit 9)."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        log, _ran = await purged(emu, workdir)
        # The Memory host allows one request at a time, 20 a second: the store GETs collide.
        await emu.configure(product_rate={"memory": [20, 1]}, retry_after_s=0)

        assert await run_cli("verify", log) == 0

        ledger = await emu.ledger()
        assert ledger["throttled"]["product_rate"] > 0
        assert sum(ledger["sent_during_pause"].values()) == 0
        assert evidence(workdir)["verified"] is True

        # A pause beyond retry.max_pause is not waited for: exit 9, as for a run.
        await emu.configure(retry_after_s=100_000)
        assert await run_cli("verify", log) == 9


async def test_other_answers_are_classified(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Answers other than 200 and 404 are errors with their exit code and one line, never a
    traceback: 500s past the retries are not proof (exit 1, each target in the evidence with
    its status), refused credentials exit 4."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        log, _ran = await purged(emu, workdir)
        await emu.configure(fault_500=1.0)
        capsys.readouterr()

        assert await run_cli("verify", log) == 1
        document = evidence(workdir)
        assert len(document["errors"]) == document["checked"] > 0
        assert {e["status"] for e in document["errors"]} == {500}
        assert document["listing"]["errors"]
        err = " ".join(capsys.readouterr().err.split())
        assert "could not be checked" in err and "Traceback" not in err

        await emu.configure(fault_500=0.0, auth_token="x" * 32, api_key=None, api_secret=None)
        assert await run_cli("verify", log) == 4
        err = " ".join(capsys.readouterr().err.split())
        assert "credentials refused (HTTP 401)" in err and "Traceback" not in err


async def test_a_damaged_log_is_refused_before_any_request(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A log damaged before its last line is the checkpoint error status and report give: exit 2,
    nothing sent; --seed without --sample is bad input too."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        log, ran = await purged(emu, workdir)
        lines = log.read_bytes().splitlines(keepends=True)
        log.write_bytes(lines[0] + b"{not json\n" + b"".join(lines[1:]))
        capsys.readouterr()

        assert await run_cli("verify", log) == 2
        assert await run_cli("status", log) == 2
        assert "corrupt at line 2" in capsys.readouterr().err
        assert await run_cli("verify", log, "--seed", "3") == 2

        assert (await emu.ledger())["requests"][-1]["seq"] == ran


async def test_a_run_that_left_failures_is_not_proven(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Targets the log leaves failed are not proof of anything: verify exits 1, counts them,
    says to resume with --retry-failed, and the listing finds them still there."""
    async with start_emulator(operation_failure_rate=1.0) as emu:
        point_at(monkeypatch, emu.url)
        assert await run_cli("run", job(workdir, SMALL)) == 1
        (log,) = checkpoints(workdir)
        capsys.readouterr()

        assert await run_cli("verify", log) == 1

        document = evidence(workdir)
        asynchronous = {c["id"] for c in await emu.resources("conversation_v2")} | {
            s["id"] for s in await emu.resources("memory_store")
        }
        assert document["unfinished"]["failed"] > 0
        assert document["remaining"]
        assert {r["id"] for r in document["remaining"]} <= asynchronous
        assert "--retry-failed" in " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize("sample", ["0", "-1", "many"])
def test_a_sample_must_be_a_positive_count(sample: str, capsys: pytest.CaptureFixture[str]) -> None:
    """--sample takes a whole number of targets, 1 or more: anything else is exit 2."""
    with pytest.raises(SystemExit) as exited:
        main(["verify", "any.jsonl", "--sample", sample])
    assert exited.value.code == 2 and "--sample" in capsys.readouterr().err
