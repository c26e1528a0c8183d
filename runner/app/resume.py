"""``bulkops resume``: continue a run from its checkpoint log, within what the spec selects.

The spec and the config are the invocation's (never what the log names: a log anyone could
have planted must not choose where the credentials go), the spec must still plan what the run
was started with (:func:`runner.app.scope.resume_plan`), and every target the log left open is
checked against it (:func:`runner.app.scope.confine_resume`) before anything is sent.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from rich.console import Console

from runner.app import loop
from runner.app.display import print_resolution, terminal_display
from runner.app.inputs import load_inputs
from runner.app.job import NO_OPTIONS, RunOptions, RunResult, execute
from runner.app.outcome import finish
from runner.app.scope import confine_resume, resume_plan
from runner.app.unattended import api_hosts, check_same_hosts, job_lock
from runner.clock import MONOTONIC
from runner.errors import CheckpointError, ExitCode
from runner.log.lock import ensure_not_in_use
from runner.log.replay import Replay
from runner.log.snapshot import replay_log
from runner.plan.planfile import PlanFile, read_plan
from runner.plan.shard import parse_shard
from runner.report.output import write_reports

__all__ = ["ResumeRequest", "resume", "resume_checkpoint"]


@dataclass(frozen=True)
class ResumeRequest:
    """A resume as asked for: the log, the spec and config to use, and how to drive it."""

    checkpoint: Path
    spec: Path | None = None  # default: the spec the log names, relative to the log
    config: Path | None = None
    log_format: str | None = None
    log_level: str | None = None
    retry_failed: bool = False
    force: bool = False  # resume although the spec changed
    options: RunOptions = NO_OPTIONS


def resume_checkpoint(request: ResumeRequest, console: Console, err: Console) -> int:
    """Take the checkpoint's own lock, then its job's, and resume it; the exit code."""
    path = request.checkpoint
    ensure_not_in_use(path)  # the checkpoint's own lock first: a second driver of it is exit 2
    replay = replay_log(path)  # from its snapshot and the lines after it, if it has one
    shard = parse_shard(replay.header.shard) if replay.header.shard else None
    with job_lock(path.parent, replay.header.job, None if shard is None else shard.suffix):
        return resume(request, console, err, replay)


def resume(request: ResumeRequest, console: Console, err: Console, replay: Replay) -> int:
    """Resume the run ``replay`` replays (the caller holds the job's lock); the exit code."""
    path = request.checkpoint
    for warning in replay.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    header = replay.header
    spec_path = request.spec or (path.parent / header.spec_path)
    # The invocation's config, never the one the log names: a log anyone could have planted
    # must not choose where the credentials go (issue 11).
    spec, config = load_inputs(spec_path, request.config, request.log_format, request.log_level)
    check_same_hosts(header, api_hosts(config), request.config is not None)
    if replay.exit_code == ExitCode.OK and not request.retry_failed:
        # The run may have been killed after its last line but before its report was written.
        write_reports(path, replay)
        console.print(f"run {header.run_id} already finished; nothing to do.")
        return finish(RunResult(ExitCode.OK, path, replay, None), console, err)
    shard = parse_shard(header.shard) if header.shard else None
    plan, changed = resume_plan(spec, header, shard, force=request.force)
    plan = request.options.braked(plan)  # --max-deletions: no spec edit, so no --force
    spec_sources = plan.sources
    plan_file: PlanFile | None = None
    if header.plan is not None:
        # An applied plan is resumed from the plan, never from the spec's queries.
        plan_file = read_plan(path.parent / header.plan)
        if plan_file.digest != header.plan_sha256:
            raise CheckpointError(
                f"plan {plan_file.path} is not the one run {header.run_id} applied "
                "(its digest differs); restore that plan file to resume"
            )
        plan = dataclasses.replace(plan, sources=plan_file.sources())
    # Nothing the spec does not select is driven, whatever the log says (runner.app.scope).
    confine_resume(
        replay,
        plan,
        spec_sources,
        config,
        changed=changed,
        retry_failed=request.retry_failed,
        plan_file=plan_file,
    )
    print_resolution(
        plan.resolution(api_hosts(config), config.credentials.account_sid),
        console,
        f"resuming run {header.run_id} of job {plan.name!r}:",
    )
    result = loop.run(
        partial(
            execute,
            plan,
            config,
            path,
            header,
            replay,
            terminal_display(console, MONOTONIC),
            clock=MONOTONIC,
            retry_failed=request.retry_failed,
            options=request.options,
        )
    )
    return finish(result, console, err)
