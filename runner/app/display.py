"""What a person watching a run sees: a live view on a terminal (:mod:`runner.app.liveview`),
periodic log lines otherwise.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import structlog

from runner.app import logs
from runner.clock import MONOTONIC, Clock
from runner.kinds.base import ResourceKind
from runner.log.records import State
from runner.values import Progress as RunProgress

if TYPE_CHECKING:
    from rich.console import Console

    from runner.spec.resolved import Resolution

log = structlog.get_logger("bulkops.progress")

RATE_WINDOW = 10.0  # seconds of finished targets the rate (and so the time left) is taken over
REFRESH = 0.25  # seconds between frames


def print_resolution(resolution: Resolution, console: Console, title: str) -> None:
    """``title``, then what the job resolves to (account, host, Service, each cutoff as written
    and as the UTC instant it is frozen to): said by plan, run, resume and apply before they
    act, and by the completion report."""
    console.print(title, highlight=False, markup=False)
    for line in resolution.lines():
        console.print(f"  {line}", highlight=False, markup=False)


async def show_progress(
    progress: RunProgress[ResourceKind, State],
    console: Console,
    *,
    interval: float = 10.0,
    clock: Clock = MONOTONIC,
) -> None:
    """Until cancelled: a live view on a terminal, else a progress log line every interval."""
    if console.is_terminal and not logs.writes_json():
        # rich.progress is loaded only for a live view: a run logging to a file or as JSON
        # starts without it (issue 16 §1: a run's start-up counts in its cost per request).
        from runner.app.liveview import live

        await live(progress, console, clock)
    while True:
        await clock.sleep(interval)
        log.info(
            "progress",
            found=sum(progress.found.values()),
            deleted=progress.outcome(State.DELETED),
            gone=progress.outcome(State.GONE),
            gone_after_request=progress.outcome(State.GONE_AFTER_REQUEST),
            covered=progress.outcome(State.COVERED),
            held=progress.outcome(State.HELD),
            failed=progress.outcome(State.FAILED),
            operations_pending=progress.pending_operations,
        )


def __getattr__(name: str) -> Any:
    # The live view's names, still found here (they moved to runner.app.liveview).
    if name in ("LiveView", "columns", "RateColumn", "EstimateColumn", "SelectedColumn"):
        from runner.app import liveview

        return getattr(liveview, name)
    raise AttributeError(name)


def terminal_display(
    console: Console, clock: Clock
) -> Callable[[RunProgress[ResourceKind, State]], Awaitable[None]]:
    """The display a run from the terminal gets (:data:`runner.app.job.Display`): the progress
    shown on ``console``, as :func:`show_progress` does, timed on the run's ``clock``."""

    async def display(progress: RunProgress[ResourceKind, State]) -> None:
        await show_progress(progress, console, clock=clock)

    return display
