"""The live view's rows, from a run's counters on a fake clock: a rate over a moving window (not
the average since the start), a total marked ``~`` while listing may still find more, and the
outcomes of the earlier runs of a resumed log counted as done from the first frame."""

from __future__ import annotations

import io
import re

from rich.console import Console

from runner.app.display import RATE_WINDOW, LiveView
from runner.clock import FakeClock
from runner.kinds.base import ResourceKind
from runner.kinds.messages import KIND as MESSAGES
from runner.kinds.participants import KIND as PARTICIPANTS
from runner.log.records import State
from runner.values import Progress, Tally


def shown(view: LiveView) -> dict[str, str]:
    """The view's lines as a terminal would show them, by their first word."""
    out = io.StringIO()
    Console(file=out, width=120, color_system=None).print(view.get_renderable())
    return {line.split()[0]: line for line in out.getvalue().splitlines() if line.strip()}


def row(view: LiveView, kind: ResourceKind | None = None) -> str:
    """The row of ``kind`` (the total for None), without its bar."""
    line = shown(view)["total" if kind is None else kind.label.split()[0]]
    return re.sub(r"[━╸╺]+", "", line)


def test_rate_is_over_a_moving_window() -> None:
    """100 deletes/s for 10 s, then nothing: the rate falls to 0 once the window has passed
    the busy seconds, where the average since the start would still say 50/s."""
    clock = FakeClock()
    progress: Progress[ResourceKind, State] = Progress()
    progress.found[MESSAGES] = 5000
    progress.listing[MESSAGES] = 0
    view = LiveView(progress, Console(file=io.StringIO()), clock)
    for _ in range(40):
        clock.advance(0.25)
        progress.outcomes[(MESSAGES, State.DELETED)] += 25
        view.follow()
    assert "100.0/s" in row(view, MESSAGES)
    for _ in range(int(RATE_WINDOW * 4) + 4):
        clock.advance(0.25)
        view.follow()
    assert " 0.0/s" in row(view, MESSAGES)
    assert "1,000/5,000" in row(view, MESSAGES) and "20%" in row(view, MESSAGES)


def test_total_is_marked_while_listing_and_named_ids_count_before_they_are_listed() -> None:
    """While a kind is still listed its total is what is known so far, marked ``~`` (as is its
    time left); the ids a job names count before they are listed; once listing is done the
    total is exact."""
    clock = FakeClock()
    progress: Progress[ResourceKind, State] = Progress()
    progress.listing.update({MESSAGES: 1, PARTICIPANTS: 1})
    progress.found.update({MESSAGES: 40, PARTICIPANTS: 3})
    progress.named[PARTICIPANTS] = 10  # ids of the spec, not listed yet
    view = LiveView(progress, Console(file=io.StringIO()), clock)
    for _ in range(8):
        clock.advance(0.25)
        progress.outcomes[(MESSAGES, State.DELETED)] += 2
        view.follow()
    assert re.search(r"16/~40 .*~0:00:0\d", row(view, MESSAGES)), row(view, MESSAGES)
    assert "0/~10" in row(view, PARTICIPANTS)
    assert "16/~50" in row(view)
    assert "listing…" in shown(view)["listing…"]

    progress.listing.clear()
    progress.discovery_done = True
    view.follow()
    assert "16/40" in row(view, MESSAGES) and "~" not in row(view, MESSAGES)
    assert "0/3" in row(view, PARTICIPANTS)
    assert "listing done" in shown(view)["listing"]


def test_earlier_runs_count_from_the_first_frame() -> None:
    """A resumed log's earlier outcomes are done (and selected) from the start, failures shown,
    and none of them counts toward this run's rate; the job, checkpoint and traffic are shown."""
    clock = FakeClock()
    traffic = Tally(retries=7, throttled=5)
    progress: Progress[ResourceKind, State] = Progress(traffic=traffic, job="purge")
    progress.checkpoint = "checkpoints/purge-1.jsonl"
    progress.earlier.update({(MESSAGES, State.DELETED): 90, (MESSAGES, State.FAILED): 2})
    progress.found[MESSAGES] = 8  # what the earlier run left open, driven again
    view = LiveView(progress, Console(file=io.StringIO()), clock)
    view.follow()
    assert "92/100" in row(view, MESSAGES) and "2 failed" in row(view, MESSAGES)
    clock.advance(1)
    progress.outcomes[(MESSAGES, State.DELETED)] += 4
    view.follow()
    assert "96/100" in row(view, MESSAGES) and "4.0/s" in row(view, MESSAGES)
    lines = shown(view)
    assert lines["bulkops"] == "bulkops job purge"
    assert lines["checkpoint"] == "checkpoint checkpoints/purge-1.jsonl"
    assert "429s: 5 · retries: 7" in lines["listing…"]
