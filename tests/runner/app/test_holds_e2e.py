"""Legal holds end to end (issue 13 §1): real runs of the CLI against the emulator over HTTP,
judged by the emulator's ledger. A held conversation is never deleted, nor anything in it; a hold
added to the hold file mid-run stops the next DELETE it covers; resume, apply, the config's
holds and verify honour holds; attribute values never reach a log, a report or the output."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import pytest

from runner.errors import ExitCode
from runner.log.replay import read_checkpoint
from runner.report.completion import summarize
from tests.runner.conftest import REPO, checkpoints, deleted, point_at, run_cli
from tests.runner.test_run_faults import SUPPORT_SERVICE, job

EXAMPLE = REPO / "jobs" / "retention-90d-with-holds.yaml"
PLAN_SCHEMA = json.loads((REPO / "docs" / "schemas" / "plan.json").read_text())
# The demo dataset's v1 conversations (seed 0) by number; the example job names the first two.
LISTED_NO, FILED_NO, LATE_NO = 0, 2, 3  # exclude.conversations, the hold file, added mid-run


def ts(text: str) -> datetime:
    """A timestamp from the emulator's admin API."""
    return datetime.fromisoformat(text)


def sid_of(emu: Any, number: int) -> str:
    """The SID of the demo dataset's v1 conversation ``number``."""
    sid: str = emu.dataset.conversations[number].sid
    return sid


def under_legal_hold(emu: Any) -> set[str]:
    """The v1 conversations whose attributes say ``"legal_hold": true``."""
    return {
        c.sid
        for c in emu.dataset.conversations
        if json.loads(c.attributes).get("legal_hold") is True
    }


def example_in(workdir: Path, extra: str = "") -> Path:
    """The example job and its hold list, copied to ``workdir`` (``extra`` appended)."""
    spec = workdir / EXAMPLE.name
    spec.write_text(EXAMPLE.read_text() + extra)
    shutil.copytree(EXAMPLE.parent / "holds", workdir / "holds")
    return spec


async def purge_selection(emu: Any, held: set[str]) -> tuple[set[tuple[str, str]], int]:
    """What the example job deletes by request when ``held`` are held (closed conversations
    older than 90 days, and older messages of the others), and how many found targets the
    holds keep."""
    cutoff = datetime.now(UTC) - timedelta(days=90)
    convs = [
        c for c in await emu.resources("conversation_v1") if c["service_sid"] == SUPPORT_SERVICE
    ]
    old_closed = {
        c["sid"] for c in convs if c["state"] == "closed" and ts(c["date_created"]) < cutoff
    }
    doomed = old_closed - held
    expected = {("conversation_v1", sid) for sid in doomed}
    kept = len(old_closed & held)
    for m in await emu.resources("message"):
        if (
            m["service_sid"] == SUPPORT_SERVICE
            and m["conversation_sid"] not in doomed
            and ts(m["date_created"]) < cutoff
        ):
            if m["conversation_sid"] in held:
                kept += 1
            else:
                expected.add(("message", m["sid"]))
    return expected, kept


def touching(ledger: dict[str, Any], sids: Iterable[str]) -> list[Any]:
    """Every DELETE sent into, and every deletion recorded under, one of ``sids``."""
    wanted = set(sids)
    sent = [
        r
        for r in ledger["requests"]
        if r["method"] == "DELETE" and any(sid in r["path"] for sid in wanted)
    ]
    gone = [d for d in ledger["deletions"] if d["id"] in wanted or d["conversation_sid"] in wanted]
    return sent + gone


def report_rows(log: Path) -> list[dict[str, str]]:
    """The CSV completion report of the run of ``log``."""
    with log.with_suffix(".report.csv").open() as f:
        return list(csv.DictReader(f))


async def test_three_kinds_of_holds_and_a_hold_file_changed_mid_run(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The example's 90-day purge deletes exactly what no hold keeps: nothing is sent into the
    listed, the filed or the attribute-held conversations; a conversation added to the hold file
    once its first message is deleted gets no DELETE after that; the report counts the held
    targets without a row for any; verify passes, the held ones excepted."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        listed, filed, late = (sid_of(emu, n) for n in (LISTED_NO, FILED_NO, LATE_NO))
        by_attributes = under_legal_hold(emu)
        held = {listed, filed} | by_attributes
        assert listed in EXAMPLE.read_text() and late not in held and not {listed, filed} & (
            by_attributes
        )
        expected, kept = await purge_selection(emu, held)
        late_selected = {t for t in expected if t[0] == "message"} & {
            ("message", m["sid"])
            for m in await emu.resources("message")
            if m["conversation_sid"] == late
        }
        assert len(late_selected) > 2
        # Paced to 4 DELETEs a second in a conversation, so the late one is mid-way when held.
        spec = example_in(workdir, "limits: {per_conversation_rate: 4}\n")
        state = emu.state
        mark = 0

        def late_message_deleted() -> bool:
            return any(d.conversation_sid == late for d in state.ledger.iter_deletions())

        async with anyio.create_task_group() as tg:
            codes: list[int] = []

            async def run() -> None:
                codes.append(await run_cli("run", spec, "--log-level", "debug"))

            tg.start_soon(run)
            await state.ledger.until(late_message_deleted)
            with (workdir / "holds" / "legal-holds.csv").open("a") as f:
                f.write(f"{late},M-2026-0003\n")
            mark = state.ledger.arrived  # a DELETE arriving after this was checked after it

        assert codes == [ExitCode.OK]
        ledger = await emu.ledger()
        assert touching(ledger, held) == []
        into_late = [r for r in touching(ledger, {late}) if "path" in r]
        late_deleted = {("message", d["id"]) for d in touching(ledger, {late}) if "via" in d}
        assert into_late and all(r["seq"] <= mark for r in into_late)
        assert late_deleted < late_selected  # some, not all
        assert deleted(ledger, "request") == (expected - late_selected) | late_deleted

        (log,) = checkpoints(workdir)
        totals = summarize(read_checkpoint(log)).totals
        assert totals["held"] == kept + len(late_selected - late_deleted)
        rows = report_rows(log)
        assert rows and all(r["outcome"] in ("deleted", "covered") for r in rows)
        assert {(r["kind"], r["id"]) for r in rows} <= deleted(ledger)

        capsys.readouterr()
        assert await run_cli("verify", log) == ExitCode.OK
        document = json.loads(log.with_suffix(".verify.json").read_text())
        assert document["verified"] is True and document["listing"]["held"] > 0
