"""How a run meets 429s, faults, failed Operations and missing targets (real HTTP, emulator)."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from runner.errors import ExitCode
from tests.runner.conftest import checkpoints, deleted, point_at, run_cli, successful_deletes

SUPPORT_SERVICE = "IS40744b2de48602dc47560213196a8f46"


def job(directory: Path, body: str, name: str = "job") -> Path:
    """A job spec file holding ``body`` under a standard header."""
    path = directory / f"{name}.yaml"
    path.write_text(f"version: 1\nname: {name}\n{body}")
    return path


def report_rows(directory: Path) -> list[dict[str, str]]:
    """The completion report of the one run in ``directory``."""
    (log,) = checkpoints(directory)
    with log.with_suffix(".report.csv").open() as f:
        return list(csv.DictReader(f))


MESSAGE_PURGE = f"""service: {SUPPORT_SERVICE}
targets:
  - kind: messages
    where: {{conversations: all}}
retry: {{base_delay: 0.05, max_delay: 0.5}}
"""


@pytest.mark.parametrize(
    "mode",
    [
        pytest.param("seconds", id="retry-after-seconds"),
        pytest.param("http-date", id="retry-after-http-date"),
        pytest.param("absent", id="retry-after-absent"),
    ],
)
async def test_429_storm_loses_nothing(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """A server far stricter than the configured rate answers 429s; every message still goes."""
    async with start_emulator(conversation_aps=8.0, retry_after=mode) as emu:
        point_at(monkeypatch, emu.url)
        expected = {
            ("message", m["sid"])
            for m in await emu.resources("message")
            if m["service_sid"] == SUPPORT_SERVICE
        }
        spec = job(workdir, MESSAGE_PURGE + "limits: {per_conversation_rate: 30}\n")

        code = await run_cli("run", spec)

        ledger = await emu.ledger()
        assert ledger["throttled"]["conversation_aps"] > 0
        assert deleted(ledger) == expected
        assert max(successful_deletes(ledger).values()) == 1
        assert code == ExitCode.OK


async def test_transient_faults_are_retried_to_completion(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """500s, 503s, resets, unreadable 2xx bodies and 20009s are retried; nothing is lost."""
    faults = {
        "fault_500": 0.1,
        "fault_503": 0.1,
        "fault_reset": 0.05,
        "fault_bad_body": 0.05,
        "fault_20009": 0.05,
        "seed": 7,
    }
    async with start_emulator(**faults) as emu:
        point_at(monkeypatch, emu.url)
        expected = {
            ("message", m["sid"])
            for m in await emu.resources("message")
            if m["service_sid"] == SUPPORT_SERVICE
        }
        spec = job(workdir, MESSAGE_PURGE + "limits: {per_conversation_rate: 1000}\n")

        code = await run_cli("run", spec)

        ledger = await emu.ledger()
        assert sum(ledger["faults"].values()) > 0
        assert deleted(ledger) == expected
        assert max(successful_deletes(ledger).values()) == 1
        assert code == ExitCode.OK
        outcomes = Counter(r["outcome"] for r in report_rows(workdir))
        # Every message existed: a delete whose reply was lost (a reset after the server acted,
        # a garbled 2xx body) reads 404 when retried, gone after request; never `gone`, absent
        # before bulkops asked (aiohttp's own unseen re-send after a reset is off).
        resets = [
            r for r in ledger["requests"] if r["method"] == "DELETE" and r["status"] == 0
        ]
        assert resets, "the seed gives no reset DELETE: the test proves nothing"
        assert set(outcomes) <= {"deleted", "gone_after_request"}
        assert outcomes["gone_after_request"] > 0


async def test_failed_operations_are_reported_and_leave_the_resource(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An Operation that ends FAILED makes its target failed with the error code; exit 1."""
    async with start_emulator(operation_failure_rate=1.0) as emu:
        point_at(monkeypatch, emu.url)
        before = {c["id"] for c in await emu.resources("conversation_v2")}
        spec = job(
            workdir,
            "targets:\n  - {kind: conversations, api: v2, where: {all: true}}\n"
            "operations: {poll_interval: 0.05}\n",
        )

        code = await run_cli("run", spec)

        assert code == ExitCode.FAILURES
        rows = report_rows(workdir)
        assert {r["id"] for r in rows} == before
        assert {r["outcome"] for r in rows} == {"failed"}
        assert all(r["operation_id"] and r["error"] for r in rows)
        assert {c["id"] for c in await emu.resources("conversation_v2")} == before


async def test_a_missing_target_counts_as_gone(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A DELETE answered 404 means the target is already gone: success, recorded as gone."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        conversation = (await emu.resources("conversation_v1"))[0]["sid"]
        ghost = "IM" + "0" * 32
        spec = job(workdir, f'targets:\n  - {{kind: messages, ids: ["{conversation}/{ghost}"]}}\n')

        code = await run_cli("run", spec)

        assert code == ExitCode.OK
        assert [(r["id"], r["outcome"]) for r in report_rows(workdir)] == [(ghost, "gone")]


async def test_operations_past_their_timeout_fail_without_hanging(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An Operation still PENDING at operations.timeout ends failed, and the run ends."""
    async with start_emulator(operation_pending_s=60.0) as emu:
        point_at(monkeypatch, emu.url)
        spec = job(
            workdir,
            "targets:\n  - {kind: memory_stores, where: {all: true}}\n"
            "operations: {poll_interval: 0.1, timeout: 0.5}\n",
        )

        code = await run_cli("run", spec)

        assert code == ExitCode.FAILURES
        rows = report_rows(workdir)
        assert rows and all(r["outcome"] == "failed" for r in rows)
        assert all("TIMEOUT" in r["error"] for r in rows)


@pytest.mark.parametrize(
    ("setting", "sent"),
    [
        pytest.param("webhooks: true\n", "true", id="webhooks-true"),
        pytest.param("webhooks: false\n", "false", id="webhooks-false"),
        pytest.param("", None, id="webhooks-unset"),
    ],
)
async def test_webhooks_setting_sets_the_header_on_v1_deletes(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    setting: str,
    sent: str | None,
) -> None:
    """`webhooks:` becomes X-Twilio-Webhook-Enabled on v1 deletes; unset, no header is sent."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        spec = job(
            workdir,
            f"service: {SUPPORT_SERVICE}\n{setting}targets:\n"
            "  - {kind: participants, where: {conversations: all}}\n",
        )

        assert await run_cli("run", spec) == ExitCode.OK

        deletes = [r for r in (await emu.ledger())["requests"] if r["method"] == "DELETE"]
        assert deletes
        assert {r["webhook_enabled"] for r in deletes} == {sent}
