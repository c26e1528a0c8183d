"""Pushing a run's metrics to a Prometheus Pushgateway, for batch jobs nothing scrapes.

A run started by cron or a Kubernetes Job may be gone before a scraper comes by, so it pushes
its figures (the same families as the textfile, :func:`runner.app.metrics.metric_families`)
every ``interval`` seconds and once more at the end. The grouping key is the job and, when
sharded, the shard, so the shards of one job and the jobs of one gateway never overwrite each
other.

A push is a POST (prometheus_client's ``pushadd_to_gateway``): it replaces the families it
carries and keeps the others. A run that has not ended (or did not exit 0) carries no exit
code (or no last-success time), so the gateway keeps the last ended run's until this one
ends — and a staleness alert keeps working after a failed night, as with the textfile.

A push never holds a run up: it goes in a worker thread with a bounded timeout, and a gateway
that is slow, down or refusing is a warning in the log, never a failed run.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable
from functools import partial
from urllib.parse import urlsplit

import anyio
import structlog
from prometheus_client import pushadd_to_gateway

from runner.app.metrics import RunFigures, RunLabels, build_registry
from runner.clock import MONOTONIC, Clock

__all__ = ["PUSH_INTERVAL", "PUSH_TIMEOUT", "gateway_url", "push", "push_periodically"]

log = structlog.get_logger("bulkops.metrics")

PUSH_INTERVAL = 30.0  # seconds between pushes while the run goes
PUSH_TIMEOUT = 10.0  # seconds a push may take before the run stops waiting for it

# Pushes leave in the order they were made: a periodic push the run stopped waiting for must
# not land after the final one and overwrite it with older figures.
_IN_ORDER = threading.Lock()


def gateway_url(text: str) -> str:
    """``text`` as a Pushgateway base URL (``http[s]://host[:port][/path]``), or ValueError
    saying what a valid one looks like."""
    example = "like http://pushgateway:9091"
    try:
        parts = urlsplit(text)
        port = parts.port  # a port out of range or not a number raises here
    except ValueError:
        raise ValueError(f"{text!r} is not a Pushgateway URL {example}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{text!r} is not a Pushgateway URL {example}")
    if parts.username is not None or parts.password is not None:
        # They would be shown by `ps` and logged with the URL; bulkops sends no credentials.
        raise ValueError(f"the URL carries a user or password; give a URL without them, {example}")
    if parts.query or parts.fragment:
        raise ValueError(f"{text!r} has a query or fragment; give the base URL only, {example}")
    if port == 0:
        raise ValueError(f"{text!r} has port 0; give the Pushgateway's port, {example}")
    return text.rstrip("/")


def _grouping_key(labels: RunLabels) -> dict[str, str]:
    # The job is the gateway's own `job` label; the shard index completes the key, so each
    # shard has its group (its shard count is on every series already).
    return {} if labels.shard is None else {"shard": str(labels.shard.index)}


def _push_now(gateway: str, figures: RunFigures, labels: RunLabels, within: float) -> None:
    # The whole push, its wait behind an earlier one included, fits in `within`: a thread
    # the run stopped waiting for ends about when the wait did, and never holds the exit up.
    deadline = MONOTONIC.now() + within
    if not _IN_ORDER.acquire(timeout=within):
        raise TimeoutError("an earlier push is still going")
    try:
        left = deadline - MONOTONIC.now()
        if left <= 0:
            raise TimeoutError("an earlier push took all the time")
        pushadd_to_gateway(
            gateway,
            job=labels.job,
            registry=build_registry(lambda: figures, labels),
            grouping_key=_grouping_key(labels),
            timeout=left,
        )
    finally:
        _IN_ORDER.release()


async def push(
    gateway: str, figures: RunFigures, labels: RunLabels, *, within: float = PUSH_TIMEOUT
) -> bool:
    """Push one snapshot; True when the gateway took it.

    Waits ``within`` seconds at most: a push still going then is left to its thread, which
    gives up about then too, and logged as failed. Pushes go after any earlier one.
    """
    error: str | None = None
    with anyio.move_on_after(within) as waited:
        try:
            await anyio.to_thread.run_sync(
                partial(_push_now, gateway, figures, labels, within), abandon_on_cancel=True
            )
        # urllib's errors (refused, unreachable, timed out, an HTTP error status) are OSErrors;
        # a reply that is not HTTP at all is an HTTPException.
        except (OSError, http.client.HTTPException) as exc:
            error = f"{type(exc).__name__}: {exc}"
    if waited.cancelled_caught:
        error = f"no answer within {within:g} s"
    if error is not None:
        # gateway_url let no credentials into the URL: it can be logged as it is.
        log.warning("metrics_push_failed", gateway=gateway, error=error)
        return False
    return True


async def push_periodically(
    gateway: str,
    source: Callable[[], RunFigures],
    labels: RunLabels,
    *,
    interval: float = PUSH_INTERVAL,
    within: float = PUSH_TIMEOUT,
    clock: Clock = MONOTONIC,
) -> None:
    """Until cancelled: push ``source()`` at once, then every ``interval`` seconds (each push
    waited for ``within`` seconds at most).

    Start it in the run's task group; after the run, push the final figures with :func:`push`.
    A push that fails is logged and the next tick tries again.
    """
    while True:
        await push(gateway, source(), labels, within=within)
        await clock.sleep(interval)
