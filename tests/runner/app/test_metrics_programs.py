"""bulkops' metrics read by the real Prometheus programs: node_exporter's textfile collector
and the Pushgateway (Debian's prometheus-node-exporter and prometheus-pushgateway, which
.ci/run installs). Each test skips, saying why, on a machine without the program."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from runner.app.metrics import LAST_SUCCESS, RunFigures, RunLabels
from runner.app.metrics_push import push, push_periodically
from runner.clock import FakeClock
from runner.errors import ExitCode
from runner.kinds.registry import by_name
from runner.plan.shard import Shard
from tests.runner.app.test_metrics import figures, samples, value
from tests.runner.app.test_unattended import csv_rows
from tests.runner.conftest import checkpoints, point_at, run_cli
from tests.runner.test_run_faults import report_rows

# The v1 conversations of the tiny dataset's default Service: a run of well under a second.
TINY_JOB = """version: 1
name: {name}
targets:
  - kind: conversations
    where: {{all: true}}
limits: {{per_service_rate: 1000}}
"""
# The ready bound is pytest-timeout's: a program that never listens fails the test there.
pytestmark = pytest.mark.timeout(30)


def program(*names: str) -> str:
    """The first of ``names`` on PATH (Debian's name first, then upstream's), or skip."""
    for name in names:
        found = shutil.which(name)
        if found is not None:
            return found
    pytest.skip(f"{names[0]} is not installed (`apt-get install {names[0]}`; .ci/run installs it)")


def free_port() -> int:
    """A loopback port free a moment ago: these programs cannot listen on port 0."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def serving(argv: list[str], port: int, workdir: Path) -> AsyncIterator[str]:
    """Run ``argv`` until the block ends; yields its base URL once its port accepts."""
    log = workdir / f"{Path(argv[0]).name}.log"
    with log.open("wb") as out:
        process = await anyio.open_process(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        while True:
            if process.returncode is not None:
                pytest.fail(f"{argv[0]} exited {process.returncode}: {log.read_text()}")
            try:
                stream = await anyio.connect_tcp("127.0.0.1", port)
            except OSError:
                await anyio.sleep(0.02)  # not listening yet; pytest-timeout bounds the wait
                continue
            await stream.aclose()
            break
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        await process.wait()


@asynccontextmanager
async def pushgateway(workdir: Path) -> AsyncIterator[str]:
    """A Pushgateway on a free loopback port, keeping nothing on disk."""
    binary = program("prometheus-pushgateway", "pushgateway")
    port = free_port()
    argv = [binary, f"--web.listen-address=127.0.0.1:{port}", "--persistence.file="]
    async with serving(argv, port, workdir) as url:
        yield url


async def scrape(url: str) -> str:
    """The /metrics page at ``url``."""
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as resp:
        assert resp.status == 200
        return await resp.text()


def job_spec(workdir: Path, name: str) -> Path:
    """TINY_JOB named ``name``, written in ``workdir``."""
    spec = workdir / f"{name}.yaml"
    spec.write_text(TINY_JOB.format(name=name))
    return spec


async def test_node_exporter_reads_the_textfile_bulkops_writes(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """node_exporter's textfile collector, pointed at the directory of --metrics-textfile,
    serves bulkops' series (only the selected kind's) and reports the file read cleanly."""
    binary = program("prometheus-node-exporter", "node_exporter")
    textfiles = workdir / "textfile"
    port = free_port()
    argv = [
        binary,
        f"--web.listen-address=127.0.0.1:{port}",
        "--collector.disable-defaults",
        "--collector.textfile",
        f"--collector.textfile.directory={textfiles}",
        "--web.disable-exporter-metrics",
    ]
    async with start_emulator(preset="tiny") as emu:
        point_at(monkeypatch, emu.url)
        spec = job_spec(workdir, "tiny-purge")
        code = await run_cli("run", spec, "--metrics-textfile", textfiles / "bulkops.prom")
    assert code == ExitCode.OK
    async with serving(argv, port, workdir) as url:
        text = await scrape(url)

    assert value(text, "node_textfile_scrape_error") == 0
    job = {"bulkops_job": "tiny-purge"}
    deleted = len(report_rows(workdir))
    assert value(text, "bulkops_targets", kind="conversation_v1", outcome="deleted", **job) == (
        deleted
    )
    assert deleted > 0
    assert value(text, "bulkops_requests_total", method="DELETE", **job) == deleted
    assert value(text, "bulkops_exit_code", **job) == 0
    assert value(text, LAST_SUCCESS, **job) > 0
    kinds = {s.labels["kind"] for s in samples(text) if s.name == "bulkops_targets"}
    assert kinds == {"conversation_v1"}


async def test_a_run_pushes_its_series_to_a_real_pushgateway(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run --metrics-push` leaves each run's final figures on the Pushgateway, grouped by job
    and shard: the gateway's /metrics shows both shards' series with the grouping labels."""
    async with pushgateway(workdir) as gateway:
        async with start_emulator(preset="tiny") as emu:
            point_at(monkeypatch, emu.url)
            spec = job_spec(workdir, "tiny-purge")
            for shard in ("0/2", "1/2"):
                flags = ("--metrics-push", gateway, "--shard", shard, "--log-format", "json")
                assert await run_cli("run", spec, *flags) == ExitCode.OK
        text = await scrape(gateway)

    deleted = 0.0
    for shard in ("0", "1"):
        group = {"job": "tiny-purge", "shard": shard, "bulkops_job": "tiny-purge", "shards": "2"}
        deleted += value(
            text, "bulkops_targets", kind="conversation_v1", outcome="deleted", **group
        )
        assert value(text, "bulkops_exit_code", **group) == 0
        assert value(text, LAST_SUCCESS, **group) > 0
        assert value(text, "push_time_seconds", job="tiny-purge", shard=shard) > 0
        assert value(text, "push_failure_time_seconds", job="tiny-purge", shard=shard) == 0
    rows = [row for log in checkpoints(workdir) for row in csv_rows(log)]
    assert deleted == len(rows) > 0


async def test_a_failed_push_keeps_the_last_success_on_the_gateway(workdir: Path) -> None:
    """A run that did not exit 0 pushes no last-success time, and the gateway keeps the one
    pushed before (the push adds, it does not replace the group): the staleness alert goes on
    measuring from the last success. Shards and jobs have groups of their own."""
    night = RunLabels("nightly", Shard(0, 2), (by_name("message"),))
    other_shard = RunLabels("nightly", Shard(1, 2), (by_name("message"),))
    async with pushgateway(workdir) as gateway:
        assert await push(gateway, figures(exit_code=0, last_success=1000.0), night)
        assert await push(gateway, figures(exit_code=0, last_success=2000.0), other_shard)
        assert await push(gateway, figures(exit_code=1, retries=9), night)
        text = await scrape(gateway)

    first = {"job": "nightly", "shard": "0"}
    assert value(text, LAST_SUCCESS, **first) == 1000.0
    assert value(text, "bulkops_exit_code", **first) == 1
    assert value(text, "bulkops_retries_total", **first) == 9
    assert value(text, LAST_SUCCESS, job="nightly", shard="1") == 2000.0


class WatchedClock(FakeClock):
    """A FakeClock that says when a task has gone to sleep on it (the pusher, its push done)."""

    def __init__(self) -> None:
        super().__init__()
        self.slept = anyio.Event()

    async def sleep(self, seconds: float) -> None:
        self.slept.set()
        await super().sleep(seconds)


async def test_pushes_go_on_every_interval_of_the_clock_with_fresh_figures(
    workdir: Path,
) -> None:
    """The first push goes at once, the next when the (injected) clock has moved on by the
    interval and not before, each with what the source says at that moment."""
    clock = WatchedClock()
    calls = 0

    def source() -> RunFigures:
        nonlocal calls
        calls += 1
        return figures(retries=calls)

    labels = RunLabels("live")
    async with pushgateway(workdir) as gateway, anyio.create_task_group() as tg:
        tg.start_soon(
            partial(push_periodically, gateway, source, labels, interval=30.0, clock=clock)
        )
        await clock.slept.wait()  # the first push is done
        assert value(await scrape(gateway), "bulkops_retries_total", job="live") == 1
        clock.slept = anyio.Event()

        clock.advance(29.0)
        await anyio.wait_all_tasks_blocked()
        assert calls == 1 and clock.sleepers == 1

        clock.advance(1.0)
        await clock.slept.wait()  # the second push is done
        assert calls == 2
        assert value(await scrape(gateway), "bulkops_retries_total", job="live") == 2
        tg.cancel_scope.cancel()
