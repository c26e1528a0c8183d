"""Running unattended (issue #6): the overlap lock, resume-or-start, --max-duration, sharding,
metrics for schedulers and run ids on every log line — each through real processes or the real
CLI against the emulator."""

from __future__ import annotations

import csv
import json
import signal
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from runner.app.unattended import Action, LogSummary, decide
from runner.errors import ExitCode
from runner.log.records import Header
from tests.runner.app.test_interrupt import wait_for_deletions
from tests.runner.conftest import (
    checkpoints,
    deleted,
    point_at,
    run_cli,
    start_bulkops,
    successful_deletes,
)
from tests.runner.test_run_faults import SUPPORT_SERVICE, job, report_rows

SLOW = (
    f"service: {SUPPORT_SERVICE}\ntargets:\n  - {{kind: messages, where: {{conversations: all}}}}\n"
    "limits: {per_conversation_rate: 4}\n"
)
FAST = SLOW.replace("per_conversation_rate: 4", "per_conversation_rate: 30")


async def support_messages(emu: Any) -> set[tuple[str, str]]:
    """What SLOW and FAST select."""
    return {
        ("message", m["sid"])
        for m in await emu.resources("message")
        if m["service_sid"] == SUPPORT_SERVICE
    }


async def test_a_second_run_of_an_active_job_exits_5_at_once(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While one process runs a job, another run of it exits 5 at once and sends nothing; once
    the first is killed, its lock goes with it and the job can be resumed."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        expected = await support_messages(emu)
        spec = job(workdir, SLOW)
        first = await start_bulkops(["run", str(spec)], workdir)
        async with first:
            await wait_for_deletions(workdir, 3)
            # Frozen, the first run holds its lock and cannot finish while the second starts,
            # however long a busy machine takes to start it (it then raced the first to the end).
            first.send_signal(signal.SIGSTOP)
            second = await start_bulkops(["run", str(spec), "--resume-or-start"], workdir)
            async with second:
                with anyio.fail_after(15):
                    assert await second.wait() == ExitCode.LOCKED
            assert "locked:" in (workdir / "stderr.log").read_text()
            first.send_signal(signal.SIGKILL)
            await first.wait()

        # The stale lock is taken.
        assert await run_cli("run", spec, "--resume-or-start") == ExitCode.OK
        ledger = await emu.ledger()
        assert deleted(ledger) == expected
        assert max(successful_deletes(ledger).values()) == 1
        assert len(checkpoints(workdir)) == 1, "the killed run was resumed, not started anew"


async def test_three_cron_invocations_with_a_crash_between(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cron fires `run --resume-or-start --min-interval 1h` three times: the first is killed
    part-way, the second resumes and finishes it, the third finds it finished within the hour
    and does nothing. Everything selected is deleted exactly once."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        expected = await support_messages(emu)
        spec = job(workdir, SLOW)
        cron = ["run", str(spec), "--resume-or-start", "--min-interval", "1h"]

        first = await start_bulkops(cron, workdir)
        async with first:
            await wait_for_deletions(workdir, 5)
            first.send_signal(signal.SIGKILL)
            await first.wait()
        partial = deleted(await emu.ledger())
        assert partial and partial < expected

        assert await run_cli(*cron) == ExitCode.OK
        ledger = await emu.ledger()
        assert deleted(ledger) == expected
        assert max(successful_deletes(ledger).values()) == 1
        (log,) = checkpoints(workdir)

        requests = len(ledger["requests"])
        assert await run_cli(*cron) == ExitCode.OK
        assert len((await emu.ledger())["requests"]) == requests, "the third did nothing"
        assert checkpoints(workdir) == [log]
        rows = report_rows(workdir)
        # A delete the kill cut off before its line was written is re-sent and reads 404: gone
        # after request.
        assert {r["outcome"] for r in rows} <= {"deleted", "gone", "gone_after_request"}
        assert {("message", r["id"]) for r in rows} == expected


def summary(exit_code: int | None, hours_ago: float) -> LogSummary:
    """A log summary of a run started ``hours_ago`` that ended with ``exit_code``."""
    started = (datetime(2026, 11, 22, 12, tzinfo=UTC) - timedelta(hours=hours_ago)).isoformat()
    header = Header(
        run_id="r",
        job="job",
        fingerprint="fp",
        frozen_now=started,
        times={},
        spec_path="job.yaml",
        config_path=None,
        version="0",
        started=started,
    )
    return LogSummary(Path(f"{exit_code}-{hours_ago}.jsonl"), header, exit_code)


@pytest.mark.parametrize(
    ("exit_code", "hours_ago", "action"),
    [
        (None, 1, Action.RESUME),  # killed: no footer
        (130, 30, Action.RESUME),  # interrupted, however long ago
        (4, 1, Action.RESUME),  # credentials refused
        (6, 1, Action.RESUME),  # checkpoint unwritable
        (7, 1, Action.RESUME),  # --max-duration reached
        (3, 1, Action.BLOCKED),  # a safety brake: a person decides
        (0, 1, Action.SKIP),  # finished well within --min-interval
        (0, 30, Action.START),
        (1, 1, Action.START),  # finished with failures: a new run retries what is left
    ],
)
def test_resume_or_start_decides_from_the_newest_log(
    exit_code: int | None, hours_ago: float, action: Action
) -> None:
    """The decision for each way the newest run can have ended (--min-interval 20h)."""
    now = datetime(2026, 11, 22, 12, tzinfo=UTC)
    older = summary(None, 100)  # an unfinished older run never counts: a newer one replaced it
    decision = decide([older, summary(exit_code, hours_ago)], now, timedelta(hours=20))
    assert decision.action is action
    assert decide([], now, timedelta(hours=20)).action is Action.START


async def test_max_duration_stops_with_exit_7_and_resume_finishes(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run given 2 s stops taking work, exits 7 with a resumable log; resume finishes it."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        expected = await support_messages(emu)
        spec = job(workdir, SLOW)
        began = anyio.current_time()
        assert await run_cli("run", spec, "--max-duration", "2s") == ExitCode.OUT_OF_TIME
        assert anyio.current_time() - began < 2 + 6, "stopped within the grace period"
        partial = deleted(await emu.ledger())
        assert partial and partial < expected

        (log,) = checkpoints(workdir)
        assert await run_cli("resume", log) == ExitCode.OK
        ledger = await emu.ledger()
        assert deleted(ledger) == expected
        assert max(successful_deletes(ledger).values()) == 1


async def test_four_shards_delete_the_selection_exactly_once_within_the_account_cap(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four shard processes (the index from JOB_COMPLETION_INDEX, as in an Indexed Job) share
    one job: their union deletes every selected target exactly once, each shard has its own
    checkpoint, and together they never exceed the account's in-flight cap (no 20429)."""
    async with start_emulator(account_concurrency=16) as emu:
        point_at(monkeypatch, emu.url)
        expected = await support_messages(emu)
        spec = job(workdir, FAST.replace("limits: {", "limits: {concurrency: 16, "))
        processes = []
        for index in range(4):
            monkeypatch.setenv("JOB_COMPLETION_INDEX", str(index))
            processes.append(await start_bulkops(["run", str(spec), "--shards", "4"], workdir))
        codes = []
        for process in processes:
            async with process:
                with anyio.fail_after(60):
                    codes.append(await process.wait())
        assert codes == [0, 0, 0, 0]

        ledger = await emu.ledger()
        assert deleted(ledger) == expected
        assert max(successful_deletes(ledger).values()) == 1
        assert not [r for r in ledger["requests"] if r["status"] == 429]
        logs = checkpoints(workdir)
        assert len(logs) == 4
        assert sorted(json.loads(p.read_text().splitlines()[0])["shard"] for p in logs) == [
            "0/4",
            "1/4",
            "2/4",
            "3/4",
        ]
        per_shard = [{r["id"] for r in csv_rows(p) if r["outcome"] == "deleted"} for p in logs]
        assert sum(map(len, per_shard)) == len(expected) and all(per_shard)


def csv_rows(log: Path) -> list[dict[str, str]]:
    """The completion report beside ``log``."""
    with log.with_suffix(".report.csv").open() as f:
        return list(csv.DictReader(f))


async def test_metrics_textfile_matches_the_report_and_logs_name_the_run(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--metrics-textfile leaves a Prometheus textfile whose counts are the report's, with the
    last success time; every JSON log line names the run and the job."""
    async with start_emulator(fault_500=0.05, seed=3) as emu:
        point_at(monkeypatch, emu.url)
        spec = job(workdir, FAST)
        metrics = workdir / "textfile" / "bulkops.prom"
        capsys.readouterr()
        assert (
            await run_cli(
                "run",
                spec,
                "--metrics-textfile",
                metrics,
                "--log-format",
                "json",
                "--log-level",
                "debug",
            )
            == 0
        )
        logged = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]

        families = {f.name: f for f in text_string_to_metric_families(metrics.read_text())}
        targets = Counter(
            {
                (s.labels["kind"], s.labels["outcome"]): s.value
                for s in families["bulkops_targets"].samples
            }
        )
        rows = report_rows(workdir)
        assert targets[("message", "deleted")] == len(rows) > 0
        assert sum(targets.values()) == len(rows)
        retries = families["bulkops_retries"].samples[0].value
        assert retries == sum(1 for r in (await emu.ledger())["requests"] if r["status"] >= 500)
        assert families["bulkops_last_success_timestamp_seconds"].samples[0].value > 0

        (log,) = checkpoints(workdir)
        run_id = json.loads(log.read_text().splitlines()[0])["run"]
        run_lines = [line for line in logged if line.get("event") != "config_warning"]
        assert {"target_finished", "run_finished"} <= {line["event"] for line in run_lines}
        assert all(line.get("run_id") == run_id and line.get("job") == "job" for line in run_lines)
        (finished,) = [line for line in run_lines if line["event"] == "run_finished"]
        assert finished["deleted"] == len(rows) and finished["retries"] == retries
