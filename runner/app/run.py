"""``bulkops run`` and ``bulkops plan``: a job planned from its spec, then run or listed.

``run`` takes the job's lock in its checkpoint directory; with ``--resume-or-start`` it first
decides from the job's earlier logs (:func:`runner.app.unattended.decide`) whether to resume one,
do nothing, or start anew. ``plan`` (a dry run) lists what the job selects and sends no DELETE.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

from rich.console import Console

from runner.app import loop
from runner.app.display import print_resolution, terminal_display
from runner.app.explain import remote_problem
from runner.app.inputs import load_inputs
from runner.app.job import NO_OPTIONS, PlanResult, RunOptions, plan_targets, start_run
from runner.app.outcome import finish
from runner.app.planview import holds_table, per_service_table, print_plan
from runner.app.resume import ResumeRequest, resume
from runner.app.unattended import (
    Action,
    api_hosts,
    decide,
    job_lock,
    job_logs,
    usable_directory,
)
from runner.clock import MONOTONIC
from runner.engine.scheduler import preflight
from runner.errors import AuthError, ExitCode, OperationFailed, RemoteError
from runner.internal import leaves
from runner.log.snapshot import replay_log
from runner.plan.planfile import PlanWriter
from runner.plan.planfile import new_header as new_plan_header
from runner.plan.planner import JobPlan, build_plan, shard_plan
from runner.plan.shard import Shard, resolve_shard
from runner.spec.config import Config
from runner.spec.resolved import Resolution

__all__ = ["RunRequest", "dry_run", "plan_job", "remote_failure", "run_job"]


@dataclass(frozen=True)
class RunRequest:
    """A run as asked for: the spec and config, where the checkpoint goes, and how to drive it."""

    job: Path
    config: Path | None = None
    log_format: str | None = None
    log_level: str | None = None
    checkpoint: Path | None = None  # the log to create; default: a new one in checkpoint_dir
    checkpoint_dir: Path | None = None  # default: the config's
    shard: str | None = None  # "I/N"
    shards: int | None = None  # N, the index from JOB_COMPLETION_INDEX
    resume_or_start: bool = False
    min_interval: float = 0.0  # seconds
    options: RunOptions = NO_OPTIONS


def plan_job(request: RunRequest) -> tuple[JobPlan, Config, Shard | None]:
    """The job's plan as of now (its shard's part of it), its config and its shard; bad input
    and a plan no safety limit allows are refused before anything is sent."""
    spec, config = load_inputs(request.job, request.config, request.log_format, request.log_level)
    shard = resolve_shard(request.shard, request.shards, os.environ)
    # A whole second: the cutoffs shown (to the second) are then exactly the ones applied.
    now = datetime.now(UTC).replace(microsecond=0)
    plan = request.options.braked(shard_plan(build_plan(spec, now), shard))
    preflight(plan.sources, plan.max_deletions)
    return plan, config, shard


def run_job(request: RunRequest, console: Console, err: Console) -> int:
    """Run the job (or, with ``resume_or_start``, what its earlier logs call for); the exit
    code."""
    plan, config, shard = plan_job(request)
    directory = request.checkpoint.parent if request.checkpoint else request.checkpoint_dir
    directory = usable_directory(directory or config.checkpoint_dir)
    label = None if shard is None else shard.suffix
    with job_lock(directory, plan.name, label):
        if request.resume_or_start:
            found = job_logs(directory, plan.name, None if shard is None else str(shard))
            decision = decide(found, datetime.now(UTC), timedelta(seconds=request.min_interval))
            console.print(f"resume-or-start: {decision.action.value} ({decision.reason})")
            if decision.action is Action.SKIP:
                return ExitCode.OK
            if decision.action is Action.BLOCKED:
                return ExitCode.ABORTED
            if decision.action is Action.RESUME:
                assert decision.log is not None
                again = ResumeRequest(
                    checkpoint=decision.log,
                    spec=request.job,
                    config=request.config,
                    log_format=request.log_format,
                    log_level=request.log_level,
                    options=request.options,
                )
                return resume(again, console, err, replay_log(decision.log))
        print_resolution(
            plan.resolution(api_hosts(config), config.credentials.account_sid),
            console,
            f"run of job {plan.name!r}:",
        )
        result = loop.run(
            partial(
                start_run,
                plan,
                config,
                request.job,
                request.config,
                request.checkpoint,
                terminal_display(console, MONOTONIC),
                clock=MONOTONIC,
                directory=directory,
                options=request.options,
            )
        )
    return finish(result, console, err)


def dry_run(
    request: RunRequest,
    console: Console,
    err: Console,
    out: Path | None,
    on_plan: Callable[[JobPlan, PlanResult, Resolution], None] | None = None,
) -> int:
    """List what the job selects (GET requests only) and print it, writing the targets to the
    plan file ``out`` if given, and handing the plan to ``on_plan`` (``-o json``); the exit
    code."""
    plan, config, _shard = plan_job(request)
    resolution = plan.resolution(api_hosts(config), config.credentials.account_sid)
    writer = None if out is None else PlanWriter(out, new_plan_header(plan, request.job, out))
    try:
        result = loop.run(
            partial(
                plan_targets,
                plan,
                config,
                clock=MONOTONIC,
                sink=None if writer is None else writer.add,
                # With no `service:`, name the Service that was listed.
                ask_default_service=resolution.in_service and resolution.service is None,
            )
        )
    except BaseException as exc:
        if writer is not None:
            writer.discard()
        failure = remote_failure(exc)
        if failure is None:
            raise
        # One line naming the URL and the fix; a plan is all or nothing, so none is written.
        err.print(
            f"[bold red]plan failed:[/] {remote_problem(failure)}; nothing was deleted"
            + ("" if out is None else f" and no plan was written to {out}"),
            highlight=False,
        )
        return ExitCode.AUTH if isinstance(failure, AuthError) else ExitCode.FAILURES
    if writer is not None:
        writer.commit()
    resolution = dataclasses.replace(resolution, default_service=result.default_service)
    print_resolution(resolution, console, f"plan of job {plan.name!r}:")
    print_plan(plan.name, result.selected, result.covered, result.samples, console)
    if result.by_service:
        console.print(per_service_table(result.by_service))
    if result.holds is not None:
        console.print(holds_table(result.holds.kept))
    console.print(f"total selected: {sum(result.selected.values())}")
    if result.holds is not None:
        console.print(f"total held: {sum(result.holds.kept.values())}")
    if writer is not None:
        console.print(
            f"plan written: {out} ({sum(writer.counts.values())} targets, IDs only); "
            f"review it, then `bulkops apply {out}`",
            highlight=False,
        )
    if on_plan is not None:
        on_plan(plan, result, resolution)
    return ExitCode.OK


def remote_failure(exc: BaseException) -> RemoteError | OperationFailed | None:
    """The remote failure ``exc`` (or a group of them) amounts to — credentials refused first —
    or None when anything else is among them."""
    found = leaves(exc)
    if not all(isinstance(e, RemoteError | OperationFailed) for e in found):
        return None
    auth = [e for e in found if isinstance(e, AuthError)]
    first = (auth or found)[0]
    assert isinstance(first, RemoteError | OperationFailed)
    return first
