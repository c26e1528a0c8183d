"""Running a job end to end: the I/O shell around the engine.

It opens the HTTP client and the checkpoint, starts the engine, the checkpoint writer, the
progress display and the signal watcher in one task group, and turns how the run ended into an
exit code. ``plan`` does the discovery half only and sends no DELETE.
"""

from __future__ import annotations

import dataclasses
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
from typing import TYPE_CHECKING, Any, BinaryIO

import anyio
import structlog
import structlog.contextvars

from runner import __version__
from runner.app.explain import remote_problem
from runner.app.holding import hold_list
from runner.app.loop import running as running_loop
from runner.app.pacing import PaceRecorder, seed_from_log
from runner.app.snapshots import SnapshotSettings, snapshot_periodically
from runner.app.unattended import api_hosts
from runner.clock import Clock
from runner.engine.admission import Admission, Verdict, in_phases
from runner.engine.discovery import Discovery
from runner.engine.holds import HoldList
from runner.engine.scheduler import STAGES, Engine, EngineSettings
from runner.errors import ConfigError, ExitCode, RemoteError, SafetyAbort
from runner.internal import InternalFault, diagnose
from runner.kinds.base import Product, ResourceKind, Target
from runner.kinds.ids import ID_PATTERNS
from runner.log.lock import open_log
from runner.log.records import Header, State, footer_record
from runner.log.replay import Replay, read_checkpoint
from runner.log.snapshot import write_snapshot
from runner.log.writer import CheckpointWriter
from runner.plan.planfile import PlanFile
from runner.plan.planner import JobPlan
from runner.plan.selection import Source, source_kinds
from runner.plan.shard import Shard, share_deletions
from runner.report.completion import OUTCOMES, summarize
from runner.report.output import write_reports
from runner.spec.config import Config
from runner.values import Progress
from runner.wire.client import TwilioClient
from runner.wire.limits import Limits
from runner.wire.requester import Requester

if TYPE_CHECKING:
    from runner.app.metrics import RunFigures, RunLabels

log = structlog.get_logger("bulkops.job")

GRACE_SECONDS = 4.0  # requests in flight get this long after Ctrl-C before being cancelled
# Ctrl-C, a service manager's stop, and a closed terminal (or a hang-up sent by tools that
# treat it as "stop"): each stops the run the same way, resumably (exit 130).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def new_run_id(now: datetime) -> str:
    """A sortable, unique run id: UTC time plus randomness."""
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def log_name(job: str, shard: Shard | None, run_id: str) -> str:
    """The file name of a run's checkpoint log in the checkpoint directory (``bulkops prune``
    recognises a log by it)."""
    name = job if shard is None else f"{job}.{shard.suffix}"
    return f"{name}-{run_id}.jsonl"


def build_client(plan: JobPlan, config: Config) -> TwilioClient:
    """The HTTP client for the configured hosts and credentials: one pool of connections, sized
    to the in-flight cap (and a few for the reads beside it), all reused."""
    return TwilioClient(
        {
            Product.CONVERSATIONS: config.base_urls.conversations,
            Product.MEMORY: config.base_urls.memory,
        },
        config.credentials.basic_auth(),
        connections=plan.concurrency + 8,
        user_agent=f"bulkops/{__version__}",
    )


def build_requester(
    client: TwilioClient, plan: JobPlan, rng: random.Random, clock: Clock
) -> Requester:
    """Limits and retry policy of one run, waiting on ``clock``."""
    limits = Limits(
        concurrency=plan.concurrency,
        per_conversation_rate=plan.per_conversation_rate,
        per_service_rate=plan.per_service_rate,
        products=plan.products,
        rng=rng,
        max_pause=plan.retry.max_pause,
        clock=clock,
    )
    return Requester(client, limits, plan.retry, rng, clock=clock)


# What shows a run's progress while it goes (a live table, log lines): given by the caller, so
# that a run needs no terminal library (runner.app.display has one).
Display = Callable[[Progress[ResourceKind, State]], Awaitable[None]]

COMPACT_REPLAY_FROM = 100_000  # targets: below, the final replay's dict costs under 10 MB


@dataclass(frozen=True)
class RunOptions:
    """How a run is driven, beyond its spec: a time budget, where metrics go, and the
    deletion brake of this invocation."""

    max_duration: float | None = None  # seconds; then stop like Ctrl-C, resumable
    metrics_textfile: Path | None = None
    metrics_port: int | None = None
    metrics_interval: float = 15.0
    metrics_push: str | None = None  # a Pushgateway's URL
    metrics_push_interval: float = 30.0
    max_deletions: int | None = None  # --max-deletions: instead of safety.max_deletions

    @property
    def metrics(self) -> bool:
        """Whether metrics go anywhere."""
        return any(
            v is not None for v in (self.metrics_textfile, self.metrics_port, self.metrics_push)
        )

    def braked(self, plan: JobPlan) -> JobPlan:
        """``plan`` under ``--max-deletions`` when it was given: the run's total in place of the
        spec's ``safety.max_deletions`` (a shard's share of it, as the spec's would be). It is
        how the run is driven, not what it selects, so the spec and its fingerprint are
        unchanged and a resume is not refused for it."""
        if self.max_deletions is None:
            return plan
        limit = self.max_deletions
        shared = limit if plan.shard is None else share_deletions(limit, plan.shard)
        return dataclasses.replace(plan, max_deletions=shared)


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
    clock: Clock,
    retry_failed: bool = False,
    options: RunOptions = NO_OPTIONS,
) -> RunResult:
    """Run (or resume) a job against the checkpoint at ``log_path``: build the parts of the
    run, drive them to the footer (``display`` shows its progress until cancelled), then read
    the log back for the report. Everything of the run that waits waits on ``clock``."""
    structlog.contextvars.bind_contextvars(
        run_id=header.run_id, job=header.job, **({"shard": header.shard} if header.shard else {})
    )
    began = clock.now()
    settings = EngineSettings.of(
        plan, header.run_id, retry_failed=retry_failed, holds=hold_list(plan, config)
    )
    replayed = None if prior is None else prior.size
    with open_log(log_path, header if prior is None else None, replayed=replayed) as handle:
        async with build_client(plan, config) as client:
            parts = _build_parts(plan, config, settings, client, log_path, header, prior, clock)
            run = _Run(parts, plan, log_path, header, handle, options, clock, began)
            await run.drive(display)
        await run.close(prior)
    return run.result()


@dataclass(frozen=True)
class _Parts:
    """What one run is made of: the requester (client, limits, retry), the checkpoint writer
    and the engine."""

    requester: Requester
    writer: CheckpointWriter
    engine: Engine
    pace: PaceRecorder


def _build_parts(
    plan: JobPlan,
    config: Config,
    settings: EngineSettings,
    client: TwilioClient,
    log_path: Path,
    header: Header,
    prior: Replay | None,
    clock: Clock,
) -> _Parts:
    writer = CheckpointWriter(log_path, header.started_at, clock)
    requester = build_requester(client, plan, random.Random(), clock)
    engine = Engine(
        settings, requester, plan.sources, writer, clock=clock, prior=prior, fanout=plan.fanout
    )
    shard = f" (shard {header.shard})" if header.shard else ""
    engine.progress.job, engine.progress.checkpoint = f"{header.job}{shard}", str(log_path)
    # A checkpoint that cannot be written stops everything at once: no request may be sent that
    # the log could not record.
    writer.on_error = lambda _exc: engine.hard_stop()
    if prior is not None:
        # Issue 14 §6: a resume starts at the pace the run had learned, not from scratch.
        seed_from_log(
            requester.limits, prior.pace, header.started_at, config.resume_half_life_s
        )
    return _Parts(requester, writer, engine, PaceRecorder(requester.limits, writer, clock))


class _Run:
    """One run being driven and closed: the tasks around the engine (checkpoint writer, signal
    watcher, display, time budget, metrics), the footer, and what the run ended with."""

    def __init__(
        self,
        parts: _Parts,
        plan: JobPlan,
        log_path: Path,
        header: Header,
        handle: BinaryIO,
        options: RunOptions,
        clock: Clock,
        began: float,
    ) -> None:
        self.engine = parts.engine
        self.writer = parts.writer
        self.requester = parts.requester
        self._pace = parts.pace
        self._log_path = log_path
        self._header = header
        self._handle = handle
        self._options = options
        self._clock = clock
        self._began = began
        self._stages = {**STAGES, **_SHELL_STAGES}
        self._labels: RunLabels | None = None  # when metrics are asked for
        if options.metrics:
            # Loaded only when asked for: prometheus_client and aiohttp's server cost a run that
            # exports nothing about 10 MB of its memory budget.
            from runner.app import metrics, metrics_push

            kinds = tuple(dict.fromkeys(k for source in plan.sources for k in source_kinds(source)))
            self._labels = metrics.RunLabels(plan.name, plan.shard, kinds)
            self._stages[metrics.write_periodically.__code__] = "the metrics exporter"
            self._stages[metrics.serve_metrics.__code__] = "the metrics server"
            self._stages[metrics.write_textfile.__code__] = "writing the metrics"
            self._stages[metrics_push.push.__code__] = "the metrics push"
        self._written = anyio.Event()
        self._tg: anyio.abc.TaskGroup  # the one that drives the run, once it does
        self.interrupted = self.out_of_time = self._writer_crashed = False
        self.code = ExitCode.OK
        self.replay: Replay | None = None
        self._problems: list[str] = []

    # -- driving -------------------------------------------------------------------------------

    async def drive(self, display: Display) -> None:
        """Run the engine and the tasks around it to the end, and write the footer."""
        options = self._options
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self._write)
            tg.start_soon(self._guarded, "the signal watcher", self._watch_signals)
            tg.start_soon(self._guarded, "the progress display", display, self.engine.progress)
            tg.start_soon(self._guarded, "the pace recorder", self._pace.run)
            tg.start_soon(
                self._guarded,
                "the snapshot process",
                snapshot_periodically,
                self._log_path,
                self.writer,
                SnapshotSettings.of(os.environ),
            )
            if options.max_duration is not None:
                tg.start_soon(
                    self._guarded, "the --max-duration timer", self._budget, options.max_duration
                )
            if options.metrics:
                await self._start_metrics(tg)
            try:
                await self.engine.run()
            except* Exception as group:
                # The engine's task group has cancelled its other tasks: what they had in hand
                # stays requested (or accepted) in the log, for a resume to drive.
                self._internal(group)
            finally:
                await self._close_log()
                tg.cancel_scope.cancel()

    async def _start_metrics(self, tg: anyio.abc.TaskGroup) -> None:
        from runner.app import metrics, metrics_push

        options = self._options
        if options.metrics_push is not None:
            tg.start_soon(
                self._guarded,
                "the metrics push",
                partial(
                    metrics_push.push_periodically,
                    options.metrics_push,
                    self._live,
                    self._metric_labels(),
                    interval=options.metrics_push_interval,
                    clock=self._clock,
                ),
            )
        if options.metrics_textfile is not None:
            tg.start_soon(
                self._guarded,
                "the metrics exporter",
                partial(
                    metrics.write_periodically,
                    options.metrics_textfile,
                    self._live,
                    self._metric_labels(),
                    interval=options.metrics_interval,
                    clock=self._clock,
                ),
            )
        if options.metrics_port is not None:
            try:
                port = await tg.start(
                    metrics.serve_metrics,
                    metrics.build_registry(self._live, self._metric_labels()),
                    options.metrics_port,
                )
            except OSError as exc:  # before the first request: bad input, exit 2
                raise ConfigError(
                    f"--metrics-port {options.metrics_port}: cannot listen on 127.0.0.1 "
                    f"({exc.strerror}); choose a free port"
                ) from exc
            log.info("metrics_serving", url=f"http://127.0.0.1:{port}/metrics")

    def _metric_labels(self) -> RunLabels:
        assert self._labels is not None  # set whenever metrics are asked for
        return self._labels

    def _live(self) -> RunFigures:
        from runner.app import metrics

        return metrics.figures_from_progress(
            self.engine.progress,
            self.requester.tally,
            duration_seconds=self._clock.now() - self._began,
        )

    def _internal(self, exc: BaseException, stage: str = "the run") -> None:
        self.engine.fail_internal(diagnose(exc, self._stages, default=stage))

    async def _guarded(
        self, stage: str, function: Callable[..., Awaitable[None]], *args: Any
    ) -> None:
        # The tasks around the engine report a fault of theirs to the engine (which stops hard)
        # instead of raising it: a raise would cancel the run from under the footer, which must
        # say how the run ended.
        try:
            await function(*args)
        except Exception as exc:
            self._internal(exc, stage)

    async def _write(self) -> None:
        try:
            await self.writer.run(self._handle)
        except Exception as exc:
            self._writer_crashed = True
            self._internal(exc, "the checkpoint writer")
        finally:
            self._written.set()

    async def _watch_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be installed by the main thread
        with anyio.open_signal_receiver(*STOP_SIGNALS) as signals:
            async for signum in signals:
                if not self.interrupted:
                    self.interrupted = True
                    log.warning("stopping", signal=signal.Signals(signum).name)
                    self.engine.stop()
                    self._tg.start_soon(_hard_stop_later, self.engine, self._clock)
                else:
                    self.engine.hard_stop()

    async def _budget(self, seconds: float) -> None:
        await self._clock.sleep(seconds)
        self.out_of_time = True
        log.warning("max_duration_reached", seconds=seconds)
        self.engine.stop()
        self._tg.start_soon(_hard_stop_later, self.engine, self._clock)

    def _exit_code(self) -> ExitCode:
        return _exit_code(self.engine, self.writer, self.interrupted, self.out_of_time)

    async def _close_log(self) -> None:
        """The footer, with the exit code and the traffic; the writer is closed behind it."""
        self.code = self._exit_code()
        tally = self.requester.tally
        footer = footer_record(
            self.code,
            self.writer.seconds(),
            requests=sum(tally.requests.values()),
            retries=tally.retries,
            throttled=tally.throttled,
            loop=running_loop(),  # which loop this process ran on: the report says it
        )
        with anyio.CancelScope(shield=True):
            self._pace.record()  # what it learned last, for a resume to start from
            self.writer.put(footer)
            self.writer.close()
            await self._written.wait()
            if self._writer_crashed:
                # The writer died (before or while writing the footer): the footer goes through
                # a new one, and says 8. Records it dropped are only driven again by the resume
                # (every delete is idempotent).
                self.code = self._exit_code()
                footer = {**footer, "exit": self.code}
                await _rescue_footer(
                    self._handle, self._log_path, self._header, footer, self._clock
                )

    # -- closing -------------------------------------------------------------------------------

    async def close(self, prior: Replay | None) -> None:
        """Read the log back, write the report and the final metrics."""
        # A resume brings its replay up to date rather than reading a second copy of a big log.
        # A big fresh run's replay is built compact, as this is where its memory peaks (1M
        # targets: 175 MB with a dict, 112 MB compact); a small one keeps the faster dict.
        log_path = self._log_path
        try:
            admitted = self.engine.release()
            compact = prior is None and admitted >= COMPACT_REPLAY_FROM
            self.replay = replay = read_checkpoint(
                log_path, into=prior, compact_for=admitted if compact else None
            )
            try:
                write_reports(log_path, replay)
            except OSError as exc:
                self._problems.append(f"cannot write the report beside {log_path}: {exc.strerror}")
            _write_snapshot(replay)
            _log_finished(replay, self.code, self._clock.now() - self._began, self.requester)
            if self._options.metrics:
                await self._final_metrics(replay)
        except Exception as exc:
            # The footer is written and may say the run went well: a second footer (a process
            # ending) records the fault, so `resume` writes the report again.
            self.engine.fail_internal(diagnose(exc, self._stages, default="writing the report"))
            if self.code != ExitCode.INTERNAL:
                self.code = ExitCode.INTERNAL
                footer = footer_record(self.code, self.writer.seconds())  # traffic counted once
                await _rescue_footer(self._handle, log_path, self._header, footer, self._clock)

    async def _final_metrics(self, replay: Replay) -> None:
        from runner.app import metrics, metrics_push

        final = metrics.figures_from_replay(
            replay,
            self.requester.tally,
            duration_seconds=self._clock.now() - self._began,
            exit_code=self.code,
        )
        if self._options.metrics_textfile is not None:
            try:
                metrics.write_textfile(self._options.metrics_textfile, final, self._metric_labels())
            except OSError as exc:
                log.warning("metrics_write_failed", error=exc.strerror)
        if self._options.metrics_push is not None:
            await metrics_push.push(self._options.metrics_push, final, self._metric_labels())

    def result(self) -> RunResult:
        """How the run ended, with the reasons it stopped early first."""
        problems = [*_stop_reasons(self.engine, self.writer, self._log_path), *self._problems]
        return RunResult(
            self.code,
            self._log_path,
            self.replay,
            "\n".join(problems) or None,
            self.engine.discovery_errors,
        )


def _write_snapshot(replay: Replay) -> None:
    """The resume snapshot of the log as read back (issue 16 §3), so that a resume reads it and
    the lines after it rather than every line. It never fails the run: the log stays the truth,
    and a resume without a snapshot replays the log in full."""
    try:
        write_snapshot(replay)
    except OSError as exc:
        log.warning("snapshot_not_written", error=exc.strerror or str(exc))


def _log_finished(replay: Replay, code: int, seconds: float, requester: Requester) -> None:
    totals = summarize(replay).totals
    log.info(
        "run_finished",
        exit_code=int(code),  # a number in the log, not the enum's repr
        seconds=round(seconds, 1),
        **{outcome: totals[outcome] for outcome in OUTCOMES},
        requests=sum(requester.tally.requests.values()),
        retries=requester.tally.retries,
        throttled=requester.tally.throttled,
        loop=running_loop(),
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
    handle: BinaryIO, log_path: Path, header: Header, footer: dict[str, Any], clock: Clock
) -> None:
    """Append ``footer`` through a writer of its own (the run's has died or closed)."""
    rescue = CheckpointWriter(log_path, header.started_at, clock)
    rescue.put(footer)
    rescue.close()
    try:
        with anyio.CancelScope(shield=True):
            await rescue.run(handle)
    except Exception:
        # No footer at all still reads as unfinished: `resume` and --resume-or-start go on.
        log.error("footer_not_written", exit_code=int(footer["exit"]))


async def _hard_stop_later(engine: Engine, clock: Clock) -> None:
    await clock.sleep(GRACE_SECONDS)
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
    write_snapshot.__code__: "writing the resume snapshot",
}


@dataclass
class PlanResult:
    """What a dry run found: counts by resource and a sample of the targets."""

    selected: Counter[ResourceKind] = field(default_factory=Counter)
    covered: Counter[ResourceKind] = field(default_factory=Counter)
    samples: dict[ResourceKind, list[Target]] = field(default_factory=dict)
    default_service: str | None = None  # when asked for: the account's default Service SID
    # A job of several Services: (selected, covered) of its v1 targets in each Service.
    by_service: dict[str, Counter[str]] = field(default_factory=dict)
    holds: HoldList | None = None  # the job's legal holds: what each kept is in ``holds.kept``


async def plan_targets(
    plan: JobPlan,
    config: Config,
    *,
    clock: Clock,
    sample: int = 5,
    sink: Callable[[Sequence[Target]], None] | None = None,
    ask_default_service: bool = False,
) -> PlanResult:
    """List what the job selects without deleting anything (GET requests only); ``sink`` gets
    every selected target (covered ones included), a page at a time. With
    ``ask_default_service``, also ask which Service is the account's default, for the plan to
    name it (a job with no ``service:`` lists only that one).

    Discovery and admission are the run's (:mod:`runner.engine.admission`), with no workers and
    no log: a plan takes every conversation it selects as deleted, and applies no brake."""
    result = PlanResult()
    result.holds = hold_list(plan, config)
    admission = Admission(shard=plan.shard, planning=True, holds=result.holds)
    result.selected, result.covered = admission.admitted, admission.covered
    async with build_client(plan, config) as client:
        requester = build_requester(client, plan, random.Random(), clock)
        discovery = Discovery(
            requester,
            plan.service,
            services=plan.services,
            fanout=plan.fanout,
            skip_conversation=admission.skips_children_of,
            on_attributes=None if result.holds is None else result.holds.note_attributes,
        )

        async def emit(targets: Sequence[Target]) -> None:
            chosen: list[Target] = []
            for target in targets:
                verdict = admission.admit(target)
                if target.service is not None and verdict in (Verdict.ADMITTED, Verdict.COVERED):
                    counts = result.by_service.setdefault(target.service, Counter())
                    counts["selected" if verdict is Verdict.ADMITTED else "covered"] += 1
                if verdict is Verdict.COVERED:
                    chosen.append(target)
                elif verdict is Verdict.ADMITTED:
                    chosen.append(target)
                    shown = result.samples.setdefault(target.kind, [])
                    if len(shown) < sample:
                        shown.append(target)
            if sink is not None and chosen:
                sink(chosen)

        async def discover(_index: int, source: Source) -> None:
            await discovery.run(source, emit)

        # One source at a time: a plan file lists its targets in the order of the spec's.
        await in_phases(plan.sources, discover, admission.settled, together=False)
        if ask_default_service:
            result.default_service = await _default_service(requester)
    for service in discovery.services_found or ():
        result.by_service.setdefault(service, Counter())  # a Service with nothing selected: 0
    return result


async def _default_service(requester: Requester) -> str | None:
    """The account's default Conversations Service (``GET /v1/Configuration``), or None when
    the server does not say: it is only shown, so it fails nothing."""
    try:
        reply = await requester.send("GET", Product.CONVERSATIONS, "/v1/Configuration")
    except RemoteError:
        return None
    sid = reply.body.get("default_chat_service_sid") if isinstance(reply.body, dict) else None
    # A reply is not trusted: only a Service SID is shown.
    return sid if isinstance(sid, str) and ID_PATTERNS["service"].matches(sid) else None


def start_header(
    plan: JobPlan,
    run_id: str,
    config_path: Path | None,
    spec_path: Path,
    log_path: Path,
    plan_file: PlanFile | None = None,
    *,
    hosts: dict[str, str] | None = None,
    account: str | None = None,
) -> Header:
    """The header of a new run's log; paths are stored relative to the log's directory, so a
    checkpoint directory copied to another machine with the spec beside it still resumes.
    ``hosts`` (product → API origin) lets a resume refuse other hosts than the run's;
    ``account`` (the Account SID) is for the report."""

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
        account=account,
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
    clock: Clock,
    directory: Path | None = None,
    options: RunOptions = NO_OPTIONS,
    plan_file: PlanFile | None = None,
) -> RunResult:
    """Start a new run of ``plan`` with a new checkpoint log (``checkpoint``, or a new file
    named after the job, its shard and the run in ``directory``)."""
    run_id = new_run_id(datetime.now(UTC))
    log_path = checkpoint or (directory or config.checkpoint_dir) / log_name(
        plan.name, plan.shard, run_id
    )
    header = start_header(
        plan,
        run_id,
        config_path,
        spec_path,
        log_path,
        plan_file,
        hosts=api_hosts(config),
        account=config.credentials.account_sid,
    )
    return await execute(
        plan, config, log_path, header, None, display, clock=clock, options=options
    )
