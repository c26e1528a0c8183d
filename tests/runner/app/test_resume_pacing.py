"""A resumed run starts at the pace its log recorded (issue 14 §6), judged by the ledger."""

from __future__ import annotations

import random
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from runner.app.pacing import pace_age, seed_from_log
from runner.clock import FakeClock
from runner.errors import ExitCode
from runner.kinds.base import Product
from runner.log.records import Pace
from runner.log.replay import read_checkpoint
from runner.wire.limits import Limits
from tests.runner.app.test_interrupt import wait_for_deletions
from tests.runner.conftest import (
    checkpoints,
    deleted,
    point_at,
    start_bulkops,
    successful_deletes,
)

LIMIT = 40.0  # under the cold start's 100/s: a pace learned from scratch meets it with 429s
FIRST = 120  # deletions before the first process is stopped (SIGTERM)
NOON = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)

JOB = """version: 1
name: paced
service: {service}
targets:
  - {{kind: messages, where: {{conversations: all}}}}
retry: {{base_delay: 0.05, max_delay: 0.5}}
"""


async def _stopped_and_resumed(
    start_emulator: Any, directory: Path, monkeypatch: pytest.MonkeyPatch, half_life: float
) -> tuple[list[float], int, Path]:
    """Run the job (a process of its own) until FIRST deletions, stop it, and resume it under
    ``half_life``; when the resume's 429s came (seconds after its first request), how many
    requests it sent, and the log."""
    directory.mkdir()
    monkeypatch.chdir(directory)
    settings = {"product_rate": {"conversations": (LIMIT, 4)}}
    async with start_emulator(
        "scale", dataset_args={"conversations": 24, "messages_per_conversation": 10}, **settings
    ) as emu:
        point_at(monkeypatch, emu.url)
        messages = await emu.resources("message")
        spec = directory / "job.yaml"
        spec.write_text(JOB.format(service=messages[0]["service_sid"]))
        config = directory / "config.yaml"
        config.write_text(f"pacing: {{resume_half_life_s: {half_life:g}}}\n")

        process = await start_bulkops(["run", str(spec), "--config", str(config)], directory)
        async with process:
            await wait_for_deletions(emu, FIRST, process)
            process.send_signal(signal.SIGTERM)  # half way: stopped as by Ctrl-C
            assert await process.wait() == ExitCode.INTERRUPTED
        (log,) = checkpoints(directory)
        seen = len((await emu.ledger())["requests"])
        # A process of its own too: a resume in a thread of this one shares the emulator's
        # interpreter lock, and the emulator, held off meanwhile, answers the requests that
        # queued up as one burst (the server's bucket runs on the time it reads them).
        argv = ["resume", str(log), "--config", str(config)]
        async with await start_bulkops(argv, directory) as resume:
            assert await resume.wait() == ExitCode.OK

        ledger = await emu.ledger()
        assert deleted(ledger) == {("message", m["sid"]) for m in messages}
        assert max(successful_deletes(ledger).values()) == 1
        resumed = ledger["requests"][seen:]
        start = resumed[0]["time"]
        return [r["time"] - start for r in resumed if r["status"] == 429], len(resumed), log


async def test_a_resume_starts_at_the_pace_the_run_learned(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that learned a 40/s limit records it; its resume sends at that pace from its
    first request and meets (almost) no 429, where the same resume told to trust no recorded
    pace (resume_half_life_s: 0) learns it again from 100/s, into 429s."""
    seeded, requests, log = await _stopped_and_resumed(
        start_emulator, workdir / "seeded", monkeypatch, 300.0
    )
    cold, cold_requests, _ = await _stopped_and_resumed(
        start_emulator, workdir / "cold", monkeypatch, 0.0
    )

    pace = read_checkpoint(log).pace
    assert pace is not None
    assert 0.7 * LIMIT <= pace.rates[Product.CONVERSATIONS] <= 1.2 * LIMIT
    assert requests >= 240 - FIRST and cold_requests >= 240 - FIRST
    # A cold start at 100/s empties the server's bucket (4 requests) at once, and climbs back
    # to 100/s a few seconds later: 2 to 4 429s in all (16 runs), the first within 0.05 s.
    # Seeded: none at the start (a pace learned a little above 40/s, with the 2 or 3 requests
    # it may send at once, takes about a second to empty the bucket), 1 or 2 in all.
    early = [t for t in cold if t < 0.5]
    assert early, f"a cold start meets the limit at once (429s at {cold})"
    assert [t for t in seeded if t < 0.5] == [], f"429s at {seeded}"
    assert len(seeded) <= len(cold), (seeded, cold)
    # Neither run lets its waiters out in a burst: a 429 for each request past the bucket.
    # (A cold resume once met 35 of them in 4 ms: turns given back after its first pause,
    # released together at its plateau's end; see RateController._leave.)
    for times in (seeded, cold):
        assert max((sum(1 for u in times if t <= u < t + 0.05) for t in times), default=0) <= 4


def _limits(clock: FakeClock, concurrency: int = 64) -> Limits:
    return Limits(
        concurrency=concurrency,
        per_conversation_rate=30.0,
        per_service_rate=30.0,
        products={},
        rng=random.Random(0),
        clock=clock,
    )


@pytest.mark.parametrize(
    ("age", "paced"),
    [
        pytest.param(0.0, 0.99 * 200, id="just-now"),
        pytest.param(300.0, 0.99 * 150, id="one-half-life"),
        pytest.param(1200.0, None, id="four-half-lives-cold"),
    ],
)
def test_the_recorded_pace_is_trusted_less_as_it_ages(age: float, paced: float | None) -> None:
    """Seeded from a log whose pace line says 200/s: at that pace when just written, halfway
    to the cold start's 100/s after one half-life (climbing back to 200/s soon after), and
    cold (a slow start from 100/s) from four half-lives on."""
    clock = FakeClock()
    limits = _limits(clock)
    started = NOON - timedelta(seconds=60 + age)
    seed_from_log(limits, Pace(60, {Product.CONVERSATIONS: 200.0}, None), started, 300.0, NOON)

    control = limits.controllers[Product.CONVERSATIONS]
    pace = control.rate()
    if paced is None:
        assert control.learned() is None
        assert pace == pytest.approx(100.0)  # a slow start's first pace
        return
    assert pace == pytest.approx(paced, rel=0.01)
    clock.advance(5.0)  # the short plateau, the climb, a window held
    assert control.rate() == pytest.approx(0.99 * 200, rel=0.01)
    assert control.learned() == pytest.approx(200.0, rel=0.01)


def test_a_recorded_in_flight_cap_is_seeded_and_never_widened() -> None:
    """The account's lowered in-flight cap is taken back (decayed toward the configured one by
    age), never above the cap this run is configured with; a pace of a product is independent."""
    clock = FakeClock()
    limits = _limits(clock, concurrency=32)
    seed_from_log(limits, Pace(0, {}, 20), NOON, 300.0, NOON)
    assert limits.learned() == ({}, 20)
    seed_from_log(limits, Pace(0, {}, 20), NOON, 300.0, NOON + timedelta(seconds=300))
    assert limits.learned() == ({}, 26)  # halfway back to 32 after one half-life

    wide = _limits(clock, concurrency=16)
    seed_from_log(wide, Pace(0, {}, 900), NOON, 300.0, NOON)
    assert wide.learned() == ({}, None)  # at most the configured 16: nothing lowered


def test_no_pace_line_or_half_life_zero_starts_cold() -> None:
    """A log without a pace line (written before it) and a half-life of 0 both start cold."""
    clock = FakeClock()
    limits = _limits(clock)
    assert seed_from_log(limits, None, NOON, 300.0, NOON) == 0.0
    pace = Pace(0, {Product.CONVERSATIONS: 200.0}, None)
    assert seed_from_log(limits, pace, NOON, 0.0, NOON) == 0.0
    assert limits.learned() == ({}, None)


def test_the_age_of_a_pace_line_is_wall_time_since_it_was_written() -> None:
    """A line written 60 s into a run that began at noon is 540 s old at 12:10."""
    assert pace_age(Pace(60, {}, None), NOON, NOON + timedelta(minutes=10)) == 540.0
