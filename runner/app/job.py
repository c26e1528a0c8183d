"""Running a job end to end: the I/O shell around the engine.

It opens the HTTP session and the checkpoint, starts the engine, the checkpoint writer, the
progress display and the signal watcher in one task group, and turns how the run ended into an
exit code. ``plan`` does the discovery half only and sends no DELETE.
"""

from __future__ import annotations

import os
import random
import secrets
import signal
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import CodeType
from typing import Any, BinaryIO

import aiohttp
import anyio
import structlog
import structlog.contextvars

from runner import __version__
from runner.app.explain import remote_problem
from runner.app.unattended import api_hosts
from runner.engine.discovery import Discovery
from runner.engine.scheduler import STAGES, Engine, EngineSettings
from runner.errors import ConfigError, ExitCode, SafetyAbort
from runner.internal import InternalFault, diagnose
from runner.kinds.catalog import Product, Resource, Target
from runner.log.checkpoint import CheckpointWriter, Header, Replay, State, open_log, read_checkpoint
from runner.plan.planfile import PlanFile
from runner.plan.planner import JobPlan
from runner.plan.selection import phase
from runner.report.completion import OUTCOMES, summarize
from runner.report.output import write_reports
from runner.spec.config import Config
from runner.values import Progress
from runner.wire.client import TwilioClient
from runner.wire.limits import Limits
from runner.wire.requester import Requester

log = structlog.get_logger("bulkops.job")

GRACE_SECONDS = 4.0  # requests in flight get this long after Ctrl-C before being cancelled
# Ctrl-C, a service manager's stop, and a closed terminal (or a hang-up sent by tools that
# treat it as "stop"): each stops the run the same way, resumably (exit 130).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def new_run_id(now: datetime) -> str:
    """A sortable, unique run id: UTC time plus randomness."""
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def build_client(session: aiohttp.ClientSession, config: Config) -> TwilioClient:
    """The HTTP client for the configured hosts and credentials."""
    return TwilioClient(
        session,
        {
            Product.CONVERSATIONS: config.base_urls.conversations,
            Product.MEMORY: config.base_urls.memory,
        },
        config.credentials.basic_auth(),
        user_agent=f"bulkops/{__version__}",
    )


def build_requester(client: TwilioClient, plan: JobPlan, rng: random.Random) -> Requester:
    """Limits and retry policy of one run."""
    limits = Limits(
        concurrency=plan.concurrency,
        per_conversation_rate=plan.per_conversation_rate,
        per_service_rate=plan.per_service_rate,
        products=plan.products,
        rng=rng,
        max_pause=plan.retry.max_pause,
    )
    return Requester(client, limits, plan.retry, rng)


def _session(plan: JobPlan) -> aiohttp.ClientSession:
    # One session, one connection pool sized to the in-flight cap: connections are reused.
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=plan.concurrency + 8))


# What shows a run's progress while it goes (a live table, log lines): given by the caller, so
# that a run needs no terminal library (runner.app.display has one).
Display = Callable[[Progress[Resource, State]], Awaitable[None]]

COMPACT_REPLAY_FROM = 100_000  # targets: below, the final replay's dict costs under 10 MB


@dataclass(frozen=True)
class RunOptions:
    """How a run is driven, beyond its spec: a time budget and where metrics go."""

    max_duration: float | None = None  # seconds; then stop like Ctrl-C, resumable
    metrics_textfile: Path | None = None
    metrics_port: int | None = None
    metrics_interval: float = 15.0


NO_OPTIONS = RunOptions()


@dataclass
class RunResult:
    """How a run ended."""

    exit_code: int
    checkpoint: Path
    replay: Replay | None = None
    message: str | None = None
    discovery_errors: int = 0  # sources that could not be listed in full


async def execute(
    plan: JobPlan,
    config: Config,
    log_path: Path,
    header: Header,
    prior: Replay | None,
    display: Display,
    *,
    retry_failed: bool = False,
    options: RunOptions = NO_OPTIONS,
) -> RunResult:
    """Run (or resume) a job against the checkpoint at ``log_path``; ``display`` shows its
    progress until cancelled."""
    structlog.contextvars.bind_contextvars(
        run_id=header.run_id, job=header.job, **({"shard": header.shard} if header.shard else {})
    )
    began = anyio.current_time()
    stages = {**STAGES, **_SHELL_STAGES}
    rng = random.Random()
    settings = EngineSettings(
        run_id=header.run_id,
        service=plan.service,
        webhooks=plan.webhooks,
        workers=plan.concurrency,
        poll_interval=plan.poll_interval,
        operation_timeout=plan.operation_timeout,
        max_deletions=plan.max_deletions,
        max_failure_rate=plan.max_failure_rate,
        failure_rate_min_count=plan.failure_rate_min_count,
        retry_failed=retry_failed,
        owns=plan.shard.owns if plan.shard is not None else None,
    )
    if options.metrics_textfile is not None or options.metrics_port is not None:
        # Loaded only when asked for: prometheus_client and aiohttp's server cost a run that
        # exports nothing about 10 MB of its memory budget.
        from runner.app import metrics

        labels = metrics.RunLabels(plan.name, plan.shard)
        stages[metrics.write_periodically.__code__] = "the metrics exporter"
        stages[metrics.serve_metrics.__code__] = "the metrics server"
        stages[metrics.write_textfile.__code__] = "writing the metrics"
    interrupted = out_of_time = writer_crashed = False
    replayed = None if prior is None else prior.size
    with open_log(log_path, header if prior is None else None, replayed=replayed) as handle:
        writer = CheckpointWriter(log_path, header.started_at)
        async with _session(plan) as session:
            requester = build_requester(build_client(session, config), plan, rng)
            engine = Engine(
                settings,
                requester,
                plan.sources,
                writer,
                prior=prior,
                fanout=plan.fanout,
            )
            written = anyio.Event()
            # A checkpoint that cannot be written stops everything at once: no request may be
            # sent that the log could not record.
            writer.on_error = lambda _exc: engine.hard_stop()

            def internal(exc: BaseException, stage: str = "the run") -> None:
                engine.fail_internal(diagnose(exc, stages, default=stage))

            async def guarded(
                stage: str, function: Callable[..., Awaitable[None]], *args: Any
            ) -> None:
                # The tasks around the engine report a fault of theirs to the engine (which stops
                # hard) instead of raising it: a raise would cancel the run from under the footer,
                # which must say how the run ended.
                try:
                    await function(*args)
                except Exception as exc:
                    internal(exc, stage)

            async def write() -> None:
                nonlocal writer_crashed
                try:
                    await writer.run(handle)
                except Exception as exc:
                    writer_crashed = True
                    internal(exc, "the checkpoint writer")
                finally:
                    written.set()

            async def watch_signals() -> None:
                nonlocal interrupted
                if threading.current_thread() is not threading.main_thread():
                    return  # signal handlers can only be installed by the main thread
                with anyio.open_signal_receiver(*STOP_SIGNALS) as signals:
                    async for signum in signals:
                        if not interrupted:
                            interrupted = True
                            log.warning("stopping", signal=signal.Signals(signum).name)
                            engine.stop()
                            tg.start_soon(_hard_stop_later, engine)
                        else:
                            engine.hard_stop()

            async def budget(seconds: float) -> None:
                nonlocal out_of_time
                await anyio.sleep(seconds)
                out_of_time = True
                log.warning("max_duration_reached", seconds=seconds)
                engine.stop()
                tg.start_soon(_hard_stop_later, engine)

            def live() -> metrics.RunFigures:
                return metrics.figures_from_progress(
                    engine.progress,
                    requester.tally,
                    duration_seconds=anyio.current_time() - began,
                )

            async with anyio.create_task_group() as tg:
                tg.start_soon(write)
                tg.start_soon(guarded, "the signal watcher", watch_signals)
                tg.start_soon(guarded, "the progress display", display, engine.progress)
                if options.max_duration is not None:
                    tg.start_soon(guarded, "the --max-duration timer", budget, options.max_duration)
                if options.metrics_textfile is not None:
                    tg.start_soon(
                        guarded,
                        "the metrics exporter",
                        partial(
                            metrics.write_periodically,
                            options.metrics_textfile,
                            live,
                            labels,
                            interval=options.metrics_interval,
                        ),
                    )
                if options.metrics_port is not None:
                    try:
                        port = await tg.start(
                            metrics.serve_metrics,
                            metrics.build_registry(live, labels),
                            options.metrics_port,
                        )
                    except OSError as exc:  # before the first request: bad input, exit 2
                        raise ConfigError(
                            f"--metrics-port {options.metrics_port}: cannot listen on 127.0.0.1 "
                            f"({exc.strerror}); choose a free port"
                        ) from exc
                    log.info("metrics_serving", url=f"http://127.0.0.1:{port}/metrics")
                try:
                    await engine.run()
                except* Exception as group:
                    # The engine's task group has cancelled its other tasks: what they had in
                    # hand stays requested (or accepted) in the log, for a resume to drive.
                    internal(group)
                finally:
                    code = _exit_code(engine, writer, interrupted, out_of_time)
                    tally = requester.tally
                    footer = {
                        "t": "E",
                        "exit": code,
                        "ts": writer.seconds(),
                        "requests": sum(tally.requests.values()),
                        "retries": tally.retries,
                        "throttled": tally.throttled,
                    }
                    with anyio.CancelScope(shield=True):
                        writer.put(footer)
                        writer.close()
                        await written.wait()
                        if writer_crashed:
                            # The writer died (before or while writing the footer): the footer
                            # goes through a new one, and says 8. Records it dropped are only
                            # driven again by the resume (every delete is idempotent).
                            code = _exit_code(engine, writer, interrupted, out_of_time)
                            await _rescue_footer(handle, log_path, header, {**footer, "exit": code})
                    tg.cancel_scope.cancel()
        # A resume brings its replay up to date rather than reading a second copy of a big log.
        # A big fresh run's replay is built compact, as this is where its memory peaks (1M
        # targets: 175 MB with a dict, 112 MB compact); a small one keeps the faster dict.
        problems: list[str] = []
        replay: Replay | None = None
        try:
            admitted = engine.release()
            compact = prior is None and admitted >= COMPACT_REPLAY_FROM
            replay = read_checkpoint(
                log_path, into=prior, compact_for=admitted if compact else None
            )
            try:
                write_reports(log_path, replay)
            except OSError as exc:
                problems.append(f"cannot write the report beside {log_path}: {exc.strerror}")
            _log_finished(replay, code, began, requester)
            if options.metrics_textfile is not None:
                final = metrics.figures_from_replay(
                    replay,
                    requester.tally,
                    duration_seconds=anyio.current_time() - began,
                    exit_code=code,
                )
                try:
                    metrics.write_textfile(options.metrics_textfile, final, labels)
                except OSError as exc:
                    log.warning("metrics_write_failed", error=exc.strerror)
        except Exception as exc:
            # The footer is written and may say the run went well: a second footer (a process
            # ending) records the fault, so `resume` writes the report again.
            engine.fail_internal(diagnose(exc, stages, default="writing the report"))
            if code != ExitCode.INTERNAL:
                code = ExitCode.INTERNAL
                footer = {"t": "E", "exit": code, "ts": writer.seconds()}  # traffic counted once
                await _rescue_footer(handle, log_path, header, footer)
    problems[:0] = _stop_reasons(engine, writer, log_path)
    return RunResult(code, log_path, replay, "\n".join(problems) or None, engine.discovery_errors)


def _log_finished(replay: Replay, code: int, began: float, requester: Requester) -> None:
    totals = summarize(replay).totals
    log.info(
        "run_finished",
        exit_code=int(code),  # a number in the log, not the enum's repr
        seconds=round(anyio.current_time() - began, 1),
        **{outcome: totals[outcome] for outcome in OUTCOMES},
        requests=sum(requester.tally.requests.values()),
        retries=requester.tally.retries,
        throttled=requester.tally.throttled,
    )


def _stop_reasons(engine: Engine, writer: CheckpointWriter, log_path: Path) -> list[str]:
    """Why the run stopped before its end, one line each with the way to go on, in the order
    of :func:`_exit_code` (the first names the exit code)."""
    last = [] if engine.last_failure is None else [
        f"the last DELETE that failed: {remote_problem(engine.last_failure)}"
    ]
    reasons: list[str] = []
    if writer.error is not None:
        reasons.append(
            f"cannot write checkpoint {log_path}: {writer.error.strerror}; nothing was sent "
            f"that it does not record. Free space, then `bulkops resume {log_path}`"
        )
    elif engine.abort is not None:
        reasons += [str(engine.abort), *last]
    if engine.internal_error is not None:
        reasons.append(internal_error_line(engine.internal_error, log_path))
    if reasons:
        return reasons
    if engine.auth_error is not None:
        url = f" by {engine.auth_error.url}" if engine.auth_error.url else ""
        return [
            f"credentials refused (HTTP {engine.auth_error.status}){url}; fix them and run "
            f"`bulkops resume {log_path}`"
        ]
    if engine.paused is not None:
        return [
            f"{engine.paused}; nothing was sent into the pause. "
            f"`bulkops resume {log_path}` after it"
        ]
    listing = [
        f"listing source {index} failed: {remote_problem(failure)}"
        for index, failure in engine.discovery_failures
    ]
    return listing + last


def internal_error_line(fault: InternalFault, log_path: Path) -> str:
    """The one line a person reads about an internal error: what, where, and how to go on."""
    return (
        f"internal error: {fault.describe()}; the run stopped, nothing unfinished is recorded "
        f"as done (details: the internal_error log event). Continue with: "
        f"bulkops resume {log_path}"
    )


async def _rescue_footer(
    handle: BinaryIO, log_path: Path, header: Header, footer: dict[str, Any]
) -> None:
    """Append ``footer`` through a writer of its own (the run's has died or closed)."""
    rescue = CheckpointWriter(log_path, header.started_at)
    rescue.put(footer)
    rescue.close()
    try:
        with anyio.CancelScope(shield=True):
            await rescue.run(handle)
    except Exception:
        # No footer at all still reads as unfinished: `resume` and --resume-or-start go on.
        log.error("footer_not_written", exit_code=int(footer["exit"]))


async def _hard_stop_later(engine: Engine) -> None:
    await anyio.sleep(GRACE_SECONDS)
    engine.hard_stop()


def _exit_code(
    engine: Engine, writer: CheckpointWriter, interrupted: bool, out_of_time: bool
) -> ExitCode:
    if writer.error is not None:
        return ExitCode.CHECKPOINT
    if engine.abort is not None:
        return ExitCode.ABORTED
    if engine.internal_error is not None:
        return ExitCode.INTERNAL
    if engine.auth_error is not None:
        return ExitCode.AUTH
    if engine.paused is not None:
        return ExitCode.PAUSED
    if interrupted:
        return ExitCode.INTERRUPTED
    if out_of_time:
        return ExitCode.OUT_OF_TIME
    if engine.failures() or engine.discovery_errors:
        return ExitCode.FAILURES
    return ExitCode.OK


# Where an unexpected exception met around the engine happened, in words (see runner.internal).
_SHELL_STAGES: dict[CodeType, str] = {
    CheckpointWriter.run.__code__: "the checkpoint writer",
    read_checkpoint.__code__: "reading the log back for the report",
    write_reports.__code__: "writing the report",
}


@dataclass
class PlanResult:
    """What a dry run found: counts by resource and a sample of IDs."""

    selected: Counter[Resource] = field(default_factory=Counter)
    covered: Counter[Resource] = field(default_factory=Counter)
    samples: dict[Resource, list[str]] = field(default_factory=dict)


async def plan_targets(
    plan: JobPlan,
    config: Config,
    *,
    sample: int = 5,
    sink: Callable[[Sequence[Target]], None] | None = None,
) -> PlanResult:
    """List what the job selects without deleting anything (GET requests only); ``sink`` gets
    every selected target (covered ones included), a page at a time."""
    result = PlanResult()
    seen: set[str] = set()
    conversations: set[str] = set()
    async with _session(plan) as session:
        requester = build_requester(build_client(session, config), plan, random.Random())
        discovery = Discovery(
            requester,
            plan.service,
            fanout=plan.fanout,
            skip_conversation=conversations.__contains__,
        )

        owns = plan.shard.owns if plan.shard is not None else None

        async def emit(targets: Sequence[Target]) -> None:
            chosen: list[Target] = []
            for target in targets:
                if target.key in seen or (owns is not None and not owns(target)):
                    continue
                seen.add(target.key)
                chosen.append(target)
                if target.parent is not None and target.parent in conversations:
                    result.covered[target.resource] += 1
                    continue
                if target.resource is Resource.CONVERSATION_V1:
                    conversations.add(target.id)
                result.selected[target.resource] += 1
                ids = result.samples.setdefault(target.resource, [])
                if len(ids) < sample:
                    ids.append(f"{target.parent}/{target.id}" if target.parent else target.id)
            if sink is not None and chosen:
                sink(chosen)

        for number in sorted({phase(s) for s in plan.sources}):
            for source in plan.sources:
                if phase(source) == number:
                    await discovery.run(source, emit)
    return result


def start_header(
    plan: JobPlan,
    run_id: str,
    config_path: Path | None,
    spec_path: Path,
    log_path: Path,
    plan_file: PlanFile | None = None,
    *,
    hosts: dict[str, str] | None = None,
) -> Header:
    """The header of a new run's log; paths are stored relative to the log's directory, so a
    checkpoint directory copied to another machine with the spec beside it still resumes.
    ``hosts`` (product → API origin) lets a resume refuse other hosts than the run's."""

    def rel(path: Path) -> str:
        return os.path.relpath(path.resolve(), log_path.parent.resolve())

    return Header(
        run_id=run_id,
        job=plan.name,
        fingerprint=plan.fingerprint,
        frozen_now=plan.frozen_now,
        times=plan.times_json,
        spec_path=rel(spec_path),
        config_path=rel(config_path) if config_path else None,
        version=__version__,
        started=datetime.now(UTC).isoformat(),
        canonical_spec=plan.canonical,
        shard=None if plan.shard is None else str(plan.shard),
        plan=None if plan_file is None else rel(plan_file.path),
        plan_sha256=None if plan_file is None else plan_file.digest,
        hosts=hosts,
    )


__all__ = ["RunResult", "SafetyAbort", "execute", "plan_targets"]


async def start_run(
    plan: JobPlan,
    config: Config,
    spec_path: Path,
    config_path: Path | None,
    checkpoint: Path | None,
    display: Display,
    *,
    directory: Path | None = None,
    options: RunOptions = NO_OPTIONS,
    plan_file: PlanFile | None = None,
) -> RunResult:
    """Start a new run of ``plan`` with a new checkpoint log (``checkpoint``, or a new file
    named after the job, its shard and the run in ``directory``)."""
    run_id = new_run_id(datetime.now(UTC))
    name = plan.name if plan.shard is None else f"{plan.name}.{plan.shard.suffix}"
    log_path = checkpoint or (directory or config.checkpoint_dir) / f"{name}-{run_id}.jsonl"
    header = start_header(
        plan, run_id, config_path, spec_path, log_path, plan_file, hosts=api_hosts(config)
    )
    return await execute(plan, config, log_path, header, None, display, options=options)
