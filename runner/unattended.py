"""Running from cron: one run of a job at a time, and resume-or-start.

A scheduler fires ``bulkops run JOB --resume-or-start`` on a timetable, knowing nothing of the
last invocation. Two things make that safe:

* a lock per job (and shard) in the checkpoint directory — an flock, so a crashed holder's lock
  goes with its process and is taken over at once — so a second invocation while one is active
  exits at once (Kubernetes' ``concurrencyPolicy: Forbid``);
* a decision made from the job's checkpoints alone: continue the newest one if it did not
  finish, do nothing if it finished well within ``--min-interval``, else start anew.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from pathlib import Path

import orjson

from runner.checkpoint import Header
from runner.errors import BulkopsError, ConfigError

# Exit codes of a run that stopped part-way and that `resume` continues.
RESUMABLE = frozenset({4, 6, 7, 8, 9, 130})
BRAKED = 3  # a safety brake stopped it: a person must look before it goes on


class LockedOut(BulkopsError):
    """Another process is running the same job; exit code 5."""


def usable_directory(directory: Path) -> Path:
    """``directory``, created if missing, once a file can be written in it; otherwise a
    ConfigError naming it and the fix (exit 2, before any request)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".bulkops-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"checkpoint directory {directory} cannot be written ({exc.strerror}); set "
            "checkpoint_dir in the config (or --checkpoint-dir) to a writable directory"
        ) from exc
    return directory


@contextlib.contextmanager
def job_lock(directory: Path, job: str, shard: str | None) -> Iterator[Path]:
    """Hold the lock of ``job`` (and ``shard``) in ``directory`` for the life of the block."""
    directory.mkdir(parents=True, exist_ok=True)
    name = f".{job}.{shard}.lock" if shard else f".{job}.lock"
    path = directory / name
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            raise LockedOut(
                f"another bulkops run of job {job!r}{f' ({shard})' if shard else ''} is active "
                f"(pid {holder}, lock {path}); not starting a second one"
            ) from exc
        # Who holds it, for the message above; the flock, not this text, is the lock.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class LogSummary:
    """What a checkpoint says about its run without replaying it: header and last exit code."""

    path: Path
    header: Header
    exit_code: int | None  # None: the last process died without a footer (or is running)


def summarize_log(path: Path) -> LogSummary | None:
    """Header and exit code of the log at ``path``; None if it is not a readable bulkops log."""
    try:
        with path.open("rb") as f:
            first = f.readline()
            header = Header.from_record(orjson.loads(first))
            size = os.fstat(f.fileno()).st_size
            f.seek(max(len(first), size - 4096))
            tail = f.read().splitlines()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    exit_code = None
    if tail:
        # The last line is a footer only if the last process ended properly.
        with contextlib.suppress(ValueError, KeyError, TypeError):
            last = orjson.loads(tail[-1])
            if isinstance(last, dict) and last.get("t") == "E":
                exit_code = int(last["exit"])
    return LogSummary(path, header, exit_code)


def job_logs(directory: Path, job: str, shard: str | None) -> list[LogSummary]:
    """The checkpoints of ``job`` (and ``shard``) in ``directory``, oldest first."""
    found = []
    for path in directory.glob("*.jsonl"):
        summary = summarize_log(path)
        if summary is not None and summary.header.job == job and summary.header.shard == shard:
            found.append(summary)
    return sorted(found, key=lambda s: s.header.started)


class Action(Enum):
    """What a resume-or-start invocation does."""

    START = "start"
    RESUME = "resume"
    SKIP = "skip"  # nothing to do: the last run finished well, recently
    BLOCKED = "blocked"  # the last run hit a safety brake


@dataclass(frozen=True, slots=True)
class Decision:
    """An action, the log it applies to (for RESUME, SKIP and BLOCKED) and why, for the user."""

    action: Action
    log: Path | None
    reason: str


def decide(logs: list[LogSummary], now: datetime, min_interval: timedelta) -> Decision:
    """Resume-or-start from the job's logs (oldest first). Only the newest log counts: an older
    unfinished one was given up when a newer run started."""
    if not logs:
        return Decision(Action.START, None, "no earlier run of this job")
    newest = logs[-1]
    code = newest.exit_code
    if code is None or code in RESUMABLE:
        how = "did not finish" if code is None else f"stopped with exit code {code}"
        return Decision(Action.RESUME, newest.path, f"run {newest.header.run_id} {how}")
    if code == BRAKED:
        return Decision(
            Action.BLOCKED,
            newest.path,
            f"run {newest.header.run_id} was stopped by a safety brake (exit 3); check its "
            f"report, then `bulkops resume {newest.path}` or start a new run without "
            "--resume-or-start",
        )
    age = now - newest.header.started_at
    if code == 0 and age < min_interval:
        return Decision(
            Action.SKIP,
            newest.path,
            f"run {newest.header.run_id} finished well {_ago(age)} ago, within --min-interval",
        )
    return Decision(
        Action.START, None, f"the last run ({newest.header.run_id}) finished with exit {code}"
    )


def _ago(age: timedelta) -> str:
    minutes = int(age.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"
