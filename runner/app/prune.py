"""``bulkops prune``: the files of old finished runs, deleted from a checkpoint directory.

Every run leaves a log and its reports in the checkpoint directory (and a verify its evidence),
and nothing else removes them. Prune keeps the ``keep`` newest runs of each job (each shard of
a job on its own) and, of the older ones, deletes those that finished (exit 0 or 1): never a
run that did not (no footer, a resumable exit, a safety brake's 3), never a log another process
holds.

The directory is trusted no further than a run trusts it (:mod:`runner.files`): a log is
recognised only by the name bulkops gives it *and* a header naming that same job, shard and run,
and only if it is this user's own regular file; a report only as such a log's report. Anything
else — other files, links, directories — is left alone and reported. No link is followed, and
nothing outside the directory is touched.
"""

from __future__ import annotations

import os
import re
import stat
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.filesize import decimal

from runner.app.job import log_name
from runner.app.unattended import LogSummary, summarize_log, trusted_directory
from runner.app.verify_output import verify_path
from runner.errors import ExitCode, InputError, UntrustedFile
from runner.files import check_own, kind_of, open_own
from runner.log.lock import lock_log
from runner.log.snapshot import snapshot_path
from runner.log.verify_journal import journal_path
from runner.plan.shard import parse_shard
from runner.report.output import report_paths

__all__ = ["FINISHED", "Pruning", "Run", "judge", "print_pruning", "prune", "scan"]

# Exit codes of a run that is over: nothing resumes it (1's failures are retried by a new run).
FINISHED = frozenset({ExitCode.OK, ExitCode.FAILURES})
# The job lock (runner.app.unattended.job_lock): bulkops' own, and kept.
_LOCK_NAME = re.compile(r"\.[A-Za-z0-9._-]+\.lock")
_LOG_SUFFIX = ".jsonl"


@dataclass(frozen=True, slots=True)
class Run:
    """A recognised run: its log, when it began, and its files (reports first, the log last)."""

    name: str  # the log's file name
    log: LogSummary
    started: datetime
    files: tuple[str, ...]
    size: int  # bytes, all files together
    # The log as it was read (inode, size, mtime): a log that changed since is not deleted.
    identity: tuple[int, int, int]

    @property
    def group(self) -> str:
        """The job, and the shard when the run is one: the unit ``keep`` counts runs in."""
        shard = self.log.header.shard
        return self.log.header.job + (f" (shard {shard})" if shard else "")


@dataclass(frozen=True, slots=True)
class Verdict:
    """What prune does with one run, and why, in words."""

    run: Run
    delete: bool
    reason: str


@dataclass(slots=True)
class Pruning:
    """What a prune found and did: a verdict per run, the entries it left alone (name, why),
    and the files it could not delete."""

    directory: Path
    keep: int
    dry_run: bool
    verdicts: list[Verdict] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0, or 1 when a file that was to go could not be deleted."""
        return ExitCode.FAILURES if self.errors else ExitCode.OK


def prune(directory: Path, keep: int, *, dry_run: bool) -> Pruning:
    """Delete (or, with ``dry_run``, only judge) the files of the finished runs of each job in
    ``directory`` older than its ``keep`` newest. CheckpointError (exit 2) if the directory is
    not one bulkops would write checkpoints in."""
    if keep < 1:
        raise InputError(f"--keep: {keep} keeps no run: give 1 or more")
    trusted_directory(directory)
    runs, ignored = scan(directory)
    pruning = Pruning(directory, keep, dry_run, ignored=ignored)
    for verdict in judge(runs, keep):
        if verdict.delete:
            verdict = _delete(directory, verdict, dry_run, pruning.errors)
        pruning.verdicts.append(verdict)
    return pruning


def scan(directory: Path) -> tuple[list[Run], list[tuple[str, str]]]:
    """The runs whose logs ``directory`` holds, and every entry that is not one of their files
    (nor a job lock), with the reason it was not recognised."""
    found: dict[str, os.stat_result] = {}
    with os.scandir(directory) as entries:
        for entry in entries:
            try:
                found[entry.name] = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # gone since it was listed
    ignored: dict[str, str] = {}
    runs: list[Run] = []
    claimed: set[str] = set()
    for name, st in sorted(found.items()):
        if not (name.endswith(_LOG_SUFFIX) and stat.S_ISREG(st.st_mode)):
            continue
        summary = summarize_log(directory / name)
        why = _not_a_log(name, summary)
        if why is not None or summary is None:
            ignored[name] = why or "not a bulkops checkpoint"
            continue
        files = []
        # Its reports, the evidence of its verify (`bulkops verify`) and that verify's journal,
        # and its resume snapshot go with it.
        written = (
            *report_paths(directory / name).values(),
            verify_path(directory / name),
            journal_path(directory / name),
            snapshot_path(directory / name),
        )
        for path in written:
            for report in (path.name, f"{path.name}.partial"):
                if report not in found:
                    continue
                try:
                    check_own(report, found[report])
                except UntrustedFile as exc:
                    ignored[report] = f"{exc.reason}: not a report bulkops wrote"
                    continue
                files.append(report)
        claimed.update(files, (name,))
        runs.append(
            Run(
                name=name,
                log=summary,
                started=summary.header.started_at,
                files=(*files, name),
                size=sum(found[f].st_size for f in (*files, name)),
                identity=(st.st_ino, st.st_size, st.st_mtime_ns),
            )
        )
    for name, st in sorted(found.items()):
        if name in claimed or name in ignored:
            continue
        if stat.S_ISREG(st.st_mode) and _LOCK_NAME.fullmatch(name):
            continue
        if stat.S_ISREG(st.st_mode):
            ignored[name] = "not a file bulkops writes here"
        else:
            ignored[name] = f"{kind_of(st.st_mode)}, never followed or removed"
    return runs, sorted(ignored.items())


def _not_a_log(name: str, summary: LogSummary | None) -> str | None:
    """Why ``name`` is not to be taken for a run's log, or None if it is one."""
    if summary is None:
        return "not a bulkops checkpoint (no header bulkops reads)"
    if summary.untrusted is not None:
        return f"{summary.untrusted.reason}: bulkops prunes only checkpoints of its own"
    header = summary.header
    try:
        shard = None if header.shard is None else parse_shard(header.shard)
        expected = log_name(header.job, shard, header.run_id)
        aware = header.started_at.tzinfo is not None
    except (InputError, ValueError):
        expected, aware = None, False
    if expected != name or not aware:
        return (
            f"its header names run {header.run_id!r} of job {header.job!r}: not a name "
            "bulkops gives a checkpoint (a log written with --checkpoint is never pruned)"
        )
    return None


def judge(runs: list[Run], keep: int) -> list[Verdict]:
    """What to do with each run: of each job's (and shard's) runs, the ``keep`` newest stay,
    and of the others those that finished go. Grouped by job, newest first."""
    groups: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        groups[run.group].append(run)
    verdicts = []
    for group, members in sorted(groups.items()):
        members.sort(key=lambda r: (r.started, r.log.header.run_id), reverse=True)
        for rank, run in enumerate(members):
            code = run.log.exit_code
            if rank < keep:
                newest = "the newest run" if keep == 1 else f"one of the {keep} newest runs"
                verdicts.append(Verdict(run, False, f"{newest} of {group}"))
            elif code in FINISHED:
                verdicts.append(Verdict(run, True, f"finished with exit {code}"))
            elif code is None:
                verdicts.append(
                    Verdict(run, False, "no footer: still running, or stopped and resumable")
                )
            elif code == ExitCode.ABORTED:
                verdicts.append(
                    Verdict(run, False, "stopped by a safety brake (exit 3): resumable")
                )
            else:
                verdicts.append(Verdict(run, False, f"stopped with exit {code}: resumable"))
    return verdicts


def _many(count: int, one: str, many: str = "") -> str:
    return f"{count} {one}" if count == 1 else f"{count} {many or one + 's'}"


def _delete(directory: Path, verdict: Verdict, dry_run: bool, errors: list[str]) -> Verdict:
    """Delete the run's files (its log last), holding the log's lock meanwhile, so that a
    process driving it (a ``resume --retry-failed``) keeps it; the verdict, revised if not."""
    run = verdict.run
    try:
        fd = open_own(directory / run.name, os.O_RDONLY)
    except (UntrustedFile, OSError) as exc:
        reason = exc.reason if isinstance(exc, UntrustedFile) else exc.strerror
        return Verdict(run, False, f"it cannot be opened any more ({reason})")
    try:
        if not lock_log(fd):
            return Verdict(run, False, "in use by another bulkops process")
        st = os.fstat(fd)
        if (st.st_ino, st.st_size, st.st_mtime_ns) != run.identity:
            return Verdict(run, False, "changed while prune read it: run prune again")
        if dry_run:
            return verdict
        for name in run.files:
            try:
                os.unlink(directory / name)
            except FileNotFoundError:
                pass
            except OSError as exc:
                errors.append(f"{directory / name}: cannot be deleted ({exc.strerror})")
                return Verdict(run, False, "not all of its files could be deleted")
        return verdict
    finally:
        os.close(fd)


def print_pruning(pruning: Pruning, console: Console, err: Console) -> None:
    """What prune did (or would do), a line per run and per entry left alone, then the totals."""
    deleting = "would delete" if pruning.dry_run else "deleted"
    console.print(
        f"checkpoint directory {pruning.directory}: keeping the "
        f"{'newest run' if pruning.keep == 1 else f'{pruning.keep} newest runs'} of each job",
        highlight=False,
    )
    gone = [v for v in pruning.verdicts if v.delete]
    for verdict in pruning.verdicts:
        run = verdict.run
        stem = run.name.removesuffix(_LOG_SUFFIX)
        if verdict.delete:
            line = f"{deleting}: {stem} ({verdict.reason}; {len(run.files)} files, "
            console.print(f"{line}{decimal(run.size)})", highlight=False, markup=False)
        else:
            console.print(f"kept: {stem} ({verdict.reason})", highlight=False, markup=False)
    for name, why in pruning.ignored:
        console.print(f"left alone: {name} ({why})", highlight=False, markup=False)
    for error in pruning.errors:
        err.print(f"error: {error}", highlight=False, markup=False)
    files = sum(len(v.run.files) for v in gone)
    kept = len(pruning.verdicts) - len(gone)
    console.print(
        f"{deleting} {_many(files, 'file')} of {_many(len(gone), 'run')} "
        f"({decimal(sum(v.run.size for v in gone))}); kept {_many(kept, 'run')}; left "
        f"{_many(len(pruning.ignored), 'other entry', 'other entries')} alone",
        highlight=False,
    )
