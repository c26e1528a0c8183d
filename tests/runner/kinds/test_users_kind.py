"""Conversation Users as a kind, end to end: `bulkops run` over real HTTP against the emulator,
judged by its ledger (exactly the selected Users, in the job's Service, nothing else touched)."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.runner.conftest import (
    REPO,
    checkpoints,
    deleted,
    interrupted_then_resumed,
    point_at,
    run_cli,
    successful_deletes,
)
from tests.runner.test_run_faults import SUPPORT_SERVICE, job

DEFAULT_SERVICE = "IS562624353a132be345f88445347ff821"  # the demo dataset's default Service


async def users_of(emu: Any, service: str) -> list[dict[str, Any]]:
    """The live Users of ``service``, as the emulator's admin API shows them."""
    return [u for u in await emu.resources("user") if u["service_sid"] == service]


async def untouched(emu: Any) -> dict[str, int]:
    """How many conversations, participants and messages are live (Users must not touch them)."""
    return {k: len(await emu.resources(k)) for k in ("conversation_v1", "participant", "message")}


def deletes(ledger: dict[str, Any]) -> list[str]:
    """The paths of every DELETE sent."""
    return [r["path"] for r in ledger["requests"] if r["method"] == "DELETE"]


async def test_example_deletes_old_users_of_its_service_only(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """jobs/users-inactive.yaml deletes exactly the old Users of its Service, through the
    Service's Users path, and no conversation, participant or message; only SIDs are logged."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        cutoff = datetime.now(UTC) - timedelta(days=180)
        support = await users_of(emu, SUPPORT_SERVICE)
        expected = {
            ("user", u["sid"])
            for u in support
            if datetime.fromisoformat(u["date_created"]) < cutoff
        }
        assert expected and len(expected) < len(support), "the dataset has old and new Users"
        before = await untouched(emu)

        assert await run_cli("run", REPO / "jobs" / "users-inactive.yaml") == 0

        ledger = await emu.ledger()
        assert deleted(ledger) == expected
        assert await untouched(emu) == before
        assert all(
            p.startswith(f"/v1/Services/{SUPPORT_SERVICE}/Users/US") for p in deletes(ledger)
        )
        assert max(successful_deletes(ledger).values()) == 1
        (log,) = checkpoints(workdir)
        with log.with_suffix(".report.csv").open() as f:
            rows = list(csv.DictReader(f))
        assert {(r["kind"], r["id"]) for r in rows} == expected
        written = log.read_text() + log.with_suffix(".report.csv").read_text()
        identities = {u.identity for u in emu.dataset.users} | {
            u.friendly_name for u in emu.dataset.users
        }
        assert not [i for i in identities if i in written], "no User identity reaches the log"


async def test_all_users_without_a_service_are_those_of_the_default_service(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without `service:`, `where: {all: true}` lists and deletes at /v1/Users: the default
    Service's Users, never another Service's."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        default = {("user", u["sid"]) for u in await users_of(emu, DEFAULT_SERVICE)}
        support = await users_of(emu, SUPPORT_SERVICE)
        spec = job(workdir, "targets:\n  - {kind: users, where: {all: true}}\n")

        assert await run_cli("run", spec) == 0

        ledger = await emu.ledger()
        assert default and deleted(ledger) == default
        assert await users_of(emu, SUPPORT_SERVICE) == support
        assert all(p.startswith("/v1/Users/US") for p in deletes(ledger))


async def test_users_by_id_delete_exactly_those(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An `ids` list deletes those Users of the job's Service and lists nothing."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        chosen = [u["sid"] for u in await users_of(emu, SUPPORT_SERVICE)][:2]
        spec = job(
            workdir, f"service: {SUPPORT_SERVICE}\ntargets:\n  - {{kind: users, ids: {chosen}}}\n"
        )

        assert await run_cli("run", spec) == 0

        ledger = await emu.ledger()
        assert deleted(ledger) == {("user", sid) for sid in chosen}
        assert not [r for r in ledger["requests"] if r["method"] == "GET"]


async def test_an_interrupted_user_purge_resumes_to_the_end(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped by SIGINT partway, the purge exits 130; `resume` deletes the rest, each once."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        expected = {("user", u["sid"]) for u in await users_of(emu, SUPPORT_SERVICE)}
        spec = job(
            workdir,
            f"service: {SUPPORT_SERVICE}\ntargets:\n  - {{kind: users, where: {{all: true}}}}\n"
            "limits: {per_service_rate: 4}\n",
        )
        await interrupted_then_resumed(emu, spec, workdir, expected)
