"""`bulkops verify` resumes like a run (issue 13 §4): an interrupted verify, run again, fetches
only what its journal does not record, lists again only the sources it had not, and files the
evidence an uninterrupted verify would have. Real runs and verifies against the emulator over
HTTP, judged by the emulator's ledger and the evidence file."""

from __future__ import annotations

import fcntl
import json
import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from runner import __version__
from runner.app.verification import gone_targets
from runner.errors import ExitCode
from runner.log.records import encode, key_hash
from runner.log.replay import read_checkpoint
from runner.log.verify_journal import (
    JournalHeader,
    journal_path,
    log_digests,
    read_journal,
    size_bound,
)
from tests.runner.app.test_verify import PURGE, evidence, fetches, purged
from tests.runner.conftest import (
    Emulator,
    checkpoints,
    point_at,
    run_cli,
    start_bulkops,
    until_or_ended,
)
from tests.runner.engine.test_services import DATASET, selection, service_of
from tests.runner.engine.test_services import PURGE as SERVICES_PURGE
from tests.runner.test_run_faults import SUPPORT_SERVICE, job

# What must be the same, resumed or not.
COUNTS = ("population", "sample", "checked", "by_kind", "remaining", "verified", "exit_code")


def counts(document: dict[str, Any]) -> dict[str, Any]:
    """The evidence's counts (not its times), and the listing's."""
    listing = {k: v for k, v in document["listing"].items()}
    return {**{k: document[k] for k in COUNTS}, "listing": listing}


def ids_by_hash(log: Path) -> dict[int, str]:
    """The ID of every target the log records as gone, by its key hash."""
    return {key_hash(t.key): t.id for t in gone_targets(read_checkpoint(log))}


def fetched_ids(ledger: dict[str, Any], since: int) -> list[str]:
    """The ID each single-resource GET after request ``since`` fetched (the path's end) and
    got an answer for (a throttled GET is sent again: its 429 is not counted)."""
    return [
        r["path"].rsplit("/", 1)[1] for r in fetches(ledger, since) if r["status"] in (200, 404)
    ]


def journaled(log: Path) -> tuple[set[int], int]:
    """The key hashes the journal of ``log`` has verdicts on, and how many sources it records."""
    fd = os.open(journal_path(log), os.O_RDONLY)
    try:
        proven, _end = read_journal(fd, size_bound(log.stat().st_size))
    finally:
        os.close(fd)
    return {digest for digest, _ in proven.verdicts.items()}, len(proven.sources)


def events(err: str) -> list[dict[str, Any]]:
    """The JSON log lines among ``err``."""
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


async def last_seq(emu: Emulator) -> int:
    """The number of the latest request to arrive: every later request has a greater one (a
    request a killed verify left in flight, answered later, has a smaller one)."""
    assert emu.state is not None
    return emu.state.ledger.arrived


async def only_gets(emu: Emulator, since: int) -> None:
    ledger = await emu.ledger()
    assert {r["method"] for r in ledger["requests"] if r["seq"] > since} <= {"GET"}


async def interrupted(
    emu: Emulator, workdir: Path, argv: list[str], signum: signal.Signals, after: int
) -> int:
    """Start ``bulkops verify ARGV`` as a process and send it ``signum`` once the emulator has
    answered ``after`` more requests; its exit code."""
    since = await last_seq(emu)
    process = await start_bulkops(["verify", *argv], workdir)
    async with process:
        await until_or_ended(process, emu.until(requests=since + after))
        assert process.returncode is None, "the verify ended before it could be interrupted"
        process.send_signal(signum)
        return await process.wait()


@pytest.mark.parametrize(
    "signum",
    [pytest.param(signal.SIGINT, id="SIGINT"), pytest.param(signal.SIGKILL, id="SIGKILL")],
)
async def test_an_interrupted_verify_resumes(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    signum: signal.Signals,
) -> None:
    """Interrupted part-way (Ctrl-C, or killed), a verify run again fetches none of the targets
    its journal proved — exactly the others — and its evidence counts are an uninterrupted
    verify's, what still remains (found by its fetch and by its listing) included, saying it
    was resumed; the journal is gone once it is done. GETs only."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        # Two deletes the server answers without acting: they remain, found by both checks.
        closed = next(c for c in await emu.resources("conversation_v2") if c["status"] == "CLOSED")
        old = datetime.now(UTC) - timedelta(days=200)
        user = next(
            u
            for u in await emu.resources("user")
            if u["service_sid"] == SUPPORT_SERVICE
            and datetime.fromisoformat(u["date_created"]) < old
        )
        await emu.configure(keep_resources=[closed["id"], user["sid"]])
        log, ran = await purged(emu, workdir, PURGE)
        assert await run_cli("verify", log) == ExitCode.FAILURES
        whole = evidence(workdir)
        assert whole["resumed"] == 0 and not journal_path(log).exists()
        assert {r["id"] for r in whole["remaining"]} == {closed["id"], user["sid"]}
        assert all(r["found_by"] == ["fetch", "listing"] for r in whole["remaining"])
        everything = ids_by_hash(log)
        assert len(everything) == whole["population"] > 20

        # Slow answers, so that the verify is still fetching when it is stopped.
        await emu.configure(latency_median_s=0.3)
        code = await interrupted(emu, workdir, [str(log)], signum, after=30)
        assert code == (ExitCode.INTERRUPTED if signum is signal.SIGINT else -signal.SIGKILL)
        recorded, sources = journaled(log)
        assert recorded <= everything.keys()
        if signum is signal.SIGINT:
            # A graceful stop writes every verdict it had: some, not all.
            assert 0 < len(recorded) < len(everything) and sources > 0

        await emu.configure(latency_median_s=0.0)
        since = await last_seq(emu)
        capsys.readouterr()
        assert await run_cli("verify", log) == ExitCode.FAILURES

        again = fetched_ids(await emu.ledger(), since)
        assert len(again) == len(set(again))
        assert set(again) == {i for d, i in everything.items() if d not in recorded}
        resumed = evidence(workdir)
        assert counts(resumed) == counts(whole) and resumed["resumed"] == 1
        said = capsys.readouterr()
        assert "resuming the verify begun" in said.out
        finished = [e for e in events(said.err) if e["event"] == "verify_finished"]
        assert [(e["checked"], e["resumed"]) for e in finished] == [(len(everything), 1)]
        assert not journal_path(log).exists()
        await only_gets(emu, ran)


async def test_a_resumed_sample_checks_the_same_sample(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sampled verify without --seed, interrupted and run again with the same --sample, takes
    the seed its journal recorded: the two sessions together fetch exactly the sample that seed
    draws, none of it twice but what was in flight."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        log, _ran = await purged(emu, workdir, PURGE)
        await emu.configure(latency_median_s=0.3)
        since = await last_seq(emu)
        assert await interrupted(emu, workdir, [str(log), "--sample", "20"], signal.SIGINT, 8)
        first = fetched_ids(await emu.ledger(), since)
        recorded, _sources = journaled(log)
        assert recorded

        await emu.configure(latency_median_s=0.0)
        resumed_at = await last_seq(emu)
        assert await run_cli("verify", log, "--sample", "20") == 0
        second = fetched_ids(await emu.ledger(), resumed_at)
        document = evidence(workdir)
        assert document["resumed"] == 1 and document["checked"] == 20
        seed = document["sample"]["seed"]

        fresh = await last_seq(emu)
        assert await run_cli("verify", log, "--sample", "20", "--seed", str(seed)) == 0
        sample = set(fetched_ids(await emu.ledger(), fresh))
        assert len(sample) == 20 and set(first) | set(second) == sample
        ids = ids_by_hash(log)
        assert not {ids[d] for d in recorded} & set(second)
        assert evidence(workdir)["resumed"] == 0


def journal_of(log: Path, **changes: Any) -> JournalHeader:
    """The header a verify of ``log`` as it is now would write (``changes`` applied)."""
    replay = read_checkpoint(log)
    head, tail = log_digests(log, replay.size)
    fields: dict[str, Any] = {
        "run_id": replay.header.run_id,
        "log_size": replay.size,
        "log_lines": replay.lines,
        "log_head": head,
        "log_tail": tail,
        "sample_size": None,
        "seed": None,
        "holds": None,
        "version": __version__,
        "started": datetime(2026, 12, 1, tzinfo=UTC).isoformat(),
    }
    return JournalHeader(**{**fields, **changes})


def all_gone(log: Path, header: JournalHeader) -> bytes:
    """A journal of ``header`` that records every target of ``log`` as gone."""
    hashes = [f"{d:x}" for d in ids_by_hash(log)]
    return encode(header.to_record()) + encode({"t": "G", "h": hashes})


async def verify_with(
    emu: Emulator, log: Path, journal: bytes, capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, int, str]:
    """Verify ``log`` with ``journal`` beside it: the exit code, how many targets it fetched,
    and what it said (output and error, on one line each)."""
    path = journal_path(log)
    path.write_bytes(journal)
    path.chmod(0o600)
    since = await last_seq(emu)
    capsys.readouterr()
    code = await run_cli("verify", log, *argv)
    out = capsys.readouterr()
    said = " ".join((out.out + out.err).split())
    await only_gets(emu, since)
    return code, len(fetched_ids(await emu.ledger(), since)), said


async def test_a_journal_is_continued_only_by_its_own_verification(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A journal of this log and sample is continued (what it proves is not fetched again, a
    torn last line dropped silently); one of another sample or seed, of the log before it grew,
    garbled or foreign is ignored with a warning saying why, and the verify starts over;
    --restart discards it. The evidence is the same every time."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        log, _ran = await purged(emu, workdir, PURGE)
        assert await run_cli("verify", log) == 0
        whole = counts(evidence(workdir))
        population = whole["population"]
        header = journal_of(log)

        torn = all_gone(log, header) + b'{"t":"G","h":["ab'
        code, fetched, said = await verify_with(emu, log, torn, capsys)
        assert (code, fetched) == (0, 0) and "resuming the verify begun" in said
        assert "warning" not in said and counts(evidence(workdir)) == whole
        assert evidence(workdir)["started"].startswith("2026-12-01T00:00:00")

        code, fetched, said = await verify_with(
            emu, log, all_gone(log, header), capsys, "--restart"
        )
        assert (code, fetched) == (0, population) and "discarded (--restart)" in said

        sampled = journal_of(log, sample_size=5, seed=8)
        code, fetched, said = await verify_with(
            emu, log, all_gone(log, sampled), capsys, "--sample", "5", "--seed", "7"
        )
        assert (code, fetched) == (0, 5)
        assert (
            "ignored: it is of another verification (--sample 5 --seed 8; this one: --sample 5 "
            "--seed 7); verifying from the start" in said
        )
        code, fetched, said = await verify_with(emu, log, all_gone(log, sampled), capsys)
        assert (code, fetched) == (0, population)
        assert "(--sample 5 --seed 8; this one: every target)" in said

        garbled = encode(header.to_record()) + b"{not json\n" + b'{"t":"G","h":[]}\n'
        code, fetched, said = await verify_with(emu, log, garbled, capsys)
        assert (code, fetched) == (0, population)
        assert "ignored: it is damaged at line 2" in said and "verifying from the start" in said

        code, fetched, said = await verify_with(emu, log, b"a note of mine\n", capsys)
        assert (code, fetched) == (0, population)
        assert "ignored: it has no header line" in said

        foreign = b'{"t":"H","run":"x"}\n'
        code, fetched, said = await verify_with(emu, log, foreign, capsys)
        assert "ignored: it is not a bulkops verify journal" in said and fetched == population

        unsure = all_gone(log, header).replace(b'"h":["', b'"h":["../', 1) + b'{"t":"Z"}\n'
        code, fetched, said = await verify_with(emu, log, unsure, capsys)
        assert "ignored: it is damaged at line 2" in said and fetched == population

        # A resume ran since the verify began: the log grew (its footer, once more).
        before = all_gone(log, header)
        with log.open("ab") as f:
            f.write(log.read_bytes().splitlines(keepends=True)[-1])
        code, fetched, said = await verify_with(emu, log, before, capsys)
        assert (code, fetched) == (0, population)
        assert "ignored: the log has changed since it began" in said
        assert counts(evidence(workdir)) == whole and not journal_path(log).exists()


@pytest.mark.parametrize("planted", ["symlink", "directory", "hard link"])
async def test_a_journal_that_is_not_a_file_of_its_own_is_refused(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    planted: str,
) -> None:
    """A link, a directory or a file with another link at the journal's path is refused (exit
    2, the path and the fix named, nothing sent), never followed or replaced."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        log, _ran = await purged(emu, workdir, PURGE)
        ran = await last_seq(emu)
        path, elsewhere = journal_path(log), workdir / "elsewhere"
        elsewhere.write_bytes(b"precious\n")
        if planted == "symlink":
            path.symlink_to(elsewhere)
            reason = "is a symbolic link"
        elif planted == "directory":
            path.mkdir()
            reason = "is a directory"
        else:
            os.link(elsewhere, path)
            reason = "has 2 hard links"
        capsys.readouterr()

        assert await run_cli("verify", log) == ExitCode.BAD_INPUT

        err = " ".join(capsys.readouterr().err.split())
        assert f"verify journal {path} {reason}" in err and "remove it" in err
        assert elsewhere.read_bytes() == b"precious\n"
        assert await last_seq(emu) == ran


async def test_a_second_verify_of_a_log_is_locked_out(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """While a verify holds a log's journal, another verify of it stops at once: exit 5, saying
    why, nothing sent, the journal untouched."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        log, _ran = await purged(emu, workdir, PURGE)
        ran = await last_seq(emu)
        path = journal_path(log)
        held = journal_of(log)
        path.write_bytes(all_gone(log, held))
        path.chmod(0o600)
        before = path.read_bytes()
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            capsys.readouterr()
            assert await run_cli("verify", log) == ExitCode.LOCKED
        finally:
            os.close(fd)
        err = " ".join(capsys.readouterr().err.split())
        assert f"another bulkops verify of {log} is running" in err
        assert path.read_bytes() == before and await last_seq(emu) == ran


async def test_a_verify_with_checks_it_could_not_make_keeps_its_journal(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A verify whose GETs began to fail part-way (500s past the retries) is not proof (exit 1)
    and keeps its journal, without the failed GETs: run again, it fetches only what it had not
    proven, and files an uninterrupted verify's evidence."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        log, _ran = await purged(emu, workdir, PURGE)
        assert await run_cli("verify", log) == 0
        whole = counts(evidence(workdir))
        everything = ids_by_hash(log)

        await emu.configure(latency_median_s=0.3)
        since = await last_seq(emu)
        process = await start_bulkops(["verify", str(log)], workdir)
        async with process:
            await until_or_ended(process, emu.until(requests=since + 30))
            assert process.returncode is None
            await emu.configure(latency_median_s=0.0, fault_500=1.0)
            assert await process.wait() == ExitCode.FAILURES
        failed = evidence(workdir)
        assert failed["errors"] and failed["verified"] is False
        recorded, _sources = journaled(log)
        assert 0 < len(recorded) == failed["checked"] - len(failed["errors"])

        await emu.configure(fault_500=0.0)
        again_at = await last_seq(emu)
        capsys.readouterr()
        assert await run_cli("verify", log) == 0
        again = fetched_ids(await emu.ledger(), again_at)
        assert set(again) == {i for d, i in everything.items() if d not in recorded}
        assert len(again) == len(set(again))
        resumed = evidence(workdir)
        assert counts(resumed) == whole and resumed["resumed"] == 1
        assert not journal_path(log).exists()


async def test_a_verify_of_several_services_resumes(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A verify of a `service: all` purge, interrupted and run again, names what remains with
    its Service and the Services it listed, as an uninterrupted one does."""
    async with start_emulator(**DATASET) as emu:
        point_at(monkeypatch, emu.url)
        home = await service_of(emu)
        closed = sorted(i for k, i in await selection(emu) if k == "conversation_v1")
        second = next(i for i in closed if home[i] != home[closed[0]])
        await emu.configure(keep_resources=[closed[0], second])
        assert await run_cli("run", job(workdir, "service: all\n" + SERVICES_PURGE, "all")) == 0
        (log,) = checkpoints(workdir)
        assert await run_cli("verify", log) == ExitCode.FAILURES
        whole = evidence(workdir)
        assert {r["service_sid"] for r in whole["remaining"]} == {home[closed[0]], home[second]}

        await emu.configure(latency_median_s=0.3)
        code = await interrupted(emu, workdir, [str(log)], signal.SIGINT, after=10)
        assert code == ExitCode.INTERRUPTED
        recorded, _sources = journaled(log)
        assert recorded

        await emu.configure(latency_median_s=0.0)
        assert await run_cli("verify", log) == ExitCode.FAILURES
        resumed = evidence(workdir)
        assert counts(resumed) == counts(whole) and resumed["resumed"] == 1
