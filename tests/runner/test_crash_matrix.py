"""Crash anywhere, resume, and nothing is lost or done twice: the SIGKILL matrix.

A job over every resource kind (≥ 2,000 targets; Operations with a delay; rate limits; ~5 %
injected faults) runs as a real process and is SIGKILLed at seeded random moments, then resumed
— sometimes killed again mid-resume — until a resume completes. The emulator lives in the test
process, so its ledger sees every request of every attempt. After each seed: every selected
target deleted exactly once, no Operation created twice for one target, nothing outside the
selection touched, and the final report agreeing with the ledger.

The default seed count keeps CI quick; the full matrix is
``BULKOPS_CRASH_SEEDS=100 pytest tests/runner/test_crash_matrix.py``.
"""

from __future__ import annotations

import contextlib
import csv
import os
import random
import shutil
import signal
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from runner.errors import CheckpointError
from runner.log.records import State
from runner.log.replay import read_checkpoint
from runner.log.snapshot import snapshot_path, write_snapshot
from tests.runner.conftest import (
    deleted,
    point_at,
    start_bulkops,
    successful_deletes,
    until_or_ended,
)
from tests.runner.test_run_faults import job

SEEDS = int(os.environ.get("BULKOPS_CRASH_SEEDS", "8"))
DATASET = {
    "conversations": 140,
    "messages_per_conversation": 20,
    "participants_per_conversation": 2,
    "conversations_v2": 30,
    "configurations": 6,
    "stores": 4,
}
EMULATOR = {
    "operation_pending_s": 0.3,
    "operation_running_s": 0.3,
    "fault_500": 0.02,
    "fault_503": 0.01,
    "fault_reset": 0.01,
    "fault_bad_body": 0.01,
    "product_rate": {"conversations": (1500.0, 150)},
}
SPEC = """service: {service}
targets:
  - kind: conversations
    where: {{state: closed, created_before: 180d}}
  - kind: messages
    where: {{conversations: all, created_before: 7d}}
  - kind: participants
    where: {{conversations: {{state: inactive}}}}
  - kind: conversations
    api: v2
    where: {{status: [CLOSED, INACTIVE]}}
  - kind: configurations
    where: {{all: true}}
  - kind: memory_stores
    where: {{all: true}}
limits: {{concurrency: 32}}
retry: {{base_delay: 0.05, max_delay: 0.5, max_attempts: 20}}
operations: {{poll_interval: 0.2}}
"""


async def selection(emu: Any, now: datetime) -> set[tuple[str, str]]:
    """What SPEC selects, from the emulator's own view of its data."""
    convs = await emu.resources("conversation_v1")
    doomed = {
        c["sid"]
        for c in convs
        if c["state"] == "closed"
        and datetime.fromisoformat(c["date_created"]) < now - timedelta(days=180)
    }
    inactive = {c["sid"] for c in convs if c["state"] == "inactive"}
    chosen = {("conversation_v1", sid) for sid in doomed}
    chosen |= {
        ("message", m["sid"])
        for m in await emu.resources("message")
        if m["conversation_sid"] not in doomed
        and datetime.fromisoformat(m["date_created"]) < now - timedelta(days=7)
    }
    chosen |= {
        ("participant", p["sid"])
        for p in await emu.resources("participant")
        if p["conversation_sid"] in inactive
    }
    chosen |= {
        ("conversation_v2", c["id"])
        for c in await emu.resources("conversation_v2")
        if c["status"] in ("CLOSED", "INACTIVE")
    }
    chosen |= {("configuration", c["id"]) for c in await emu.resources("configuration")}
    chosen |= {("memory_store", s["id"]) for s in await emu.resources("memory_store")}
    return chosen


def moments(log: Path, sources: int) -> set[str]:
    """What the run was doing when it was killed, judged from its log (several at once)."""
    try:
        replay = read_checkpoint(log)
    except CheckpointError:
        return {"before the header"}
    if replay.exit_code is not None:
        return {"writing the final report"}
    seen = {"during discovery" if len(replay.discovery_done) < sources else "after discovery"}
    states = {rec.state for rec in replay.open.values()}
    if State.ACCEPTED in states:
        seen.add("operations pending")
    if State.REQUESTED in states:
        seen.add("requests in flight")
    return seen


def leave_snapshots(rng: random.Random, log: Path) -> str | None:
    """What processes killed at any moment may leave beside the log, snapshots on (the runs
    write one every 0.1 s here, in a process of their own that a kill leaves running, and at
    their exit): sometimes one more, of the log as it is now, as an exit writes it; then
    maybe a snapshot cut off while being written (its aside, ``.snap.partial``, or, as damage,
    the snapshot itself), a garbled one, or a stale one (the log grew since). What was left,
    if anything. Every resume must finish the job exactly once whatever it finds."""
    try:
        replay = read_checkpoint(log)
    except CheckpointError:
        return None  # no header yet
    snap = snapshot_path(log)
    if rng.random() < 0.3:
        # No process holds the log between attempts, but the snapshot process of a killed run
        # may still be at work on its aside: the rename of one of the two then fails (OSError),
        # as a run's own does then (a warning), and the resume copes with whatever is left.
        with contextlib.suppress(OSError):
            write_snapshot(replay)
    if not snap.exists():
        return None
    data = snap.read_bytes()
    what = rng.choice(["stale or fresh", "partial aside", "cut short", "garbled"])
    if what == "partial aside":
        snap.with_name(snap.name + ".partial").write_bytes(data[: rng.randrange(len(data))])
    elif what == "cut short":
        snap.write_bytes(data[: rng.randrange(len(data))])
    elif what == "garbled":
        garbled = bytearray(data)
        garbled[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        snap.write_bytes(bytes(garbled))
    return what


def unmatch_snapshot(log: Path, left: str | None, turns: Counter[str]) -> str | None:
    """In turn, one intact snapshot left by :func:`leave_snapshots` in two (``stale or fresh``)
    becomes: no snapshot at all (removed, its aside too: a checkpoint of an older bulkops, or
    one whose snapshots were never written), or an intact snapshot that no longer matches its
    log — the log restored from a copy of itself (another inode, as a backup restore leaves
    it), so the snapshot, whole and with a valid digest, was written for another file. What
    was left in the end. Taken in turn, not drawn: the seeds' draws (and so their kill
    moments, and the other kinds of snapshot left) stay the ones the matrix was tuned on."""
    if left != "stale or fresh":
        return left
    turns[left] += 1
    what = ("removed", left, "log restored", left)[(turns[left] - 1) % 4]
    snap = snapshot_path(log)
    if what == "removed":
        snap.unlink(missing_ok=True)
        snap.with_name(snap.name + ".partial").unlink(missing_ok=True)
    elif what == "log restored":
        copy = log.with_name(log.name + ".restored")
        shutil.copy2(log, copy)  # its mode too: a log must be 0600
        os.replace(copy, log)
    return what


def next_step(spec: Path, log: Path) -> list[str]:
    """`run` again if the killed run left no header (nothing to resume), else `resume`."""
    if moments(log, 6) == {"before the header"}:
        return ["run", str(spec), "--checkpoint", str(log)]
    return ["resume", str(log)]


async def drive(
    process: Any, emu: Any, kill_after: int | None, log_lines: Path | None = None
) -> int | None:
    """Wait for the process, or SIGKILL it once the emulator has answered ``kill_after`` more
    requests (0: at once, during start-up) counted from its start — or, for a process started
    ``watched``, from its ``listing_done`` log line (its log lines are copied to
    ``log_lines``); its exit code if it ended first.

    The moment is a count of requests, not a time: on a busy machine a process starts and runs
    slower, and a kill after N seconds then lands ever earlier in its work (or in start-up).
    Both are events: the emulator's ledger (it runs in this process) and a line on a pipe."""
    code: int | None = None
    async with process, anyio.create_task_group() as tg:
        listed = anyio.Event()
        if log_lines is not None:
            tg.start_soon(copy_lines, process.stderr, log_lines, listed)
        with anyio.fail_after(120):
            if kill_after is None:
                code = await process.wait()
            else:
                if log_lines is not None:
                    await until_or_ended(process, listed.wait())
                if kill_after:
                    goal = emu.requests() + kill_after
                    await until_or_ended(process, emu.until(requests=goal))
                if process.returncode is not None:
                    code = int(process.returncode)
                else:
                    process.send_signal(signal.SIGKILL)
                    await process.wait()
                    emu.client_gone()
    return code


async def copy_lines(stream: Any, path: Path, listed: anyio.Event) -> None:
    """Copy a process's log lines to ``path`` to their end, setting ``listed`` at the line
    that says its discovery is done."""
    lines = BufferedByteReceiveStream(stream)
    with path.open("ab") as out:
        while True:
            try:
                line = await lines.receive_until(b"\n", 1 << 20)
            except (anyio.EndOfStream, anyio.IncompleteRead):
                return
            out.write(line + b"\n")
            if b'"listing_done"' in line:
                listed.set()


# The matrix is CPU-bound (about 6 s of CPU per seed: five processes started, 2,000 targets,
# replays), so its length scales with how much CPU the machine spares: about a minute on two
# idle cores, three and more beside a busy neighbour. The timeout follows the work, not a guess
# at the machine (the last resort: no kill is timed, only the whole).
@pytest.mark.timeout(120 + 45 * SEEDS)
async def test_sigkill_anywhere_then_resume_is_exactly_once(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Across the seeded kill matrix, every selected target ends deleted exactly once."""
    seen: Counter[str] = Counter()
    kills = 0
    into_pauses: Counter[str] = Counter()  # sent_during_pause over every seed: must stay 0
    snapshots: Counter[str] = Counter()  # what each resume found beside its log
    turns: Counter[str] = Counter()  # unmatch_snapshot's
    # Snapshots on: every process of the matrix writes one every 0.1 s (once its log grew).
    monkeypatch.setenv("BULKOPS_SNAPSHOT_SECONDS", "0.1")
    monkeypatch.setenv("BULKOPS_SNAPSHOT_BYTES", "1")
    for seed in range(SEEDS):
        rng = random.Random(seed)
        async with start_emulator(
            preset="scale", dataset_seed=seed, dataset_args=DATASET, seed=seed, **EMULATOR
        ) as emu:
            point_at(monkeypatch, emu.url)
            service = next(s["sid"] for s in await emu.resources("service") if not s["default"])
            expected = await selection(emu, datetime.now(UTC))
            assert len(expected) >= 2000
            directory = workdir / f"seed-{seed}"
            directory.mkdir()
            spec = job(directory, SPEC.format(service=service), name="crash")
            log = directory / "crash.jsonl"
            for attempt in range(rng.choice([4, 5, 6])):
                # Every other seed waits for discovery to end once, so kills land mid-deletion too.
                late = seed % 2 == 1 and attempt == 0
                snapshots["written by a run" if snapshot_path(log).exists() else "none"] += 1
                left = unmatch_snapshot(log, leave_snapshots(rng, log), turns)
                snapshots[left or "none"] += 1
                process = await start_bulkops(next_step(spec, log), directory, watched=late)
                if late:
                    requests = rng.randint(0, 400)
                else:  # one kill in six during start-up, the others anywhere in the run
                    requests = 0 if rng.random() < 1 / 6 else rng.randint(1, 1500)
                lines = directory / "stderr.log" if late else None
                code = await drive(process, emu, requests, lines)
                if code is not None:
                    break  # it finished before the kill
                kills += 1
                seen.update(moments(log, 6))
            snapshots[unmatch_snapshot(log, leave_snapshots(rng, log), turns) or "none"] += 1
            code = await drive(await start_bulkops(next_step(spec, log), directory), emu, None)
            assert code == 0, f"seed {seed}: final resume exit {code}"

            ledger = await emu.ledger()
            assert max(successful_deletes(ledger).values()) == 1, f"seed {seed}: double delete"
            into_pauses.update(ledger["sent_during_pause"])
            assert sum(ledger["sent_during_pause"].values()) == 0, (
                f"seed {seed}: sent into a pause {ledger['sent_during_pause']}"
            )
            direct = deleted(ledger, "request", "operation")
            assert direct == expected - {
                ("message", d["id"]) for d in ledger["deletions"] if d["via"] == "cascade"
            } - {("participant", d["id"]) for d in ledger["deletions"] if d["via"] == "cascade"}
            doomed = {i for k, i in expected if k == "conversation_v1"}
            assert all(
                d["conversation_sid"] in doomed
                for d in ledger["deletions"]
                if d["via"] == "cascade"
            ), f"seed {seed}: a cascade outside the selection"
            per_target = Counter(o["resource_id"] for o in ledger["operations"])
            assert not per_target or max(per_target.values()) == 1, f"seed {seed}: two Operations"
            rows = report_rows_at(log)
            assert {
                (r["kind"], r["id"])
                for r in rows
                if r["outcome"] in ("deleted", "gone", "gone_after_request")
            } == direct
            # Nothing was absent before the run: bulkops deleted every target itself (the
            # ledger's `direct`), so a 404 after a kill or a fault is `gone_after_request`, never
            # `gone` (absent before the run asked). aiohttp's own unseen re-send of a DELETE on a
            # reset connection, which used to make some, is off (wire/client).
            gone = {(r["kind"], r["id"]) for r in rows if r["outcome"] == "gone"}
            assert not gone & direct, f"seed {seed}: gone although bulkops deleted it"
    print(
        f"crash matrix: {SEEDS} seeds, {kills} kills, moments {dict(seen)}, "
        f"sent_during_pause {dict(into_pauses)}, snapshots left {dict(snapshots)}"
    )
    # Issue 4 asks for at least 30 kill moments: the full matrix gives hundreds, the default 8
    # seeds 27-34 here (fewer on a faster machine, where runs finish between kills).
    assert kills >= min(30, 2 * SEEDS), f"only {kills} kills"
    if SEEDS >= 8:
        assert all(
            snapshots[what]
            for what in (
                "written by a run",
                "partial aside",
                "cut short",
                "garbled",
                "removed",
                "log restored",
            )
        ), dict(snapshots)
        for wanted in (
            "during discovery",
            "after discovery",
            "operations pending",
            "requests in flight",
        ):
            assert seen[wanted], f"no kill {wanted}: {dict(seen)}"


def report_rows_at(log: Path) -> list[dict[str, str]]:
    """The completion report written beside ``log``."""
    with log.with_suffix(".report.csv").open() as f:
        return list(csv.DictReader(f))
