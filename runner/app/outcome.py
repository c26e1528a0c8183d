"""How a run ended, on the terminal: the outcome table, the ending in words, how to go on.

Shared by ``bulkops run``/``resume``/``apply``/``status`` and ``bulkops demo``; what it prints
is read back from the checkpoint log (:class:`runner.log.replay.Replay`), never from memory.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from runner.app.display import print_resolution
from runner.app.job import RunResult
from runner.app.status import RunStatus
from runner.errors import ExitCode
from runner.log.replay import Replay
from runner.report.completion import OUTCOMES, resolved, summarize
from runner.report.formats import report_formats

__all__ = ["continue_with", "finish", "print_status", "print_summary", "requests_line"]


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
    hint = continue_with(result)
    if hint is not None:
        err.print(f"to continue: {hint}", highlight=False)
    console.print(f"checkpoint: {result.checkpoint}", highlight=False)
    first, *others = report_formats().values()
    also = f" (and {', '.join(form.suffix for form in others)})" if others else ""
    console.print(f"report: {result.checkpoint.with_suffix(first.suffix)}{also}", highlight=False)
    return result.exit_code


def continue_with(result: RunResult) -> str | None:
    """The command that goes on from how a run ended, when one does."""
    # An internal error's message already ends with the way to go on.
    if result.exit_code not in (
        ExitCode.INTERRUPTED,
        ExitCode.AUTH,
        ExitCode.CHECKPOINT,
        ExitCode.ABORTED,
        ExitCode.FAILURES,
    ):
        return None
    hint = "bulkops resume"
    failed = result.replay is None or bool(result.replay.failed)
    if result.exit_code == ExitCode.FAILURES and failed:
        hint += " --retry-failed"
    elif result.exit_code == ExitCode.FAILURES:
        hint = "once the listing problem is fixed, " + hint
    return f"{hint} {result.checkpoint}"


def print_summary(replay: Replay, console: Console) -> None:
    """The end-of-run table: outcome counts per kind, then what the run resolved to (its
    frozen cutoffs, the Service, the account and the hosts)."""
    summary = summarize(replay)
    table = Table(
        title=f"job {replay.header.job} · run {replay.header.run_id}", title_justify="left"
    )
    table.add_column("kind")
    totals = summary.totals
    # `held` only when a legal hold kept something: a job without holds keeps its narrow table.
    shown = [o for o in OUTCOMES if o != "held" or totals[o]]
    for outcome in shown:
        # In words, so that a narrow terminal wraps "gone after request" rather than cut it.
        table.add_column(outcome.replace("_", " "), justify="right")
    for kind, counts in summary.counts.items():
        table.add_row(kind.label, *(str(counts[o]) for o in shown))
    table.add_row("total", *(str(totals[o]) for o in shown), style="bold")
    console.print(table)
    print_resolution(resolved(replay), console, "as resolved when the run began:")
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


def print_status(status: RunStatus, console: Console) -> None:
    """``bulkops status``: the outcome table, then the run's state in words, its pace over
    the time it was at work, and (while it is not finished) how long the rest should take."""
    print_summary(status.replay, console)
    console.print(status.words, highlight=False)
    if status.active_seconds:
        pace = f"rate {status.rate:,.1f} targets/s over {status.active_seconds:,} s of work"
    elif any(status.summary.totals[o] for o in OUTCOMES if o != "pending"):
        pace = "rate: not measured (its work took under a second)"
    else:
        pace = "rate: not measured yet"
    console.print(f"operations pending: {status.operations_pending:,} · {pace}", highlight=False)
    if status.eta_words:
        console.print(status.eta_words, highlight=False)
