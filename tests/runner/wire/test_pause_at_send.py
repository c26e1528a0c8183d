"""Retry-After honoured at the moment of sending (issue 11 §2), judged by the emulator's ledger.

At each scope a 429 can pause (a conversation, a Service, a product, the account's in-flight
cap), with each Retry-After form and with bulkops paced at the server's limit and above it, a
real run deletes everything once and sends nothing into a pause: ``sent_during_pause`` is 0.
Each run prints one ``PAUSE {json}`` line with its figures (``pytest -s``).
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from runner.emulator import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN
from runner.engine.operations import poll_floor
from runner.errors import ExitCode
from runner.kinds.base import Product
from runner.values import ProductLimit, RetryPolicy
from runner.wire.adaptive import AdaptiveSettings
from runner.wire.client import TwilioClient
from runner.wire.limits import Limits
from runner.wire.requester import Requester
from tests.runner.conftest import (
    checkpoints,
    deleted,
    point_at,
    run_cli,
    start_bulkops,
    successful_deletes,
)
from tests.runner.test_run_faults import SUPPORT_SERVICE, job, report_rows

MESSAGES = f"""service: {SUPPORT_SERVICE}
targets:
  - kind: messages
    where: {{conversations: all}}
retry: {{base_delay: 0.05, max_delay: 0.5, max_attempts: 30}}
"""
CONVERSATIONS = f"""service: {SUPPORT_SERVICE}
targets:
  - kind: conversations
    where: {{created_before: 1s}}
retry: {{base_delay: 0.05, max_delay: 0.5, max_attempts: 30}}
"""


@dataclass(frozen=True)
class Scope:
    """One limit of the emulator, and bulkops paced at it (``at``) or above it (``above``)."""

    throttle: str  # the ledger's name for the limit
    emulator: dict[str, Any]
    body: str
    at: str  # the spec's limits at the server's limit ...
    above: str  # ... and above it (twice it, or 1.25 times a product rate)
    selects: str  # the resource kind the job selects


SCOPES = {
    "conversation": Scope(
        "conversation_aps",
        {"conversation_aps": 10.0},
        MESSAGES,
        "limits: {per_conversation_rate: 10}\n",
        "limits: {per_conversation_rate: 20}\n",
        "message",
    ),
    "service": Scope(
        "service_aps",
        {"service_aps": 4.0},
        CONVERSATIONS,
        "limits: {per_service_rate: 4}\n",
        "limits: {per_service_rate: 8}\n",
        "conversation_v1",
    ),
    "product": Scope(
        "product_rate",
        {"product_rate": {"conversations": (80.0, 8)}},
        MESSAGES,
        "limits: {conversations: {rate: 80}}\n",
        "limits: {conversations: {rate: 100}}\n",
        "message",
    ),
    "concurrency": Scope(
        "account_concurrency",
        {"account_concurrency": 8, "latency_median_s": 0.02, "latency_p99_s": 0.04},
        MESSAGES,
        "limits: {concurrency: 8}\n",
        "limits: {concurrency: 16}\n",
        "message",
    ),
}


async def selected(emu: Any, kind: str) -> set[tuple[str, str]]:
    """(kind, id) of what the scope's job selects: everything of ``kind`` in the support
    Service."""
    return {
        (kind, item["sid"])
        for item in await emu.resources(kind)
        if item["service_sid"] == SUPPORT_SERVICE
    }


def pause_figures(ledger: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """What a run did to the server's pauses, from its ledger."""
    return {
        "requests": len(ledger["requests"]),
        "429s": sum(1 for r in ledger["requests"] if r["status"] == 429),
        "throttled": {k: v for k, v in ledger["throttled"].items() if v},
        "sent_during_pause": ledger["sent_during_pause"],
        **extra,
    }


@pytest.mark.parametrize("pacing", ["at", "above"])
@pytest.mark.parametrize("mode", ["seconds", "http-date", "absent"])
@pytest.mark.parametrize("scope", list(SCOPES))
async def test_nothing_is_sent_into_a_pause(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    scope: str,
    mode: str,
    pacing: str,
) -> None:
    """With bulkops paced at the server's limit or above it, whatever the Retry-After form,
    every target is deleted once and no request arrives in a pause a 429 asked for."""
    case = SCOPES[scope]
    async with start_emulator(retry_after=mode, **case.emulator) as emu:
        point_at(monkeypatch, emu.url)
        expected = await selected(emu, case.selects)
        spec = job(workdir, case.body + (case.at if pacing == "at" else case.above))
        started = time.monotonic()

        code = await run_cli("run", spec)

        ledger = await emu.ledger()
        figures = pause_figures(
            ledger, scope=scope, retry_after=mode, pacing=pacing,
            run_s=round(time.monotonic() - started, 1),
        )
        print(f"PAUSE {json.dumps(figures, sort_keys=True)}")
        assert code == ExitCode.OK
        assert deleted(ledger) >= expected
        assert max(successful_deletes(ledger).values()) == 1
        if pacing == "above":
            assert ledger["throttled"][case.throttle] > 0  # the pauses were there to honour
        assert ledger["sent_during_pause"] == dict.fromkeys(ledger["sent_during_pause"], 0)


# --- a pause read while a request waits for a connection --------------------------------------


async def test_a_request_waiting_for_a_connection_is_not_sent_into_a_pause_read_meanwhile(
    start_emulator: Any,
) -> None:
    """A request its limits let go, waiting for a free connection when a 429 on that very
    connection pauses its product, is not written on it: it queues again behind the pause.

    One connection, two in-flight slots: the second request waits for the first's connection,
    which its 429 frees. Written at once, the emulator sees it arrive on the 429's connection
    inside the pause (``sent_during_pause`` 1, as it was); held, it arrives after the pause."""
    async with start_emulator(
        product_rate={"conversations": (2.0, 2)}, retry_after="seconds", retry_after_s=1.0
    ) as emu:
        async with TwilioClient(
            {p: emu.url for p in Product}, (DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN),
            connections=1,
        ) as client:
            limits = Limits(
                concurrency=2, per_conversation_rate=30.0, per_service_rate=30.0,
                products={p: ProductLimit() for p in Product}, rng=random.Random(1),
                # No pace to learn first: the second request is granted at once, and waits for
                # the connection only (the pace's own wait re-checks pauses when it ends).
                adaptive=AdaptiveSettings(initial=AdaptiveSettings().unbounded),
            )
            requester = Requester(client, limits, RetryPolicy(), random.Random(1))
            for _ in range(2):  # the server's bucket: empty
                await requester.send("GET", Product.CONVERSATIONS, "/v1/Conversations")
            answers: list[int] = []

            async def one() -> None:
                reply = await requester.send("GET", Product.CONVERSATIONS, "/v1/Conversations")
                answers.append(reply.status)

            async with anyio.create_task_group() as tg:
                tg.start_soon(one)  # takes the connection, answered 429
                tg.start_soon(one)  # granted a slot, waits for that connection
        ledger = await emu.ledger()
    statuses = [r["status"] for r in ledger["requests"]]
    assert answers == [200, 200]
    assert statuses[:3] == [200, 200, 429]
    assert ledger["throttled"]["product_rate"] >= 1
    assert ledger["sent_during_pause"]["product_rate"] == 0
    pause_end = ledger["requests"][2]["time"] + 1.0
    assert all(r["time"] >= pause_end for r in ledger["requests"][3:])
    assert requester.tally.requests["GET"] == len(statuses)  # the one held back: sent once


# --- a pause beyond retry.max_pause ------------------------------------------------------------


@pytest.mark.parametrize(
    "form",
    [
        pytest.param({"retry_after": "seconds", "retry_after_s": 1e9}, id="1000000000-seconds"),
        pytest.param({"retry_after": "http-date", "retry_after_s": 1e12}, id="http-date-9999"),
    ],
)
async def test_a_pause_beyond_max_pause_stops_the_run_and_resume_finishes_it(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch, form: dict[str, Any]
) -> None:
    """A Retry-After of 31 years (or up to year 9999) is not slept through: the run stops
    within seconds with exit 9 and one line naming the scope, the pause and the fix, nothing
    failed and nothing sent into the pause; once the pause is lifted, resume deletes the rest
    exactly once."""
    async with start_emulator(product_rate={"conversations": (20.0, 2)}, **form) as emu:
        point_at(monkeypatch, emu.url)
        expected = await selected(emu, "message")
        spec = job(workdir, MESSAGES)

        process = await start_bulkops(["run", str(spec)], workdir)
        with anyio.fail_after(30):  # PAUSE_GRACE_SECONDS + start-up, far below any pause
            async with process:
                first = await process.wait()

        ledger = await emu.ledger()
        stderr = (workdir / "stderr.log").read_text()
        assert first == ExitCode.PAUSED
        assert "the server asked to pause " in stderr
        assert "more than retry.max_pause = 900 s; nothing was sent into the pause." in stderr
        (log,) = checkpoints(workdir)
        assert f"`bulkops resume {log}` after it" in stderr
        assert "Traceback" not in stderr
        assert ledger["throttled"]["product_rate"] > 0
        assert ledger["sent_during_pause"]["product_rate"] == 0
        assert "failed" not in {row["outcome"] for row in report_rows(workdir)}
        footer = json.loads(log.read_text().splitlines()[-1])
        assert footer["t"] == "E" and footer["exit"] == ExitCode.PAUSED

        await emu.configure(product_rate={}, retry_after_s=None)
        second = await run_cli("resume", log)

        ledger = await emu.ledger()
        assert second == 0
        assert deleted(ledger) == expected
        assert max(successful_deletes(ledger).values()) == 1
        assert sum(ledger["sent_during_pause"].values()) == 0
        print(
            "PAUSE "
            + json.dumps(
                pause_figures(ledger, scope="max_pause", form=form, exit_codes=[first, second]),
                sort_keys=True,
            )
        )


# --- Operation polls: a floor under Retry-After -------------------------------------------------


async def test_operations_answering_retry_after_0_are_polled_at_the_floor(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Operations whose every answer says ``Retry-After: 0`` are polled no faster than the
    floor (a quarter of poll_interval, 0.25 s at least), not as fast as the loop turns."""
    lifetime = 2.0  # seconds each Operation stays PENDING, then RUNNING
    async with start_emulator(
        operation_pending_s=lifetime / 2, operation_running_s=lifetime / 2,
        operation_retry_after_s=0.0,
    ) as emu:
        point_at(monkeypatch, emu.url)
        stores = {("memory_store", s["id"]) for s in await emu.resources("memory_store")}
        spec = job(workdir, "targets:\n  - {kind: memory_stores, where: {all: true}}\n"
                            "operations: {poll_interval: 2}\n")

        assert await run_cli("run", spec) == ExitCode.OK

        ledger = await emu.ledger()
        polls = [r for r in ledger["requests"] if "/Operations/" in r["path"]]
        floor = poll_floor(2.0)
        per_operation = len(polls) / len(ledger["operations"])
        print(f"PAUSE {json.dumps({'polls': len(polls), 'operations': len(stores)})}")
        assert deleted(ledger) == stores
        assert floor == 0.5
        assert per_operation <= lifetime / floor + 2  # a poll per floor while it runs, + slack
