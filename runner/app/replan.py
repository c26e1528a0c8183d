"""The plan a reviewed plan file or a checkpoint was made from, made again from today's spec.

``apply`` and ``resume`` both trust a file only if the spec still plans what the file was made
from: the same job, planned at the moment the file froze with the times it froze, must give the
fingerprint the file records. Each then says in its own words what to do when it does not.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from runner.plan.planner import JobPlan, build_plan, describe_changes, shard_plan
from runner.plan.shard import Shard
from runner.spec.jobspec import JobSpec

__all__ = ["replan"]


def replan(
    spec: JobSpec,
    frozen_now: datetime,
    frozen_times: Mapping[str, object],
    shard: Shard | None,
    *,
    fingerprint: str,
    canonical: Mapping[str, Any] | None,
) -> tuple[JobPlan, list[str] | None]:
    """``spec`` planned at ``frozen_now`` with ``frozen_times`` (and cut to ``shard``), and how
    it differs from the ``canonical`` spec recorded with ``fingerprint``: None when the
    fingerprints agree, else one line per change."""
    plan = shard_plan(build_plan(spec, frozen_now, frozen_times=frozen_times), shard)
    if plan.fingerprint == fingerprint:
        return plan, None
    return plan, describe_changes(canonical or {}, plan.canonical)
