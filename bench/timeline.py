"""Rates over time from the emulator's request log, and the PNG timelines of the rate scenarios."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Request = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Schedule:
    """The allowed rate over time: ``(seconds after start, rate)`` steps, the first at 0."""

    steps: tuple[tuple[float, float], ...]

    def at(self, t: float) -> float:
        """The allowed rate at ``t`` seconds."""
        rate = self.steps[0][1]
        for start, value in self.steps:
            if t >= start:
                rate = value
        return rate


def deletes_ok(requests: Sequence[Request]) -> list[float]:
    """Times of the DELETEs that acted (204/202), sorted."""
    return sorted(
        r["time"] for r in requests if r["method"] == "DELETE" and r["status"] in (202, 204)
    )


def throttled_times(requests: Sequence[Request]) -> list[float]:
    """Times of every 429, sorted."""
    return sorted(r["time"] for r in requests if r["status"] == 429)


def count_between(times: Sequence[float], start: float, stop: float) -> int:
    """How many of the sorted ``times`` fall in [start, stop)."""
    import bisect

    return bisect.bisect_left(times, stop) - bisect.bisect_left(times, start)


def recovery(times: Sequence[float], change: float, limit: float, *, share: float = 0.9,
             sustain: float = 2.0, step: float = 0.05, horizon: float = 15.0) -> float:
    """Seconds after ``change`` until the 1-s window starting there holds ``share * limit``
    deletes, and every window starting in the next ``sustain`` seconds does too (inf if never)."""
    need = share * limit
    s = 0.0
    while s <= horizon:
        ok = all(
            count_between(times, change + s + d, change + s + d + 1.0) >= need
            for d in (i * 0.25 for i in range(int(sustain / 0.25) + 1))
        )
        if ok:
            return round(s, 2)
        s += step
    return math.inf


def per_second(times: Sequence[float], origin: float, seconds: int) -> list[int]:
    """Counts of ``times`` in each whole second after ``origin``."""
    return [count_between(times, origin + i, origin + i + 1) for i in range(seconds)]


def plot(path: Path, title: str, requests: Sequence[Request], origin: float,
         schedule: Schedule, marks: Sequence[float] = ()) -> None:
    """Allowed rate, achieved deletes/s and 429s/s per second (and rate changes as lines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = deletes_ok(requests)
    limited = throttled_times(requests)
    end = max((r["time"] for r in requests), default=origin)
    seconds = max(1, math.ceil(end - origin))
    xs = list(range(seconds))
    fig, ax = plt.subplots(figsize=(9, 3.6), dpi=110)
    fine = [i / 20 for i in range(seconds * 20 + 1)]
    ax.step(fine, [schedule.at(x) for x in fine], where="post", color="black", linestyle="--",
            label="allowed (req/s)")
    ax.plot([x + 0.5 for x in xs], per_second(ok, origin, seconds), color="tab:blue",
            marker=".", label="bulkops deletes/s")
    ax.bar([x + 0.5 for x in xs], per_second(limited, origin, seconds), width=0.8,
           color="tab:red", alpha=0.6, label="429s/s")
    for mark in marks:
        ax.axvline(mark, color="grey", linewidth=0.8)
    ax.set_xlabel("seconds since the first request")
    ax.set_ylabel("per second")
    ax.set_title(title)
    ax.set_ylim(bottom=0)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
