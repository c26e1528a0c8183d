"""``bulkops status``: where a run stands, in words, read from its log alone.

One :class:`RunStatus` holds what both renderings say — the text of
:func:`runner.app.outcome.print_status` and the JSON document of
:func:`runner.app.documents.status_document` — so the two never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runner.app.unattended import job_logs, lock_holder
from runner.errors import CheckpointError, ExitCode
from runner.log.lock import in_use
from runner.log.records import State
from runner.log.replay import Replay
from runner.plan.shard import Shard, parse_shard
from runner.report.completion import OUTCOMES, Summary, summarize
from runner.spec.config import configured_checkpoint_dir
from runner.spec.jobspec import load_spec

__all__ = ["RunStatus", "latest_log", "run_status"]

SPEC_SUFFIXES = (".yaml", ".yml")  # `bulkops status JOB.yaml`: the job's latest run


@dataclass(frozen=True)
class RunStatus:
    """Where a run stands: its state (one word and in words), its counts, its pace."""

    checkpoint: Path
    replay: Replay
    summary: Summary
    # running | finished | finished_with_failures | braked | stopped | unfinished
    state: str
    words: str  # the state as a sentence, with the way to go on
    continue_with: str | None  # the command that goes on, when one does
    exit_code: int | None  # the last footer's; None: no process ended properly yet
    pid: int | None  # the process driving the log now, when it is running
    operations_pending: int
    active_seconds: int  # of work, summed over the processes that drove the log
    rate: float  # targets finished per second of work
    sources: int
    sources_listed: int
    remaining: int  # targets selected and not yet finished
    eta_seconds: float | None  # None: unknown (still listing, no rate yet) or finished

    @property
    def eta_words(self) -> str:
        """How long the rest should take, or why that is not known."""
        if self.state not in ("running", "unfinished", "stopped"):
            return ""
        listing = self.sources - self.sources_listed
        if listing > 0:
            return f"ETA unknown: {listing} of {self.sources} sources still being listed"
        if not self.remaining:
            return "ETA: nothing left but the report"
        if self.eta_seconds is None:
            return f"ETA unknown: {self.remaining:,} targets left, no rate measured yet"
        return f"ETA about {self.eta_seconds:.0f} s for the {self.remaining:,} targets left"


# How the last process that drove a log ended, by its footer's exit code: the state, its
# words, and the command that goes on (None: a person looks first, or nothing is left).
_ENDINGS: dict[int, tuple[str, str, str | None]] = {
    ExitCode.AUTH: ("stopped", "stopped: credentials refused (exit 4)", "bulkops resume"),
    ExitCode.CHECKPOINT: (
        "stopped",
        "stopped: the checkpoint could not be written (exit 6)",
        "bulkops resume",
    ),
    ExitCode.OUT_OF_TIME: ("stopped", "stopped at --max-duration (exit 7)", "bulkops resume"),
    ExitCode.INTERNAL: ("stopped", "stopped by an internal error (exit 8)", "bulkops resume"),
    ExitCode.PAUSED: (
        "stopped",
        "paused: the server asked for a long pause (exit 9)",
        "bulkops resume",
    ),
    ExitCode.INTERRUPTED: ("stopped", "interrupted (exit 130)", "bulkops resume"),
}


def run_status(replay: Replay, checkpoint: Path) -> RunStatus:
    """The status of the run ``replay`` replays, its log at ``checkpoint``."""
    summary = summarize(replay)
    totals = summary.totals
    counts = replay.counts()
    finished = sum(n for (_, state), n in counts.items() if state.is_final)
    active = replay.active_seconds
    rate = finished / active if active > 0 else 0.0
    remaining = len(replay.open)
    sources = len(replay.header.canonical_spec.get("targets", []))
    listed = len(replay.discovery_done)
    state, words, command = _state(replay, checkpoint, totals)
    eta = remaining / rate if rate > 0 and remaining and listed >= sources else None
    return RunStatus(
        checkpoint=checkpoint,
        replay=replay,
        summary=summary,
        state=state,
        words=words if command is None else f"{words} — continue with: {command} {checkpoint}",
        continue_with=None if command is None else f"{command} {checkpoint}",
        exit_code=replay.exit_code,
        pid=_holder(replay, checkpoint) if state == "running" else None,
        operations_pending=sum(n for (_, s), n in counts.items() if s is State.ACCEPTED),
        active_seconds=active,
        rate=rate,
        sources=sources,
        sources_listed=listed,
        remaining=remaining,
        eta_seconds=None if state in ("finished", "finished_with_failures") else eta,
    )


def _state(replay: Replay, checkpoint: Path, totals: dict[str, int]) -> tuple[str, str, str | None]:
    code = replay.exit_code
    if in_use(checkpoint):
        pid = _holder(replay, checkpoint)
        return "running", f"running (pid {pid if pid is not None else 'unknown'})", None
    if code is None:
        return (
            "unfinished",
            "not running, and its last process ended without a footer (killed, or its "
            "machine went down)",
            "bulkops resume",
        )
    if code in (ExitCode.OK, ExitCode.FAILURES):
        done = f"{totals.get('deleted', 0):,} deleted"
        for outcome in OUTCOMES:
            if outcome not in ("deleted", "failed", "pending") and totals.get(outcome):
                done += f", {totals[outcome]:,} {outcome.replace('_', ' ')}"
        words = f"finished: {done}, {totals.get('failed', 0):,} failed"
        if code == ExitCode.OK:
            return "finished", words, None
        if replay.failed:
            return "finished_with_failures", words, "bulkops resume --retry-failed"
        return (
            "finished_with_failures",
            f"{words}; some sources could not be listed in full (fix that first: see the log)",
            "bulkops resume",
        )
    if code == ExitCode.ABORTED:
        return (
            "braked",
            "stopped by a safety brake (exit 3); look at the report before going on: "
            f"`bulkops resume --max-deletions N {checkpoint}` when the deletion cap was too low",
            None,
        )
    return _ENDINGS.get(code, ("stopped", f"ended with exit code {code}", "bulkops resume"))


def _holder(replay: Replay, checkpoint: Path) -> int | None:
    header = replay.header
    suffix = parse_shard(header.shard).suffix if header.shard else None
    return lock_holder(checkpoint.parent, header.job, suffix)


def latest_log(
    spec_path: Path, config_path: Path | None, directory: Path | None, shard: Shard | None
) -> Path:
    """The checkpoint of the latest run of the job ``spec_path`` names (of ``shard``, when the
    job runs in shards) in ``directory`` (default: the config's checkpoint directory)."""
    job = load_spec(spec_path).name
    directory = directory or configured_checkpoint_dir(config_path)
    found = job_logs(directory, job, None if shard is None else str(shard))
    if not found:
        which = "" if shard is None else f" shard {shard}"
        raise CheckpointError(
            f"no checkpoint of job {job!r}{which} in {directory}; pass the checkpoint itself, "
            "or --checkpoint-dir (or --config) naming where the job's runs write theirs"
            + ("" if shard is not None else " (and --shard I/N for a job run in shards)")
        )
    return found[-1].path


def is_spec(path: Path) -> bool:
    """Whether ``bulkops status PATH`` names a job spec rather than a checkpoint."""
    return path.suffix.lower() in SPEC_SUFFIXES
