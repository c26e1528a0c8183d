"""From a spec to what a run selects, with no I/O: sources, limits, shards and plan files."""

from __future__ import annotations

from runner.plan.planfile import PlanFile, PlanWriter, read_plan
from runner.plan.planner import JobPlan, build_plan, shard_plan
from runner.plan.selection import Explicit, Manifest, Source, phase
from runner.plan.shard import Shard, parse_shard, resolve_shard

__all__ = [
    "Explicit",
    "JobPlan",
    "Manifest",
    "PlanFile",
    "PlanWriter",
    "Shard",
    "Source",
    "build_plan",
    "parse_shard",
    "phase",
    "read_plan",
    "resolve_shard",
    "shard_plan",
]
