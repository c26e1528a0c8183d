"""Prometheus metrics of a run, for schedulers: a textfile for node_exporter, or a /metrics page.

Everything starts from a :class:`RunFigures` snapshot — taken from a finished run's checkpoint
(:func:`figures_from_replay`) or from a live run's counters (:func:`figures_from_progress`) —
which :func:`metric_families` turns into metric families. A registry (:func:`build_registry`)
asks a callable for fresh figures at every scrape, so one registry serves a whole run.

Labels are the job name (``bulkops_job``), the shard and closed sets of words (kind, outcome,
method): never a target id, a conversation SID or anything else that names data, so the metrics
carry no PII and their cardinality stays fixed.

The HTTP endpoint is an aiohttp app started inside the run's task group (:func:`serve_metrics`)
rather than prometheus_client's ``start_http_server``, whose daemon thread no task group owns;
it listens on 127.0.0.1 unless told otherwise, because the page shows job names and volumes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import structlog
from aiohttp import web
from anyio.abc import TaskStatus
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from runner.clock import MONOTONIC, Clock
from runner.errors import ExitCode, UntrustedFile
from runner.files import create_new, read_regular_bounded
from runner.kinds.base import ResourceKind
from runner.kinds.registry import KINDS
from runner.log.records import State
from runner.log.replay import Replay
from runner.plan.shard import Shard
from runner.report.completion import OUTCOMES, outcome_name, summarize
from runner.values import Progress, Tally

__all__ = [
    "CONTENT_TYPE",
    "LAST_SUCCESS",
    "RunFigures",
    "RunLabels",
    "build_registry",
    "exit_code_help",
    "figures_from_progress",
    "figures_from_replay",
    "metric_families",
    "previous_success",
    "render",
    "serve_metrics",
    "write_periodically",
    "write_textfile",
]

log = structlog.get_logger("bulkops.metrics")

LAST_SUCCESS = "bulkops_last_success_timestamp_seconds"
# The classic text format, which every Prometheus reads; prometheus_client's own server answers
# with it too when the scraper asks for nothing newer. All names here are legacy-valid, so
# generate_latest's output is the same in either text version.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class RunLabels:
    """What tells one run's series from another's: the job and, when sharded, the shard; and
    the kinds the job selects, which alone get ``bulkops_targets`` series."""

    job: str
    shard: Shard | None = None
    kinds: tuple[ResourceKind, ...] = ()

    def names(self) -> list[str]:
        """Label names, in the order of :meth:`values`."""
        # Not "job": Prometheus gives every scraped series the scrape config's own job label,
        # and a clashing one from a textfile would be renamed exported_job.
        base = ["bulkops_job"]
        return base if self.shard is None else [*base, "shard", "shards"]

    def values(self) -> list[str]:
        """Label values, in the order of :meth:`names`."""
        if self.shard is None:
            return [self.job]
        return [self.job, str(self.shard.index), str(self.shard.count)]


@dataclass(frozen=True, slots=True)
class RunFigures:
    """A snapshot of one run: everything the metrics say, and nothing that names a target."""

    targets: Mapping[tuple[ResourceKind, str], int]  # (resource, report outcome) -> count
    requests: Mapping[str, int] = field(default_factory=dict)  # HTTP method -> requests sent
    retries: int = 0
    throttled: int = 0  # 429 answers
    operations_pending: int = 0
    duration_seconds: float = 0.0
    exit_code: int | None = None  # None while the run is going
    last_success: float | None = None  # Unix time the run ended with exit 0


def figures_from_replay(
    replay: Replay,
    tally: Tally | None,
    *,
    duration_seconds: float,
    exit_code: int | None = None,
    now: float | None = None,
) -> RunFigures:
    """The figures of a run as its checkpoint tells them (the report's counts, exactly).

    ``exit_code`` defaults to the log's footer. ``now`` (Unix seconds, default the wall clock)
    becomes the last-success time when the run exited 0. ``tally`` is None when the traffic is
    unknown (a report made from a log alone).
    """
    code = replay.exit_code if exit_code is None else exit_code
    targets: dict[tuple[ResourceKind, str], int] = {}
    for resource, outcomes in summarize(replay).counts.items():
        for outcome, n in outcomes.items():
            targets[(resource, outcome)] = n
    pending_ops = sum(1 for rec in replay.open.values() if rec.state is State.ACCEPTED)
    return _figures(targets, tally, pending_ops, duration_seconds, code, now)


def figures_from_progress(
    progress: Progress[ResourceKind, State],
    tally: Tally,
    *,
    duration_seconds: float,
    exit_code: int | None = None,
    now: float | None = None,
) -> RunFigures:
    """The figures of a run while it goes, from the engine's live counters.

    On a resume these count what this process has done; a target already final in the log it
    resumes is not counted again (the final textfile, from the replay, counts the whole run).
    """
    targets: Counter[tuple[ResourceKind, str]] = Counter()
    for (resource, state), n in progress.outcomes.items():
        targets[(resource, outcome_name(state))] += n
    return _figures(
        dict(targets), tally, progress.pending_operations, duration_seconds, exit_code, now
    )


def _figures(
    targets: dict[tuple[ResourceKind, str], int],
    tally: Tally | None,
    operations_pending: int,
    duration_seconds: float,
    exit_code: int | None,
    now: float | None,
) -> RunFigures:
    # A timestamp, not an interval: the wall clock is the right one here.
    success = (time.time() if now is None else now) if exit_code == ExitCode.OK else None
    return RunFigures(
        targets=targets,
        requests=dict(tally.requests) if tally is not None else {},
        retries=tally.retries if tally is not None else 0,
        throttled=tally.throttled if tally is not None else 0,
        operations_pending=operations_pending,
        duration_seconds=duration_seconds,
        exit_code=exit_code,
        last_success=success,
    )


def exit_code_help() -> str:
    """The exit code's HELP text, listing every code :class:`ExitCode` has (so it cannot drift
    from them)."""
    codes = ", ".join(f"{c.value} {c.name.lower().replace('_', ' ')}" for c in ExitCode)
    return f"Exit code of the run that ended last (the README's table): {codes}."


def metric_families(figures: RunFigures, labels: RunLabels) -> list[Metric]:
    """The metric families of one run.

    Every outcome of every kind the job selects is present (zeros included), so a dashboard's
    series exist from the first scrape and ``rate()`` never sees a series appear mid-run. Kinds
    the job does not select have no series (a kind counted all the same is shown, never lost).
    """
    names, values = labels.names(), labels.values()
    targets = GaugeMetricFamily(
        "bulkops_targets",
        "Targets of the run by kind and outcome (the completion report's counts), for the "
        "kinds the job selects.",
        labels=[*names, "kind", "outcome"],
    )
    counted = {resource for resource, _ in figures.targets}
    for resource in (k for k in KINDS if k in labels.kinds or k in counted):
        for outcome in OUTCOMES:
            n = figures.targets.get((resource, outcome), 0)
            targets.add_metric([*values, resource.name, outcome], n)
    requests = CounterMetricFamily(
        "bulkops_requests",
        "HTTP requests sent to Twilio, by method (retries included).",
        labels=[*names, "method"],
    )
    for method in sorted(set(figures.requests) | {"GET", "DELETE"}):
        requests.add_metric([*values, method], figures.requests.get(method, 0))
    singles: list[tuple[type[CounterMetricFamily | GaugeMetricFamily], str, str, float]] = [
        (
            CounterMetricFamily,
            "bulkops_retries",
            # The requester sends a request again after a 429 as after a fault: both count.
            "Requests sent again after a 429 (also in bulkops_throttled_total) or a transient "
            "fault (5xx, timeout, reset, 20009).",
            figures.retries,
        ),
        (
            CounterMetricFamily,
            "bulkops_throttled",
            "429 answers; each paused its scope until Retry-After (the request sent again "
            "counts in bulkops_retries_total).",
            figures.throttled,
        ),
        (
            GaugeMetricFamily,
            "bulkops_operations_pending",
            "Asynchronous Operations accepted and not yet finished.",
            figures.operations_pending,
        ),
        (
            GaugeMetricFamily,
            "bulkops_run_duration_seconds",
            "Seconds since the run started (its whole length once it has ended).",
            figures.duration_seconds,
        ),
    ]
    if figures.exit_code is not None:
        singles.append(
            (
                GaugeMetricFamily,
                "bulkops_exit_code",
                exit_code_help(),
                figures.exit_code,
            )
        )
    if figures.last_success is not None:
        singles.append(
            (
                GaugeMetricFamily,
                LAST_SUCCESS,
                "Unix time the last run of this job that exited 0 ended.",
                figures.last_success,
            )
        )
    families: list[Metric] = [targets, requests]
    for kind, name, documentation, value in singles:
        family = kind(name, documentation, labels=names)
        family.add_metric(values, value)
        families.append(family)
    return families


class _RunCollector(Collector):
    """Asks for fresh figures at every collection (a scrape, or a textfile write)."""

    def __init__(self, source: Callable[[], RunFigures], labels: RunLabels) -> None:
        self._source = source
        self._labels = labels

    def collect(self) -> Iterable[Metric]:
        return metric_families(self._source(), self._labels)


def build_registry(source: Callable[[], RunFigures], labels: RunLabels) -> CollectorRegistry:
    """A registry of its own (never prometheus_client's global one, which would also export
    this process's Python and GC metrics) whose only collector reports ``source()``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_RunCollector(source, labels))
    return registry


def render(figures: RunFigures, labels: RunLabels) -> bytes:
    """The Prometheus text exposition of one snapshot."""
    return generate_latest(build_registry(lambda: figures, labels))


def previous_success(path: Path, labels: RunLabels) -> float | None:
    """The last-success time a textfile already holds for these labels, if it is readable."""
    try:
        # A regular file of a textfile's size only: a FIFO or device there would never end.
        text = read_regular_bounded(path, 1 << 20).decode("utf-8")
    except (OSError, UnicodeDecodeError, UntrustedFile):
        return None
    wanted = dict(zip(labels.names(), labels.values(), strict=True))
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == LAST_SUCCESS and sample.labels == wanted:
                    value = float(sample.value)
                    return value if math.isfinite(value) else None
    except ValueError:
        return None  # a damaged file: start afresh rather than fail the run over metrics
    return None


def write_textfile(
    path: Path, figures: RunFigures, labels: RunLabels, *, keep_last_success: bool = True
) -> None:
    """Write the node_exporter textfile atomically: aside, fsynced, then renamed over ``path``.

    The collector reads ``*.prom`` files only, and the file aside is a hidden ``….tmp`` in the
    same directory (so the rename stays on one filesystem and is atomic): a scrape sees the old
    file or the new one, never half of one. Mode 0644 whatever the umask, so a
    node_exporter running as another user can read it; the figures name no target.

    A run that did not exit 0 has no last-success time of its own; with ``keep_last_success``
    the one already in the file is carried over, so ``time() - bulkops_last_success…`` alerts
    keep working instead of the series vanishing after one failed night.
    """
    if figures.last_success is None and keep_last_success:
        earlier = previous_success(path, labels)
        if earlier is not None:
            figures = dataclasses.replace(figures, last_success=earlier)
    data = render(figures, labels)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Per process and thread, so the periodic writer and a final write never share a file.
    aside = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    # A new file, never through a link planted at the aside's (predictable) name.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(aside)
    try:
        fd = create_new(aside, mode=0o644)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(aside, path)
    except BaseException:
        aside.unlink(missing_ok=True)
        raise


async def write_periodically(
    path: Path,
    source: Callable[[], RunFigures],
    labels: RunLabels,
    *,
    interval: float = 15.0,
    clock: Clock = MONOTONIC,
) -> None:
    """Until cancelled: write ``source()`` to the textfile at once, then every ``interval`` s.

    Start it in the run's task group; after the run, write the final figures with
    :func:`write_textfile` (a cancelled write here leaves the previous file whole). The write
    runs in a worker thread because of its fsync. A write that fails is logged and retried at
    the next tick: metrics must never stop a deletion run.
    """
    while True:
        figures = source()
        try:
            await anyio.to_thread.run_sync(write_textfile, path, figures, labels)
        except OSError as exc:
            log.warning("metrics_write_failed", path=str(path), error=exc.strerror)
        await clock.sleep(interval)


async def serve_metrics(
    registry: CollectorRegistry,
    port: int,
    *,
    host: str = "127.0.0.1",
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``GET /metrics`` from ``registry`` until cancelled; reports the bound port.

    ``await tg.start(serve_metrics, registry, 0)`` returns the port actually bound (0 picks a
    free one). Only 127.0.0.1 by default: pass ``host="0.0.0.0"`` for a scraper in another
    network namespace (e.g. a Kubernetes pod scraped by Prometheus).
    """

    async def metrics(request: web.Request) -> web.Response:
        body = generate_latest(registry)
        response = web.Response(body=body)
        # Set verbatim: aiohttp's content_type argument would not take the version parameter.
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    # Bind the socket here rather than in aiohttp, so the port actually bound (port 0 picks a
    # free one) can be read back from it.
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    runner = web.AppRunner(app, access_log=None)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        bound = int(sock.getsockname()[1])
        await runner.setup()
        await web.SockSite(runner, sock).start()
        log.info("metrics_serving", host=host, port=bound)
        task_status.started(bound)
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()
        sock.close()
