"""Prometheus metrics of a run: the textfile, its atomic write, and the /metrics endpoint."""

from __future__ import annotations

import csv
import os
import re
import stat
import threading
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from structlog.testing import capture_logs

from runner.app.metrics import (
    LAST_SUCCESS,
    RunFigures,
    RunLabels,
    build_registry,
    figures_from_progress,
    figures_from_replay,
    render,
    serve_metrics,
    write_periodically,
    write_textfile,
)
from runner.errors import ExitCode
from runner.kinds.base import ResourceKind
from runner.kinds.registry import KINDS, by_name
from runner.log.records import Header, State
from runner.log.replay import Replay, read_checkpoint
from runner.plan.shard import Shard
from runner.report.completion import OUTCOMES
from runner.values import Progress, Tally
from tests.runner.conftest import checkpoints, point_at, run_cli

REPO = Path(__file__).resolve().parents[3]
ALERT_RULES = REPO / "deploy" / "prometheus" / "bulkops-alerts.yaml"
SUPPORT_SERVICE = "IS40744b2de48602dc47560213196a8f46"
# v1 conversations, messages one by one, and v2 conversations half of whose Operations fail:
# several kinds, deleted and failed outcomes, and exit code 1.
MIXED_JOB = f"""version: 1
name: metrics-job
service: {SUPPORT_SERVICE}
targets:
  - kind: conversations
    where: {{state: closed, created_before: 180d}}
  - kind: messages
    where: {{conversations: all}}
  - kind: conversations
    api: v2
    where: {{all: true}}
limits: {{per_conversation_rate: 1000, per_service_rate: 1000}}
operations: {{poll_interval: 0.05}}
retry: {{base_delay: 0.05, max_delay: 0.5}}
"""
LABELS = RunLabels("metrics-job")
# Anything shaped like a Twilio SID or a v2/Memory id must never appear in a label.
ID_SHAPE = re.compile(r"^[A-Z]{2}[0-9a-f]{32}$|_[0-9a-z]{20,}")


def samples(text: str) -> list[Sample]:
    """Every sample of an exposition, parsed by prometheus_client's own parser."""
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(text: str, name: str, **labels: str) -> float:
    """The one sample called ``name`` whose labels include ``labels``."""
    (found,) = [s for s in samples(text) if s.name == name and labels.items() <= s.labels.items()]
    return float(found.value)


def figures(**changes: Any) -> RunFigures:
    """A small snapshot, with ``changes`` applied."""
    base: dict[str, Any] = {
        "targets": {(by_name("message"), "deleted"): 7, (by_name("message"), "failed"): 2},
        "requests": {"GET": 3, "DELETE": 9},
        "retries": 1,
        "throttled": 4,
        "operations_pending": 0,
        "duration_seconds": 12.5,
        "exit_code": None,
        "last_success": None,
    }
    return RunFigures(**{**base, **changes})


async def test_textfile_counts_equal_the_completion_report(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a real run, every kind/outcome gauge equals the completion report's row count."""
    async with start_emulator(operation_failure_rate=0.5, seed=3) as emu:
        point_at(monkeypatch, emu.url)
        spec = workdir / "job.yaml"
        spec.write_text(MIXED_JOB)
        code = await run_cli("run", spec)
    assert code == ExitCode.FAILURES
    (log,) = checkpoints(workdir)
    replay = read_checkpoint(log)
    tally = Tally(requests=Counter({"GET": 40, "DELETE": 30}), retries=2, throttled=5)

    out = workdir / "textfile" / "bulkops.prom"
    selected = tuple(by_name(k) for k in ("conversation_v1", "message", "conversation_v2"))
    labels = RunLabels("metrics-job", kinds=selected)
    write_textfile(out, figures_from_replay(replay, tally, duration_seconds=3.0), labels)

    text = out.read_text()
    with log.with_suffix(".report.csv").open() as f:
        report = Counter((row["kind"], row["outcome"]) for row in csv.DictReader(f))
    assert {o for _, o in report} >= {"deleted", "failed"}
    # The kinds the job selects, every outcome of each; no series for the others.
    kinds = {s.labels["kind"] for s in samples(text) if s.name == "bulkops_targets"}
    assert kinds == {k.name for k in selected}
    for resource in selected:
        for outcome in OUTCOMES:
            got = value(
                text,
                "bulkops_targets",
                bulkops_job="metrics-job",
                kind=resource.name,
                outcome=outcome,
            )
            assert got == report[(resource.name, outcome)], (resource, outcome)
    assert value(text, "bulkops_requests_total", method="GET") == 40
    assert value(text, "bulkops_requests_total", method="DELETE") == 30
    assert value(text, "bulkops_retries_total") == 2
    assert value(text, "bulkops_throttled_total") == 5
    assert value(text, "bulkops_operations_pending") == 0
    assert value(text, "bulkops_run_duration_seconds") == 3.0
    assert value(text, "bulkops_exit_code") == 1
    assert LAST_SUCCESS not in {s.name for s in samples(text)}  # the run exited 1
    for sample in samples(text):
        assert not any(ID_SHAPE.search(v) for v in sample.labels.values()), sample


def test_a_kind_not_selected_has_series_only_if_something_was_counted() -> None:
    """Every outcome of a selected kind is there from the start, zeros included; a kind the
    job does not select has none, unless a target of it was counted after all."""
    labels = RunLabels("j", kinds=(by_name("user"),))
    text = render(figures(), labels).decode()
    kinds = Counter(s.labels["kind"] for s in samples(text) if s.name == "bulkops_targets")
    assert kinds == {"user": len(OUTCOMES), "message": len(OUTCOMES)}  # figures() counts messages
    assert value(text, "bulkops_targets", kind="user", outcome="deleted") == 0
    assert len(KINDS) > 2  # the others have no series


def test_help_texts_say_what_is_counted() -> None:
    """The exit code's HELP lists every exit code bulkops has; retries say they include the
    re-sends after a 429, which the requester counts as retries too."""
    text = render(figures(exit_code=7), LABELS).decode()
    helps = {family.name: family.documentation for family in text_string_to_metric_families(text)}
    listed = re.findall(r"(\d+) [a-z ]+", helps["bulkops_exit_code"].split(":", 1)[1])
    assert [int(code) for code in listed] == [code.value for code in ExitCode]
    for word in ("bad input", "locked", "checkpoint", "out of time", "internal", "paused"):
        assert word in helps["bulkops_exit_code"]
    assert "429" in helps["bulkops_retries"] and "fault" in helps["bulkops_retries"]
    assert "bulkops_retries_total" in helps["bulkops_throttled"]


async def test_retries_count_the_resends_after_429s_as_their_help_says(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With 429s and no fault, every retry is a re-send after a 429: the figures the HELP
    explains, measured on a real run."""
    rate = {"conversations": (20.0, 1)}  # a bucket of one: the DELETE after the list page waits
    async with start_emulator(preset="tiny", product_rate=rate, retry_after="absent") as emu:
        point_at(monkeypatch, emu.url)
        spec = workdir / "job.yaml"
        spec.write_text(
            "version: 1\nname: throttled\ntargets:\n  - {kind: conversations, where: {all: true}}\n"
            "retry: {base_delay: 0.01, max_delay: 0.05}\n"
        )
        out = workdir / "m.prom"
        assert await run_cli("run", spec, "--metrics-textfile", out) == ExitCode.OK
        throttled = sum(1 for r in (await emu.ledger())["requests"] if r["status"] == 429)
    text = out.read_text()
    assert value(text, "bulkops_throttled_total") == throttled > 0
    assert value(text, "bulkops_retries_total") == throttled


def test_the_staleness_alert_fires_for_a_job_that_never_succeeded() -> None:
    """bulkops writes no last-success series until a run exits 0, so the shipped stale rule
    must also fire on its absence: ``time() - S > limit or absent(S)``, the same S twice. The
    README shows that rule, and every rule reads only series bulkops exports."""
    groups = yaml.safe_load(ALERT_RULES.read_text())["groups"]
    rules = {rule["alert"]: rule for group in groups for rule in group["rules"]}
    expr = " ".join(rules["BulkopsRetentionStale"]["expr"].split())
    series = rf"{LAST_SUCCESS}\{{bulkops_job=\"[A-Za-z0-9._-]+\"\}}"
    shape = rf"time\(\) - (?P<s>{series}) > [0-9 *]+ or absent\((?P=s)\)"
    assert re.fullmatch(shape, expr), expr
    assert expr in " ".join((REPO / "README.md").read_text().split())

    exported = {
        family.name
        for family in text_string_to_metric_families(
            render(figures(exit_code=0, last_success=1.0), LABELS).decode()
        )
    }
    for rule in rules.values():
        for name in re.findall(r"\bbulkops_[a-z_]+\b(?!=)", rule["expr"]):
            assert name.removesuffix("_total") in exported, (rule["alert"], name)


def test_last_success_only_when_the_run_exited_zero() -> None:
    """A run that exits 0 stamps its end; any other exit code stamps nothing."""
    header = Header(
        run_id="r1",
        job="j",
        fingerprint="fp",
        frozen_now="2026-01-01T00:00:00+00:00",
        times={},
        spec_path="j.yaml",
        config_path=None,
        version="0.1.0",
        started="2026-01-01T00:00:00+00:00",
    )
    replay = Replay(header, Path("unused.jsonl"), exit_code=0)
    ok = figures_from_replay(replay, None, duration_seconds=1.0, now=1_700_000_000.0)
    assert ok.last_success == 1_700_000_000.0
    assert value(render(ok, LABELS).decode(), LAST_SUCCESS) == 1_700_000_000.0
    for code in (1, 3, 4, 130):
        failed = figures_from_replay(replay, None, duration_seconds=1.0, exit_code=code)
        assert failed.last_success is None
        assert LAST_SUCCESS not in render(failed, LABELS).decode()


def test_failed_run_keeps_the_previous_success_time(tmp_path: Path) -> None:
    """A failed night rewrites the file but carries the earlier success time over."""
    out = tmp_path / "bulkops.prom"
    write_textfile(out, figures(exit_code=0, last_success=1000.0), LABELS)

    write_textfile(out, figures(exit_code=1), LABELS)
    assert value(out.read_text(), LAST_SUCCESS) == 1000.0
    assert value(out.read_text(), "bulkops_exit_code") == 1

    write_textfile(out, figures(exit_code=1), LABELS, keep_last_success=False)
    assert LAST_SUCCESS not in out.read_text()


def test_previous_success_of_another_shard_is_not_borrowed(tmp_path: Path) -> None:
    """The carried-over time must belong to the same job and shard."""
    out = tmp_path / "bulkops.prom"
    write_textfile(out, figures(exit_code=0, last_success=1000.0), RunLabels("a", Shard(0, 2)))
    write_textfile(out, figures(exit_code=1), RunLabels("a", Shard(1, 2)))
    assert LAST_SUCCESS not in out.read_text()


def test_shard_labels_and_tally_figures() -> None:
    """A sharded run's series carry job, shard and shard count; the Tally maps one to one."""
    tally = Tally(requests=Counter({"GET": 5, "DELETE": 11, "POST": 1}), retries=3, throttled=2)
    progress: Progress[ResourceKind, State] = Progress()
    progress.outcomes[(by_name("conversation_v2"), State.ACCEPTED)] = 4
    progress.outcomes[(by_name("conversation_v2"), State.REQUESTED)] = 1
    progress.outcomes[(by_name("conversation_v2"), State.DELETED)] = 6
    progress.pending_operations = 4
    live = figures_from_progress(progress, tally, duration_seconds=9.0)

    text = render(live, RunLabels("nightly", Shard(2, 4))).decode()

    shard = {"bulkops_job": "nightly", "shard": "2", "shards": "4"}
    assert value(text, "bulkops_targets", kind="conversation_v2", outcome="pending", **shard) == 5
    assert value(text, "bulkops_targets", kind="conversation_v2", outcome="deleted") == 6
    assert value(text, "bulkops_requests_total", method="POST", **shard) == 1
    assert value(text, "bulkops_retries_total", **shard) == 3
    assert value(text, "bulkops_throttled_total", **shard) == 2
    assert value(text, "bulkops_operations_pending", **shard) == 4
    assert "bulkops_exit_code" not in text  # still running
    assert all(s.labels.items() >= shard.items() for s in samples(text))


def test_textfile_is_replaced_whole_never_rewritten_in_place(tmp_path: Path) -> None:
    """A write renames a new file over the old one: a reader that has the old file open keeps
    reading the old version whole, and concurrent readers only ever see whole versions."""
    out = tmp_path / "bulkops.prom"
    write_textfile(out, figures(retries=0), LABELS)
    old_version = out.read_bytes()
    with out.open("rb") as held:  # keeps the old inode alive, so its number cannot be reused
        write_textfile(out, figures(retries=1), LABELS)
        assert os.fstat(held.fileno()).st_ino != out.stat().st_ino
        assert held.read() == old_version
    versions = {old_version, out.read_bytes()}
    seen: list[bytes] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.append(out.read_bytes())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for n in range(2, 200):
            write_textfile(out, figures(retries=n), LABELS)
            versions.add(out.read_bytes())
    finally:
        stop.set()
        reader.join()

    assert seen and set(seen) <= versions  # every read was one whole version
    assert [p.name for p in tmp_path.iterdir()] == ["bulkops.prom"]  # nothing left aside


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    """When the rename fails, the file aside is removed and nothing else changes."""
    out = tmp_path / "bulkops.prom"
    out.mkdir()  # renaming a file over a directory fails
    with pytest.raises(IsADirectoryError):
        write_textfile(out, figures(), LABELS)
    assert [p.name for p in tmp_path.iterdir()] == ["bulkops.prom"]
    assert out.is_dir()


def test_textfile_is_world_readable_whatever_the_umask(tmp_path: Path) -> None:
    """A node_exporter running as another user can read the file even under umask 077."""
    old = os.umask(0o077)
    try:
        write_textfile(tmp_path / "m.prom", figures(), LABELS)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "m.prom").stat().st_mode) == 0o644


async def test_periodic_writer_writes_fresh_figures_and_survives_errors(tmp_path: Path) -> None:
    """The writer asks for figures at every tick, and a failing write is logged, not raised."""
    calls = 0
    enough = anyio.Event()

    def source() -> RunFigures:
        nonlocal calls
        calls += 1
        if calls >= 6:  # three ticks of each writer: the good one has written at least twice
            enough.set()
        return figures(retries=calls)

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    out = tmp_path / "metrics" / "bulkops.prom"
    with anyio.fail_after(10), capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            every_tick = partial(write_periodically, interval=0.01)
            tg.start_soon(every_tick, blocker / "x.prom", source, LABELS)
            tg.start_soon(every_tick, out, source, LABELS)
            await enough.wait()
            tg.cancel_scope.cancel()

    assert value(out.read_text(), "bulkops_retries_total") >= 2
    failures = [e for e in logs if e["event"] == "metrics_write_failed"]
    assert len(failures) >= 2  # it kept trying
    assert not list(tmp_path.glob("metrics/.*.tmp"))


async def test_http_endpoint_serves_current_figures() -> None:
    """/metrics on a free loopback port answers each scrape with the figures of that moment."""
    current = {"figures": figures(retries=1)}
    registry = build_registry(lambda: current["figures"], RunLabels("live", Shard(0, 1)))
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg, aiohttp.ClientSession() as session:
            port = await tg.start(serve_metrics, registry, 0)
            assert port > 0
            url = f"http://127.0.0.1:{port}"
            async with session.get(f"{url}/metrics") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
                first = await resp.text()
            current["figures"] = figures(retries=5, exit_code=0, last_success=42.0)
            async with session.get(f"{url}/metrics") as resp:
                second = await resp.text()
            async with session.get(f"{url}/other") as resp:
                assert resp.status == 404
            tg.cancel_scope.cancel()

    assert value(first, "bulkops_retries_total", bulkops_job="live", shard="0", shards="1") == 1
    assert value(second, "bulkops_retries_total") == 5
    assert value(second, LAST_SUCCESS) == 42.0
    # Only this run's collector: the global registry's process and GC metrics are not served.
    assert {s.name.split("_")[0] for s in samples(second)} == {"bulkops"}
