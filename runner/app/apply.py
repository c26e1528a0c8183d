"""``bulkops apply``: delete exactly the targets a reviewed plan lists.

A plan file is trusted only while it is recent (``--max-age``), while the spec still plans what
the plan was made from (:func:`runner.app.replan.replan`), and for entries the spec selects
(:func:`runner.app.scope.confine_plan`); the run then drives the plan's list, not the queries.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from rich.console import Console

from runner.app import loop
from runner.app.display import terminal_display
from runner.app.inputs import load_inputs
from runner.app.job import NO_OPTIONS, RunOptions, RunResult, start_run
from runner.app.replan import replan
from runner.app.scope import confine_plan
from runner.app.unattended import job_lock, usable_directory
from runner.clock import MONOTONIC
from runner.engine.scheduler import preflight
from runner.errors import InputError
from runner.plan.planfile import PlanFile, read_plan
from runner.plan.planner import JobPlan
from runner.plan.shard import Shard, parse_shard
from runner.spec.config import Config

__all__ = ["Applying", "prepare_apply", "run_applied"]


@dataclass(frozen=True)
class Applying:
    """A plan file checked and ready to run: the plan it lists, and the spec and config."""

    plan: JobPlan  # its sources are the plan file's entries
    plan_file: PlanFile
    spec_path: Path
    config: Config
    shard: Shard | None


def prepare_apply(
    plan_path: Path,
    spec_path: Path | None,
    config_path: Path | None,
    *,
    max_age: float,
    log_format: str | None = None,
    log_level: str | None = None,
    options: RunOptions = NO_OPTIONS,
) -> Applying:
    """Read and check the plan at ``plan_path`` against its spec (``spec_path``, or the one
    the plan names); InputError (exit 2, nothing sent) if it is too old, its spec changed or an
    entry is one the spec does not select. ``options`` may set the deletion brake
    (``--max-deletions``)."""
    plan_file = read_plan(plan_path)
    header = plan_file.header
    age = datetime.now(UTC) - header.created_at
    if age.total_seconds() > max_age:
        raise InputError(
            f"plan {plan_path} is {age.total_seconds() / 3600:.1f} h old, older than --max-age "
            f"({max_age / 3600:g} h): what it lists may have changed; plan again, or pass "
            "a larger --max-age"
        )
    spec_path = spec_path or (plan_path.parent / header.spec_path)
    spec, config = load_inputs(spec_path, config_path, log_format, log_level)
    shard = parse_shard(header.shard) if header.shard else None
    plan, changes = replan(
        spec,
        datetime.fromisoformat(header.frozen_now),
        header.times,
        shard,
        fingerprint=header.fingerprint,
        canonical=header.canonical_spec,
    )
    if changes is not None:
        raise InputError(
            [
                f"the job spec changed since plan {plan_path} was made:",
                *changes,
                "plan again with this spec (the plan was reviewed against the old one)",
            ]
        )
    # each entry's kind (and id, and Service) is the spec's
    confine_plan(plan_file, plan.sources, plan.shard, plan.services)
    plan = options.braked(dataclasses.replace(plan, sources=plan_file.sources()))
    preflight(plan.sources, plan.max_deletions)
    return Applying(plan, plan_file, spec_path, config, shard)


def run_applied(
    applying: Applying,
    checkpoint_dir: Path | None,
    config_path: Path | None,
    console: Console,
    options: RunOptions = NO_OPTIONS,
) -> RunResult:
    """Run the checked plan under its job's lock, with a new checkpoint in ``checkpoint_dir``
    (default: the config's)."""
    plan = applying.plan
    directory = usable_directory(checkpoint_dir or applying.config.checkpoint_dir)
    shard = applying.shard
    with job_lock(directory, plan.name, None if shard is None else shard.suffix):
        return loop.run(
            partial(
                start_run,
                plan,
                applying.config,
                applying.spec_path,
                config_path,
                None,
                terminal_display(console, MONOTONIC),
                clock=MONOTONIC,
                directory=directory,
                options=options,
                plan_file=applying.plan_file,
            )
        )
