"""What a person watching a run sees: a live table on a terminal, periodic log lines otherwise."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable

import structlog
from rich.console import Console
from rich.live import Live
from rich.table import Table

from runner.clock import MONOTONIC, Clock
from runner.kinds.base import ResourceKind
from runner.kinds.registry import KINDS
from runner.log.records import State
from runner.values import Progress

log = structlog.get_logger("bulkops.progress")

DONE_STATES = (State.DELETED, State.GONE, State.COVERED)


def progress_table(
    progress: Progress[ResourceKind, State], elapsed: float, title: str = "bulkops"
) -> Table:
    """A table of found / done / failed / rate per resource."""
    table = Table(title=title, title_justify="left")
    for column in ("kind", "found", "deleted", "gone", "covered", "failed", "rate/s"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    for kind in KINDS:
        found = progress.found[kind]
        outcomes = Counter({s: progress.outcomes[(kind, s)] for s in State})
        if not found and not sum(outcomes.values()):
            continue
        done = sum(outcomes[s] for s in DONE_STATES)
        rate = done / elapsed if elapsed > 0 else 0.0
        table.add_row(
            kind.label,
            str(found),
            str(outcomes[State.DELETED]),
            str(outcomes[State.GONE]),
            str(outcomes[State.COVERED]),
            str(outcomes[State.FAILED]),
            f"{rate:.1f}",
        )
    pending = progress.pending_operations
    table.caption = (
        f"{'listing' if not progress.discovery_done else 'listing done'} · "
        f"operations pending: {pending} · elapsed {elapsed:.1f} s"
    )
    return table


async def show_progress(
    progress: Progress[ResourceKind, State],
    console: Console,
    *,
    interval: float = 10.0,
    clock: Clock = MONOTONIC,
) -> None:
    """Until cancelled: refresh a live table on a terminal, else log progress every interval."""
    start = clock.now()
    if console.is_terminal:
        with Live(console=console, refresh_per_second=4, transient=True) as live:
            while True:
                live.update(progress_table(progress, clock.now() - start))
                await clock.sleep(0.25)
    while True:
        await clock.sleep(interval)
        log.info(
            "progress",
            found=sum(progress.found.values()),
            deleted=progress.outcome(State.DELETED),
            gone=progress.outcome(State.GONE),
            covered=progress.outcome(State.COVERED),
            failed=progress.outcome(State.FAILED),
            operations_pending=progress.pending_operations,
        )


def terminal_display(
    console: Console, clock: Clock
) -> Callable[[Progress[ResourceKind, State]], Awaitable[None]]:
    """The display a run from the terminal gets (:data:`runner.app.job.Display`): the progress
    shown on ``console``, as :func:`show_progress` does, timed on the run's ``clock``."""

    async def display(progress: Progress[ResourceKind, State]) -> None:
        await show_progress(progress, console, clock=clock)

    return display
