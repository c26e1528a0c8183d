"""Resuming a big checkpoint: replay time, peak memory and log bytes per target (issue 4's figure).

Issue 4 asks that resuming a 1M-target log reach its first request in under 5 s and 150 MB, with
at most ~150 bytes of log per target (issue 7 tightens that to 120). This script writes such a
log — N message targets as the runner writes them (a requested line per conversation's page, the
deletions grouped by writer batch), all deleted, except the last 10, which are v2 conversations
accepted with an Operation pending — next to a job spec that selects them, then measures in a fresh
subprocess (so the memory is that process's own) what a resume does before its first request:
import the CLI, read the log (``replay_log``: its snapshot and the lines after it), load the spec
and plan it.

The log gets its resume snapshot (issue 16 §3), as the run that wrote it would have left at its
exit: the snapshot is written from a full replay of the log (timed: ``snapshot_write_s``) before
anything is measured. ``--no-snapshot`` leaves it out, to time the full replay of every line.

With ``--end-to-end`` it also starts the emulator (empty dataset) in this process, runs
``python -m runner resume LOG`` against it and times process start → the first request in the
emulator's ledger (whose ``time`` is the emulator's wall clock, epoch seconds, taken when the
response is finished), with the child's peak RSS at that moment and over its whole life (which
includes writing the completion report); its output goes to ``resume.out`` beside the log.

Peak memory is the kernel's per-process high-water mark ``VmHWM`` (``/proc/PID/status``), not
``getrusage().ru_maxrss``: on Linux a child started by ``subprocess`` inherits its parent's
``ru_maxrss`` (the parent's memory is counted at exec), so that figure reports whichever is
larger, this script or the child. ``ru_maxrss_mb`` is printed too, to show the difference.

    python bench/resume_scale.py [--targets 1000000] [--json FILE] [--dir DIR] [--end-to-end]
                                 [--no-snapshot]

A benchmark: it prints figures beside their goals and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import orjson

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import vm_hwm_mb  # noqa: E402  (after the sys.path fix-up)
from runner.app.job import new_run_id  # noqa: E402
from runner.kinds.base import Target  # noqa: E402
from runner.kinds.registry import by_name  # noqa: E402
from runner.log.records import Header, State, group_records, target_record  # noqa: E402
from runner.log.replay import read_checkpoint  # noqa: E402
from runner.log.snapshot import snapshot_path, write_snapshot  # noqa: E402
from runner.plan.planner import build_plan  # noqa: E402
from runner.spec.jobspec import load_spec  # noqa: E402

SPEC = """\
version: 1
name: scale
targets:
  - {kind: messages, where: {conversations: all}}
  - {kind: conversations, api: v2, where: {all: true}}
"""
OPEN_V2 = 10  # the last targets of the log: v2 conversations with an Operation pending
MESSAGES_PER_CONVERSATION = 100
CHUNK = 50_000  # messages per write (a multiple of MESSAGES_PER_CONVERSATION)
BATCH = 20  # records per writer batch, so per grouped deletion line

# (figure, goal, source of the goal); every goal is an upper bound.
GOALS: list[tuple[str, float, str]] = [
    ("resume_s", 5.0, "issue 4"),
    ("peak_rss_mb", 150.0, "issue 4"),
    ("checkpoint_bytes_per_target", 150.0, "issue 4"),
    ("checkpoint_bytes_per_target", 120.0, "issue 7"),
    ("first_request_s", 5.0, "issue 4"),
    ("first_request_peak_rss_mb", 150.0, "issue 4"),
    ("resume_s", 1.5, "issue 16, 1M"),
    ("first_request_s", 1.5, "issue 16, 1M"),
    ("first_request_s", 3.0, "issue 16, 10M"),
    ("first_request_peak_rss_mb", 300.0, "issue 16, 10M"),
]

# Runs in the measured subprocess: the steps `bulkops resume` takes before it sends anything.
MEASURE = r"""
import json, resource, sys, time
from datetime import datetime
from pathlib import Path
spawned = float(sys.argv[2])
def hwm_mb():
    for row in open("/proc/self/status"):
        if row.startswith("VmHWM:"):
            return int(row.split()[1]) / 1024
t0 = time.perf_counter()
import runner.cli
import runner.app.resume  # everything `bulkops resume` imports (aiohttp, rich, pydantic, ...)
from runner.log.snapshot import replay_log
from runner.plan.planner import build_plan
from runner.spec.jobspec import load_spec
t1 = time.perf_counter()
rss_imports = hwm_mb()
log = Path(sys.argv[1])
replay = replay_log(log)
t2 = time.perf_counter()
rss_read = hwm_mb()
spec = load_spec(log.parent / replay.header.spec_path)
plan = build_plan(
    spec, datetime.fromisoformat(replay.header.frozen_now), frozen_times=replay.header.times
)
assert plan.fingerprint == replay.header.fingerprint, "the header does not match the spec"
t3 = time.perf_counter()
print(json.dumps({
    "import_s": t1 - t0,
    "read_checkpoint_s": t2 - t1,
    "plan_s": t3 - t2,
    "resume_s": time.time() - spawned,
    "rss_after_imports_mb": rss_imports,
    "rss_after_read_mb": rss_read,
    "peak_rss_mb": hwm_mb(),
    "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "replayed_targets": sum(replay.counts().values()),
    "open_targets": len(replay.open),
    "warnings": len(replay.warnings),
    "from_snapshot": type(replay.states).__name__ == "SortedDigests",
}))
"""


def write_spec(directory: Path) -> Path:
    """The job spec the log belongs to, beside it (the header names it relative to the log)."""
    path = directory / "job.yaml"
    path.write_text(SPEC)
    return path


def make_header(spec_path: Path, log_path: Path) -> Header:
    """A header as `bulkops run` writes it: the spec's fingerprint, times and canonical form."""
    now = datetime.now(UTC)
    plan = build_plan(load_spec(spec_path), now)
    return Header(
        run_id=new_run_id(now),
        job=plan.name,
        fingerprint=plan.fingerprint,
        frozen_now=plan.frozen_now,
        times=plan.times_json,
        spec_path=os.path.relpath(spec_path, log_path.parent),
        config_path=None,
        version="0.1.0",
        started=now.isoformat(),
        canonical_spec=plan.canonical,
    )


def message_lines(start: int, stop: int, rate: int) -> bytes:
    """The lines a run writes for messages ``start``..``stop`` (whole conversations): one
    requested line per conversation's page, then the deletions grouped by the second they
    finished in, a writer batch (~20 records) per line — as the writer groups them."""
    out: list[bytes] = []
    for first in range(start, stop, MESSAGES_PER_CONVERSATION):
        last = min(first + MESSAGES_PER_CONVERSATION, stop)
        ids = [f"IM{n:032x}" for n in range(first, last)]
        parent = f"CH{first // MESSAGES_PER_CONVERSATION:032x}"
        out.append(orjson.dumps({"s": "Q", "k": "m", "c": parent, "ids": ids}))
        for at in range(0, len(ids), BATCH):
            ts = (first + at) // rate
            out.append(orjson.dumps({"s": "D", "k": "m", "ts": ts, "ids": ids[at : at + BATCH]}))
    return b"\n".join(out) + b"\n"


def generate_log(directory: Path, targets: int) -> Path:
    """Write the spec and a log of ``targets`` targets; the last OPEN_V2 are accepted v2 ones."""
    spec_path = write_spec(directory)
    log_path = directory / "scale.jsonl"
    header = make_header(spec_path, log_path)
    messages = max(targets - OPEN_V2, 0)
    # The fast path must write what the runner's writer writes for the same records.
    chunk = message_lines(0, MESSAGES_PER_CONVERSATION, 10**9)
    records = [
        target_record(message_target(n), State.REQUESTED) for n in range(MESSAGES_PER_CONVERSATION)
    ] + [
        target_record(message_target(n), State.DELETED, ts=0, with_parent=False)
        for n in range(MESSAGES_PER_CONVERSATION)
    ]
    grouped = group_records(records[:MESSAGES_PER_CONVERSATION]) + [
        line
        for at in range(MESSAGES_PER_CONVERSATION, len(records), BATCH)
        for line in group_records(records[at : at + BATCH])
    ]
    assert chunk == b"".join(orjson.dumps(r) + b"\n" for r in grouped), "writer format drifted"
    rate = 400  # targets per second of the recorded run, for realistic ts values
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(orjson.dumps(header.to_record()) + b"\n")
        for start in range(0, messages, CHUNK):
            out.write(message_lines(start, min(start + CHUNK, messages), rate))
        ts = messages // rate
        for n in range(targets - messages):
            target = Target(by_name("conversation_v2"), f"conv_conversation_0{n:025d}")
            for record in (
                target_record(target, State.REQUESTED),
                target_record(
                    target,
                    State.ACCEPTED,
                    ts=ts,
                    operation=f"proc_job_0{n + 10**9:025d}",
                    with_parent=False,
                ),
            ):
                out.write(orjson.dumps(record) + b"\n")
    return log_path


def message_target(n: int) -> Target:
    """The ``n``-th message of the generated log."""
    return Target(
        by_name("message"), f"IM{n:032x}", f"CH{n // MESSAGES_PER_CONVERSATION:032x}"
    )


def measure_read(log_path: Path) -> dict[str, Any]:
    """Run MEASURE in a fresh interpreter and return its figures."""
    spawned = time.time()
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(log_path), repr(spawned)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"measurement failed:\n{done.stderr}")
    figures: dict[str, Any] = json.loads(done.stdout)
    figures["process_s"] = time.time() - spawned
    return figures


async def measure_end_to_end(log_path: Path) -> dict[str, Any]:
    """Run `bulkops resume` on the log against an emulator; time and memory to its first request."""
    import aiohttp

    from runner.emulator import (
        DEFAULT_ACCOUNT_SID,
        DEFAULT_AUTH_TOKEN,
        EmulatorSettings,
        generate,
        running_emulator,
    )

    async with (
        running_emulator(EmulatorSettings(), generate("empty")) as url,
        aiohttp.ClientSession() as session,
    ):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "BULKOPS_"))}
        env |= {
            "TWILIO_ACCOUNT_SID": DEFAULT_ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": DEFAULT_AUTH_TOKEN,
            "BULKOPS_CONVERSATIONS_URL": url,
            "BULKOPS_MEMORY_URL": url,
        }
        output = log_path.with_name("resume.out")
        with output.open("wb") as sink:
            started = time.time()  # the ledger's clock is the emulator's wall clock (epoch s)
            # A plain Popen, not anyio's: wait4 below must reap it, not the loop's child watcher.
            child = subprocess.Popen(  # noqa: ASYNC220  (spawning is quick; waiting is threaded)
                [sys.executable, "-m", "runner", "resume", str(log_path)],
                cwd=ROOT,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        # Poll the child: its memory high-water mark while it lives, and the ledger until the
        # first request shows up (the memory at that moment is the figure).
        hwm_at_first: float | None = None
        hwm_max = 0.0
        while True:
            # WNOHANG: wait4 returns at once, so this does not block the emulator's loop.
            pid, status, _usage = os.wait4(child.pid, os.WNOHANG)  # noqa: ASYNC222
            if pid:
                break
            hwm_max = max(hwm_max, vm_hwm_mb(child.pid) or 0.0)
            if hwm_at_first is None:
                async with session.get(f"{url}/_emulator/ledger/summary") as resp:
                    if (await resp.json())["requests"]:
                        hwm_at_first = vm_hwm_mb(child.pid)
            await anyio.sleep(0.01)
        child.returncode = os.waitstatus_to_exitcode(status)
        ended = time.time()
        async with session.get(f"{url}/_emulator/ledger") as resp:
            requests = (await resp.json())["requests"]
    first = min((r["time"] for r in requests), default=None)
    return {
        "first_request_s": None if first is None else first - started,
        "first_request_peak_rss_mb": hwm_at_first,
        "whole_resume_s": ended - started,
        "whole_resume_peak_rss_mb": hwm_max,
        "resume_exit_code": child.returncode,
        "resume_requests": len(requests),
    }


def print_table(figures: dict[str, Any]) -> None:
    """The figures, each with its goals beside it."""
    goals: dict[str, list[str]] = {}
    for name, bound, source in GOALS:
        value = figures.get(name)
        verdict = "" if value is None else (" ok" if value <= bound else " MISSED")
        goals.setdefault(name, []).append(f"≤ {bound:g} ({source}){verdict}")
    width = max(len(k) for k in figures)
    for name, value in figures.items():
        if isinstance(value, float):
            shown = f"{value:,.3f}"
        elif isinstance(value, int) and not isinstance(value, bool):
            shown = f"{value:,}"
        else:
            shown = str(value)
        print(f"{name:<{width}}  {shown:>14}  {'; '.join(goals.get(name, []))}")


def main() -> None:
    """Generate the log, measure it, print the figures (and write them as JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--targets", type=int, default=1_000_000)
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--dir", type=Path, help="keep the log here (default: a temp directory)")
    parser.add_argument(
        "--end-to-end",
        action="store_true",
        help="also run `bulkops resume` against the emulator and time its first request",
    )
    parser.add_argument(
        "--no-snapshot",
        action="store_true",
        help="leave the log without its resume snapshot: a resume replays every line",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="resume_scale_") as tmp:
        directory: Path = args.dir or Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        began = time.perf_counter()
        log_path = generate_log(directory, args.targets)
        figures: dict[str, Any] = {
            "targets": args.targets,
            "generate_s": time.perf_counter() - began,
            "checkpoint_bytes": log_path.stat().st_size,
            "checkpoint_bytes_per_target": log_path.stat().st_size / max(args.targets, 1),
        }
        if not args.no_snapshot:
            began = time.perf_counter()
            # As a run's exit writes it: from the log read back (compact, as a big run's is).
            write_snapshot(read_checkpoint(log_path, compact_for=args.targets))
            figures["snapshot_write_s"] = time.perf_counter() - began
            figures["snapshot_bytes_per_target"] = snapshot_path(log_path).stat().st_size / max(
                args.targets, 1
            )
        figures |= measure_read(log_path)
        if args.end_to_end:
            figures |= anyio.run(measure_end_to_end, log_path, backend="asyncio")

    print_table(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
