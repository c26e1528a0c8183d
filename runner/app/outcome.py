"""How a run ended, on the terminal: the outcome table, the ending in words, how to go on.

Shared by ``bulkops run``/``resume``/``apply``/``status`` and ``bulkops demo``; what it prints
is read back from the checkpoint log (:class:`runner.log.replay.Replay`), never from memory.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from runner.app.job import RunResult
from runner.errors import ExitCode
from runner.log.records import State
from runner.log.replay import Replay
from runner.report.completion import OUTCOMES, summarize
from runner.report.formats import report_formats

__all__ = ["ending_line", "eta_line", "finish", "print_status", "print_summary", "requests_line"]


def finish(result: RunResult, console: Console, err: Console) -> int:
    """Print the report of a finished run and say how to go on."""
    if result.replay is not None:
        print_summary(result.replay, console)
    if result.discovery_errors:
        console.print(
            f"listing: {result.discovery_errors} source(s) could not be listed in full; what "
            "they would have selected was not deleted",
            highlight=False,
        )
    if result.message:
        err.print(f"[bold red]{result.message}[/]", highlight=False)
    # An internal error's message already ends with the way to go on.
    if result.exit_code in (
        ExitCode.INTERRUPTED,
        ExitCode.AUTH,
        ExitCode.CHECKPOINT,
        ExitCode.ABORTED,
        ExitCode.FAILURES,
    ):
        hint = "bulkops resume"
        failed = result.replay is None or bool(result.replay.failed)
        if result.exit_code == ExitCode.FAILURES and failed:
            hint += " --retry-failed"
        elif result.exit_code == ExitCode.FAILURES:
            hint = "once the listing problem is fixed, " + hint
        err.print(f"to continue: {hint} {result.checkpoint}", highlight=False)
    console.print(f"checkpoint: {result.checkpoint}", highlight=False)
    first, *others = report_formats().values()
    also = f" (and {', '.join(form.suffix for form in others)})" if others else ""
    console.print(f"report: {result.checkpoint.with_suffix(first.suffix)}{also}", highlight=False)
    return result.exit_code


def print_summary(replay: Replay, console: Console) -> None:
    """The end-of-run table: outcome counts per kind."""
    summary = summarize(replay)
    table = Table(
        title=f"job {replay.header.job} · run {replay.header.run_id}", title_justify="left"
    )
    table.add_column("kind")
    for outcome in OUTCOMES:
        table.add_column(outcome, justify="right")
    for kind, counts in summary.counts.items():
        table.add_row(kind.label, *(str(counts[o]) for o in OUTCOMES))
    totals = summary.totals
    table.add_row("total", *(str(totals[o]) for o in OUTCOMES), style="bold")
    console.print(table)
    if replay.requests:
        console.print(
            requests_line(len(replay.requests), replay.requests_not_found()), highlight=False
        )


def requests_line(total: int, not_found: list[str], shown: int = 10) -> str:
    """How many erasure requests were listed, and which found nothing (no conversation, no
    User), by position."""
    line = f"erasure requests: {total}, {total - len(not_found)} found"
    if not not_found:
        return line
    more = f" and {len(not_found) - shown} more" if len(not_found) > shown else ""
    return (
        f"{line}; not found: {len(not_found)} ({', '.join(not_found[:shown])}{more}): "
        "no conversation and no User"
    )


def print_status(replay: Replay, checkpoint: Path, console: Console) -> None:
    """``bulkops status``: the outcome table, then counts, rate and how the run ended (or how
    long the rest should take)."""
    print_summary(replay, console)
    counts = replay.counts()
    pending = sum(n for (_, state), n in counts.items() if state is State.ACCEPTED)
    done = sum(n for (_, state), n in counts.items() if state.is_final)
    elapsed = replay.last_ts
    rate = done / elapsed if elapsed else 0.0
    state = "finished" if replay.exit_code is not None else "running or stopped"
    console.print(
        f"{state}; exit code {replay.exit_code}; operations pending: {pending}; "
        f"rate {rate:.1f} targets/s over {elapsed} s",
        highlight=False,
    )
    if replay.exit_code is None:
        console.print(eta_line(replay, rate), highlight=False)
    else:
        console.print(ending_line(replay.exit_code, checkpoint), highlight=False)


# How the last process that drove a log ended, in words, and what goes on from there.
_ENDINGS: dict[int, tuple[str, str | None]] = {
    ExitCode.OK: ("finished: every selected target is done", None),
    ExitCode.FAILURES: ("finished with failures", "bulkops resume --retry-failed"),
    ExitCode.ABORTED: ("stopped by a safety brake (exit 3); look before going on", None),
    ExitCode.AUTH: ("stopped: credentials refused (exit 4)", "bulkops resume"),
    ExitCode.CHECKPOINT: (
        "stopped: the checkpoint could not be written (exit 6)",
        "bulkops resume",
    ),
    ExitCode.OUT_OF_TIME: ("stopped at --max-duration (exit 7)", "bulkops resume"),
    ExitCode.INTERNAL: ("stopped by an internal error (exit 8)", "bulkops resume"),
    ExitCode.PAUSED: ("paused: the server asked for a long pause (exit 9)", "bulkops resume"),
    ExitCode.INTERRUPTED: ("interrupted (exit 130)", "bulkops resume"),
}


def ending_line(exit_code: int, checkpoint: Path) -> str:
    """How a run ended, by its footer's exit code, with the command that continues it."""
    words, command = _ENDINGS.get(exit_code, (f"ended with exit code {exit_code}", None))
    return words if command is None else f"{words} — continue with: {command} {checkpoint}"


def eta_line(replay: Replay, rate: float) -> str:
    """How long the rest should take: known only once every source has been listed."""
    sources = len(replay.header.canonical_spec.get("targets", []))
    listing = sources - len(replay.discovery_done)
    if listing > 0:
        return f"ETA unknown: {listing} of {sources} sources still being listed"
    remaining = len(replay.open)
    if not remaining:
        return "ETA: nothing left but the report"
    if rate <= 0:
        return f"ETA unknown: {remaining} targets left, no rate measured yet"
    return f"ETA about {remaining / rate:.0f} s for the {remaining} targets left"
