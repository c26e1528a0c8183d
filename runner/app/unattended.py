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
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from pathlib import Path

from runner.errors import (
    CheckpointError,
    ConfigError,
    ExitCode,
    LockedOut,
    UntrustedFile,
)
from runner.files import (
    check_directory_trust,
    create_new,
    make_private_directory,
    open_own,
    open_regular,
)
from runner.log.records import Header, decode_footer, decode_header
from runner.spec.config import Config

# Exit codes of a run that stopped part-way and that `resume` continues.
RESUMABLE = frozenset(
    {
        ExitCode.AUTH,
        ExitCode.CHECKPOINT,
        ExitCode.OUT_OF_TIME,
        ExitCode.INTERNAL,
        ExitCode.PAUSED,
        ExitCode.INTERRUPTED,
    }
)
# A safety brake stopped it (ExitCode.ABORTED): a person must look before it goes on.


def usable_directory(directory: Path) -> Path:
    """``directory``, created if missing (0700), once it is trusted (:func:`trusted_directory`)
    and a file can be written in it; otherwise an InputError naming it and the fix (exit 2,
    before any request)."""
    try:
        make_private_directory(directory)
    except OSError as exc:
        raise ConfigError(_unwritable(directory, exc)) from exc
    trusted_directory(directory)
    try:
        # A new file of a random name, created exclusively: the probe never opens (let alone
        # truncates) anything already there, a planted link included.
        probe = directory / f".bulkops-write-test-{os.getpid()}-{secrets.token_hex(4)}"
        os.close(create_new(probe))
        probe.unlink()
    except OSError as exc:
        raise ConfigError(_unwritable(directory, exc)) from exc
    return directory


def _unwritable(directory: Path, exc: OSError) -> str:
    return (
        f"checkpoint directory {directory} cannot be written ({exc.strerror}); set "
        "checkpoint_dir in the config (or --checkpoint-dir) to a writable directory"
    )


def trusted_directory(directory: Path) -> None:
    """Refuse (exit 2) a checkpoint directory others could plant a checkpoint or a link in."""
    try:
        check_directory_trust(directory)
    except UntrustedFile as exc:
        raise CheckpointError(f"checkpoint directory {exc.path} {exc.reason}; {exc.fix}") from exc


@contextlib.contextmanager
def job_lock(directory: Path, job: str, shard: str | None) -> Iterator[Path]:
    """Hold the lock of ``job`` (and ``shard``) in ``directory`` for the life of the block.

    The lock file is opened without following a link and only if it is this user's own regular
    file, since its content (the holder's pid) is rewritten."""
    make_private_directory(directory)
    trusted_directory(directory)
    path = directory / _lock_name(job, shard)
    try:
        fd = open_own(path, os.O_RDWR, create=True)
    except UntrustedFile as exc:
        raise CheckpointError(
            f"job lock {path} {exc.reason}; bulkops only locks a file of its own: remove it"
        ) from exc
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


def lock_holder(directory: Path, job: str, shard: str | None) -> int | None:
    """The pid :func:`job_lock` wrote in the job's lock file, if it holds a number (read only:
    the probe of whether a run is active is the checkpoint's flock, not this text)."""
    try:
        fd = open_own(directory / _lock_name(job, shard), os.O_RDONLY)
    except (UntrustedFile, OSError):
        return None
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
    finally:
        os.close(fd)
    return int(text) if text.isdigit() else None


def _lock_name(job: str, shard: str | None) -> str:
    return f".{job}.{shard}.lock" if shard else f".{job}.lock"


@dataclass(frozen=True, slots=True)
class LogSummary:
    """What a checkpoint says about its run without replaying it: header and last exit code."""

    path: Path
    header: Header
    exit_code: int | None  # None: the last process died without a footer (or is running)
    # Why the file is not to be trusted (a link, another user's file), if it is not.
    untrusted: UntrustedFile | None = None


def summarize_log(path: Path) -> LogSummary | None:
    """Header and exit code of the log at ``path``; None if it is not a readable bulkops log.

    A link or another user's file is summarized with ``untrusted`` set: it may be read (as a
    regular file, bounded) to learn which job it claims, but never resumed. A FIFO or device is
    not read at all."""
    untrusted = None
    try:
        fd = open_own(path, os.O_RDONLY)
    except UntrustedFile as exc:
        untrusted = exc
        try:
            fd = open_regular(path)
        except (UntrustedFile, OSError):
            return None
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            first = f.readline(_HEADER_BOUND)
            header = decode_header(first)
            size = os.fstat(f.fileno()).st_size
            f.seek(max(len(first), size - 4096))
            tail = f.read(4096).splitlines()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    exit_code = None
    if tail:
        # The last line is a footer only if the last process ended properly.
        with contextlib.suppress(ValueError, KeyError, TypeError):
            exit_code = decode_footer(tail[-1])
    return LogSummary(path, header, exit_code, untrusted)


# A header line holds the canonical spec: kilobytes, not megabytes.
_HEADER_BOUND = 4 << 20


def job_logs(directory: Path, job: str, shard: str | None) -> list[LogSummary]:
    """The checkpoints of ``job`` (and ``shard``) in ``directory``, oldest first.

    CheckpointError if the directory is not to be trusted, or if a checkpoint of this job in it
    is a link or another user's file: whoever could plant it must not choose what a scheduled
    run resumes. Other jobs' logs, whoever owns them, are none of this run's business."""
    trusted_directory(directory)
    found = []
    for path in sorted(directory.glob("*.jsonl")):
        summary = summarize_log(path)
        if summary is None or summary.header.job != job or summary.header.shard != shard:
            continue
        if summary.untrusted is not None:
            raise CheckpointError(
                f"{path}, a checkpoint of job {job!r} in the checkpoint directory, "
                f"{summary.untrusted.reason}; bulkops resumes only checkpoints of its own: "
                "remove it (or run bulkops as the user who wrote it)"
            )
        found.append(summary)
    return sorted(found, key=lambda s: s.header.started)


def api_hosts(config: Config) -> dict[str, str]:
    """The API origin of each product ``config`` sends to, as a run's header records them."""
    return {
        "conversations": config.base_urls.conversations,
        "memory": config.base_urls.memory,
    }


def check_same_hosts(header: Header, urls: dict[str, str], config_given: bool) -> None:
    """Refuse to resume a run against other hosts than the ones it was started against.

    The config (credentials, hosts) always comes from the invocation, never from the
    checkpoint: a log anyone could have planted must not choose where the Authorization header
    goes. The hosts the run recorded must equal the invocation's, so a resume never deletes
    through another API than the run began with. A log from before hosts were recorded that
    names a config is resumed only with an explicit ``--config``.
    """
    if header.hosts is None:
        if header.config_path is not None and not config_given:
            raise CheckpointError(
                f"run {header.run_id} was started with a config file ({header.config_path}); "
                "bulkops never takes the config from a checkpoint: pass --config with the "
                "config to use"
            )
        return
    differ = [
        f"{product}: the run used {header.hosts.get(product)!r}, this invocation {url!r}"
        for product, url in urls.items()
        if header.hosts.get(product) != url
    ]
    if differ:
        raise CheckpointError(
            [
                f"run {header.run_id} was started against other API hosts than this "
                "invocation's config names:",
                *differ,
                "resume with the config (or BULKOPS_*_URL variables) the run was started with",
            ]
        )


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
    if code == ExitCode.ABORTED:
        return Decision(
            Action.BLOCKED,
            newest.path,
            f"run {newest.header.run_id} was stopped by a safety brake (exit 3); check its "
            f"report, then `bulkops resume {newest.path}` or start a new run without "
            "--resume-or-start",
        )
    age = now - newest.header.started_at
    if code == ExitCode.OK and age < min_interval:
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
