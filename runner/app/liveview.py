"""The live view of a run on a terminal: a :class:`rich.progress.Progress` with one row per
kind and a total, each with done / selected, a bar, the percentage, the rate over a moving window
and the time left, under the job's name and checkpoint and above the 429s, retries and pending
Operations. Rich keeps the rate's window (``speed_estimate_period``) and the time left from it;
this module only tells it the counts.

Apart from :mod:`runner.app.display` so that rich.progress is imported only when a live view is
shown (a run logging JSON or to a file never is).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from contextlib import nullcontext
from datetime import timedelta

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from runner.app import logs
from runner.app.display import RATE_WINDOW, REFRESH
from runner.clock import Clock
from runner.kinds.base import ResourceKind
from runner.kinds.registry import KINDS
from runner.log.records import FINAL_STATES, State
from runner.values import Progress as RunProgress

__all__ = ["LiveView", "columns", "live"]


class RateColumn(ProgressColumn):
    """Targets finished per second over the last :data:`RATE_WINDOW` (rich's speed estimate)."""

    def render(self, task: Task) -> Text:
        """The task's windowed speed, or a dash before there are two samples."""
        speed = task.speed
        text = "-/s" if speed is None else f"{speed:,.1f}/s"
        return Text(text, style="progress.data.speed", justify="right")


class EstimateColumn(TimeRemainingColumn):
    """The time left, marked ``~`` while listing may still find more (the total so far is
    then what listing has found, so the time left is an estimate)."""

    def render(self, task: Task) -> Text:
        """Rich's time remaining, with the estimate mark."""
        text = super().render(task)
        if task.fields.get("listing"):
            text = Text.assemble("~", text)
        return text


class SelectedColumn(MofNCompleteColumn):
    """done/selected, the selected count marked ``~`` while listing may still find more."""

    def render(self, task: Task) -> Text:
        """``done/selected`` or ``done/~found so far``."""
        separator = "/~" if task.fields.get("listing") else "/"
        total = int(task.total or 0)
        return Text(
            f"{int(task.completed):>{len(f'{total:,}')},}{separator}{total:,}",
            style="progress.download",
        )


def columns() -> tuple[ProgressColumn, ...]:
    """The columns of a row: kind, bar, done/selected, %, rate, time left, failures."""
    return (
        TextColumn("{task.description}"),
        BarColumn(bar_width=24),
        SelectedColumn(),
        TaskProgressColumn(),
        RateColumn(),
        EstimateColumn(),
        TextColumn("[red]{task.fields[failed]}"),
    )


class LiveView(Progress):
    """The live view of one run: its rows follow the run's counters at each :meth:`follow`."""

    def __init__(
        self, progress: RunProgress[ResourceKind, State], console: Console, clock: Clock
    ) -> None:
        self.run = progress
        self.clock = clock
        self.began = clock.now()
        # Refreshed from the event loop (auto_refresh off): a refresh thread would read the
        # counters while the loop changes them.
        super().__init__(
            *columns(),
            console=console,
            auto_refresh=False,
            speed_estimate_period=RATE_WINDOW,
            get_time=clock.now,
        )
        self.rows: dict[ResourceKind | None, TaskID] = {}
        for kind in (*KINDS, None):
            label = "total" if kind is None else kind.label
            done, _total, _failed = self._counts(kind)
            # Outcomes of earlier runs count as done from the start, not as this run's rate.
            self.rows[kind] = self.add_task(label, completed=done, visible=False, failed="")
        self._task = {task.id: task for task in self.tasks}

    def follow(self) -> None:
        """Bring every row up to the run's counters."""
        for kind, row in self.rows.items():
            done, total, failed = self._counts(kind)
            task = self._task[row]
            relevant = kind is None or bool(total or self.run.listing[kind])
            # Rich's update(total=…) restarts the rate's window; the total of a run grows
            # while listing goes on, and its rate must not restart each time it does.
            task.total = max(total, done)
            if task.completed < task.total:
                task.finished_time = None  # more was found: the row has work left again
            # Advanced even by 0, so that a stalled run's rate falls as its window moves on.
            self.advance(row, done - task.completed)
            self.update(
                row,
                visible=relevant,
                listing=self._listing(kind),
                failed=f"{failed:,} failed" if failed else "",
            )

    def _counts(self, kind: ResourceKind | None) -> tuple[int, int, int]:
        """(done, selected, failed) of ``kind``, or of every kind; earlier runs of a resumed
        log included. Done is every final outcome (a failure is not driven again)."""
        run = self.run
        kinds = KINDS if kind is None else (kind,)
        done = total = failed = 0
        for k in kinds:
            earlier = sum(run.earlier[(k, s)] for s in FINAL_STATES)
            finished = sum(run.outcomes[(k, s)] for s in FINAL_STATES)
            selected = (
                earlier
                + run.found[k]
                + run.outcomes[(k, State.COVERED)]
                + run.outcomes[(k, State.HELD)]
            )
            if run.listing[k]:
                selected = max(selected, run.named[k])
            done += earlier + finished
            total += selected
            failed += run.earlier[(k, State.FAILED)] + run.outcomes[(k, State.FAILED)]
        return done, total, failed

    def _listing(self, kind: ResourceKind | None) -> bool:
        if kind is None:
            return any(self.run.listing.values())
        return bool(self.run.listing[kind])

    def get_renderables(self) -> Iterable[RenderableType]:
        """The job and its checkpoint, the rows, and the traffic below them."""
        run = self.run
        yield Text.assemble(("bulkops ", "bold"), f"job {run.job}", no_wrap=True)
        # Folded, not cut, at the terminal's width (the console soft-wraps, which a live view
        # would crop): the checkpoint is what `bulkops resume` needs.
        yield Text(f"checkpoint {run.checkpoint}", no_wrap=False, overflow="fold")
        yield self.make_tasks_table(self.tasks)
        elapsed = timedelta(seconds=int(self.clock.now() - self.began))
        traffic = run.traffic
        yield Text(
            f"{'listing done' if run.discovery_done else 'listing…'} · "
            f"429s: {traffic.throttled:,} · retries: {traffic.retries:,} · "
            f"operations pending: {run.pending_operations:,} · elapsed {elapsed}",
            style="dim",
            no_wrap=True,
        )


async def live(progress: RunProgress[ResourceKind, State], console: Console, clock: Clock) -> None:
    """Show the live view until cancelled, redrawn every :data:`REFRESH` s."""
    view = LiveView(progress, console, clock)
    # Cancelled when the run ends (or stops): the last frame, with the final counts, is drawn
    # once and stays; nothing of an earlier frame is left behind.
    with view:
        # Log lines on the same terminal go through the view (Live redirects sys.stderr to
        # itself while it runs), printed above it rather than drawn over by the next frame.
        tty_logs = sys.__stderr__ is not None and sys.__stderr__.isatty()
        with logs.written_to(sys.stderr) if tty_logs else nullcontext():
            try:
                while True:
                    view.follow()
                    view.refresh()
                    await clock.sleep(REFRESH)
            finally:
                view.follow()
