"""A log written by an earlier bulkops (tests/fixtures/checkpoint-v2) still resumes.

The fixture is an interrupted run: targets requested, deleted, covered, failed, and a v2
conversation accepted with its Operation. Here the same dataset is served on the same host,
with what the run deleted deleted again first (the emulator's state when the run stopped),
and `status`, `report` and `resume` of a copy of the log must finish the job, deleting
nothing twice and losing nothing the job selected.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import aiohttp
import pytest

from runner.emulator import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    EmulatorSettings,
    running_emulator,
)
from tests.fixtures.make_checkpoint_fixture import FIXTURE, PORT, Ids, dataset
from tests.runner.conftest import Emulator, deleted, point_at, run_cli

FINAL = frozenset({"D", "G", "C"})
KINDS = {"m": "message", "c1": "conversation_v1", "c2": "conversation_v2"}


def logged(log: Path) -> dict[tuple[str, str], tuple[str, str | None]]:
    """(kind, id) → (last state, conversation) of every target, read as plain JSON (not
    through the codec under test)."""
    found: dict[tuple[str, str], tuple[str, str | None]] = {}
    for line in log.read_text().splitlines()[1:]:
        rec = json.loads(line)
        if "s" not in rec:
            continue
        for one in rec.get("ids", [rec.get("id")]):
            key = (KINDS[rec["k"]], one)
            parent = rec.get("c") or (found[key][1] if key in found else None)
            found[key] = (rec["s"], parent)
    return found


async def replay_the_run(
    emu: Emulator, targets: dict[tuple[str, str], tuple[str, str | None]]
) -> None:
    """Delete what the fixture's run deleted, straight through the API (covered messages go
    with their conversation)."""
    auth = {"Authorization": aiohttp.encode_basic_auth(DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN)}
    service = "IS40744b2de48602dc47560213196a8f46"
    paths = {
        "conversation_v1": f"/v1/Services/{service}/Conversations/{{id}}",
        "message": f"/v1/Services/{service}/Conversations/{{parent}}/Messages/{{id}}",
    }
    for (kind, id_), (state, parent) in targets.items():
        if state == "D":
            path = paths[kind].format(id=id_, parent=parent)
            async with emu.session.delete(emu.url + path, headers=auth) as resp:
                assert resp.status == 204, await resp.text()


async def test_a_version_2_log_resumes(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`status`, `report` and `resume` of the fixture's log: the job finishes, each target
    deleted once, none that the log finished deleted again."""
    shutil.copytree(FIXTURE, workdir / "job")
    (log,) = sorted((workdir / "job").glob("checkpoints/*.jsonl"))
    targets = logged(log)
    states = {s for s, _ in targets.values()}
    assert {"Q", "A", "D", "F", "C"} <= states, "the fixture holds every state"
    ids = Ids.of(dataset())
    settings = EmulatorSettings(operation_pending_s=0.05, operation_running_s=0.05)
    async with (
        running_emulator(settings, dataset()) as url,
        aiohttp.ClientSession() as session,
    ):
        # The header records the hosts the run used, and a resume refuses other ones: the copy
        # names this emulator's port 0 address instead (the header alone; every line after it is
        # the fixture's bytes).
        header, rest = log.read_bytes().split(b"\n", 1)
        log.write_bytes(header.replace(f"127.0.0.1:{PORT}".encode(), url.split("//")[1].encode())
                        + b"\n" + rest)
        emu = Emulator(url, dataset(), session)
        point_at(monkeypatch, url)
        await replay_the_run(emu, targets)
        at_start = await emu.ledger()
        before, replayed = len(at_start["requests"]), len(at_start["deletions"])
        expected: set[tuple[str, str]] = {
            ("message", m["sid"])
            for m in await emu.resources("message")
            if m["conversation_sid"] == ids.slow
        } | {("conversation_v2", ids.failing_v2), ("conversation_v2", ids.accepted_v2)}

        assert await run_cli("status", log) == 0
        assert await run_cli("report", log) == 0
        assert len((await emu.ledger())["requests"]) == before, "status and report send nothing"

        # The accepted target's Operation belonged to the fixture's emulator: this one answers
        # its poll with 404, so the target fails and a second resume deletes it.
        assert await run_cli("resume", log, "--retry-failed") == 1
        assert await run_cli("resume", log, "--retry-failed") == 0

        ledger = await emu.ledger()
        resumed = deleted({"deletions": ledger["deletions"][replayed:]})
        done_before = {key for key, (state, _) in targets.items() if state in FINAL}
        assert not resumed & done_before, "nothing the log finished was deleted again"
        assert resumed == expected
        remaining = {("message", m["sid"]) for m in await emu.resources("message")} | {
            ("conversation_v2", c["id"]) for c in await emu.resources("conversation_v2")
        }
        assert not remaining & expected, "nothing selected is lost"
        per_id: dict[tuple[str, str], int] = {}
        for d in ledger["deletions"]:
            per_id[(d["kind"], d["id"])] = per_id.get((d["kind"], d["id"]), 0) + 1
        assert max(per_id.values()) == 1, "nothing deleted twice"
        rows = json.loads(log.with_suffix(".report.json").read_text())["targets"]
        assert {r["outcome"] for r in rows} == {"deleted", "covered"}
        assert len(rows) == len(targets)
