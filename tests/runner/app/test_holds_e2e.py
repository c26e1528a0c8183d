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
from runner.plan.planfile import read_plan
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
        assert await run_cli("status", log) == ExitCode.OK
        assert f"{totals['held']:,} held" in capsys.readouterr().out

        capsys.readouterr()
        assert await run_cli("verify", log) == ExitCode.OK
        document = json.loads(log.with_suffix(".verify.json").read_text())
        assert document["verified"] is True and document["listing"]["held"] > 0


async def test_verify_fails_naming_what_remains_but_never_what_is_held(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the server answers some deletes without acting, verify of the held purge exits 1
    and names exactly those targets; the held ones, listed again, are not among them."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        held = {sid_of(emu, LISTED_NO), sid_of(emu, FILED_NO)} | under_legal_hold(emu)
        expected, _kept = await purge_selection(emu, held)
        kept = sorted(expected)[:1] + sorted(t for t in expected if t[0] == "conversation_v1")[:1]
        await emu.configure(keep_resources=[i for _k, i in kept])
        assert await run_cli("run", example_in(workdir)) == ExitCode.OK
        (log,) = checkpoints(workdir)

        assert await run_cli("verify", log) == ExitCode.FAILURES

        document = json.loads(log.with_suffix(".verify.json").read_text())
        assert document["verified"] is False
        remaining = {(r["kind"], r["id"]) for r in document["remaining"]}
        assert set(kept) <= remaining
        assert not {i for _k, i in remaining} & held
        assert document["listing"]["held"] > 0


async def test_resume_honours_an_attribute_hold_read_by_get_and_a_hold_added_since(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Messages of conversations named in the spec (the conversations themselves are never
    listed): before any DELETE in one, its attributes are fetched once, and one under a legal
    hold loses nothing. A run braked at its second target is resumed after a conversation was
    added to the hold file: the resume deletes the free conversation's messages, nothing of the
    attribute-held one, and nothing more of the newly held one; verify then passes, the held
    messages excepted."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        by_attributes = sid_of(emu, 1)
        free, filed_later = sid_of(emu, LATE_NO), sid_of(emu, 4)
        assert by_attributes in under_legal_hold(emu)
        assert not {free, filed_later} & under_legal_hold(emu)
        messages = {
            sid: {m["sid"] for m in await emu.resources("message") if m["conversation_sid"] == sid}
            for sid in (free, by_attributes, filed_later)
        }
        (workdir / "holds.csv").write_text("id\n")
        spec = job(
            workdir,
            f"service: {SUPPORT_SERVICE}\n"
            "targets:\n  - kind: messages\n"
            f"    where: {{conversations: [{free}, {by_attributes}, {filed_later}]}}\n"
            "exclude: {from_file: holds.csv, where: {attributes: {legal_hold: true}}}\n"
            "safety: {max_deletions: 1}\n",
        )
        assert await run_cli("run", spec) == ExitCode.ABORTED
        (log,) = checkpoints(workdir)
        mark = emu.state.ledger.arrived
        (workdir / "holds.csv").write_text(f"id\n{filed_later}\n")

        assert await run_cli("resume", "--max-deletions", "1000", log) == ExitCode.OK

        ledger = await emu.ledger()
        assert touching(ledger, {by_attributes}) == []
        assert [r for r in touching(ledger, {filed_later}) if r.get("seq", 0) > mark] == []
        sent_first = [r for r in ledger["requests"] if r["method"] == "DELETE" and r["seq"] <= mark]
        assert len(sent_first) <= 1  # braked at its second target
        early = {d["id"] for d in touching(ledger, {filed_later}) if "via" in d}
        assert deleted(ledger, "request") == {("message", m) for m in messages[free] | early}
        reads = [
            r["path"]
            for r in ledger["requests"]
            if r["method"] == "GET" and r["path"].endswith(by_attributes) and r["seq"] > mark
        ]
        assert reads == [f"/v1/Services/{SUPPORT_SERVICE}/Conversations/{by_attributes}"]
        totals = summarize(read_checkpoint(log)).totals
        assert totals["held"] == len(messages[by_attributes]) + len(messages[filed_later] - early)

        # Verify lists the three conversations' messages again: what the holds keep (the
        # attribute-held conversation's judged by one GET of its own) is not remaining.
        since = (await emu.ledger())["requests"][-1]["seq"]
        assert await run_cli("verify", log) == ExitCode.OK
        document = json.loads(log.with_suffix(".verify.json").read_text())
        assert document["listing"]["held"] == totals["held"]
        reads = [
            r["path"]
            for r in (await emu.ledger())["requests"]
            if r["seq"] > since and r["method"] == "GET" and r["path"].endswith(by_attributes)
        ]
        assert len(reads) == 1


async def test_a_failed_attribute_read_holds_the_conversation(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """When a conversation's attributes cannot be read (the GET fails past its retries), nothing
    in it is deleted: it counts as held for this run, and the run says why."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        free = sid_of(emu, LATE_NO)
        ids = [
            f"{free}/{m['sid']}"
            for m in await emu.resources("message")
            if m["conversation_sid"] == free
        ]
        spec = job(
            workdir,
            f"service: {SUPPORT_SERVICE}\n"
            f"targets: [{{kind: messages, ids: [{', '.join(ids)}]}}]\n"
            "exclude: {where: {attributes: {legal_hold: true}}}\n"
            "retry: {max_attempts: 2, base_delay: 0.01, max_delay: 0.02}\n",
        )
        await emu.configure(fault_500=1.0)
        code = await run_cli("run", spec)
        await emu.configure(fault_500=0.0)

        assert code == ExitCode.OK
        ledger = await emu.ledger()
        assert [r for r in ledger["requests"] if r["method"] == "DELETE"] == []
        (log,) = checkpoints(workdir)
        assert summarize(read_checkpoint(log)).totals["held"] == len(ids)
        err = capsys.readouterr().err
        assert "hold_attributes_unreadable" in err and free in err


async def test_plan_counts_each_hold_and_apply_honours_a_hold_added_after_the_plan(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`plan -o json` counts what each hold kept (by "list", the file, "where"), never which;
    a conversation added to the hold file after the plan was reviewed is not deleted by
    `apply`, though the plan lists it."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        held = {sid_of(emu, LISTED_NO), sid_of(emu, FILED_NO)} | under_legal_hold(emu)
        _expected, kept = await purge_selection(emu, held)
        spec = example_in(workdir)
        plan = workdir / "reviewed.plan"
        capsys.readouterr()
        assert await run_cli("plan", spec, "--out", plan, "-o", "json") == ExitCode.OK
        document = json.loads(capsys.readouterr().out)
        jsonschema.validate(document, PLAN_SCHEMA)
        hold_file = str((workdir / "holds" / "legal-holds.csv").resolve())
        assert set(document["holds"]) == {"list", hold_file, "where"}
        assert document["total_held"] == sum(document["holds"].values()) == kept
        planned = read_plan(plan)
        conversations = {
            t.parent or t.id for kind in planned.counts for t in planned.targets(kind)
        }
        late = sid_of(emu, LATE_NO)
        assert late in conversations and not conversations & held
        with (workdir / "holds" / "legal-holds.csv").open("a") as f:
            f.write(f"{late}\n")

        assert await run_cli("apply", plan) == ExitCode.OK

        ledger = await emu.ledger()
        assert touching(ledger, held | {late}) == []
        assert deleted(ledger, "request")


async def test_a_config_hold_holds_in_every_job(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The config's `holds:` apply to a job whose spec holds nothing: the v1 conversation its
    hold file names is not deleted, nor its messages, and the v2 conversation it lists is not
    deleted; the rest of the selection is."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        closed = [
            c["sid"]
            for c in await emu.resources("conversation_v1")
            if c["service_sid"] == SUPPORT_SERVICE and c["state"] == "closed"
        ]
        held, *others = closed
        v2 = await emu.resources("conversation_v2")
        closed_v2 = [c["id"] for c in v2 if c["status"] == "CLOSED"]
        held_v2, *others_v2 = closed_v2
        assert others and others_v2
        config = workdir / "bulkops.yaml"
        (workdir / "config-holds.csv").write_text(f"{held}\n")
        config.write_text(
            f"holds:\n  from_file: config-holds.csv\n  conversations: [{held_v2}]\n"
        )
        spec = job(
            workdir,
            f"service: {SUPPORT_SERVICE}\n"
            "targets: [{kind: conversations, where: {state: closed}},"
            " {kind: messages, where: {conversations: all, created_before: 1d}},"
            " {kind: conversations, api: v2, where: {status: CLOSED}}]\n"
            "operations: {poll_interval: 0.1}\n",
        )

        assert await run_cli("run", spec, "--config", config) == ExitCode.OK

        ledger = await emu.ledger()
        assert touching(ledger, {held, held_v2}) == []
        assert {("conversation_v1", sid) for sid in others} | {
            ("conversation_v2", i) for i in others_v2
        } <= deleted(ledger, "request", "operation")


async def test_attribute_values_never_reach_a_log_a_report_or_the_output(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Attributes are read in memory only: none of their values (customer names, matter
    numbers) is in the checkpoint, the reports, the verify evidence or what plan, run, report
    and verify print, at debug level."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        spec = example_in(workdir)
        argv = ("--log-level", "debug")
        assert await run_cli("plan", spec, "-o", "json", *argv) == ExitCode.OK
        assert await run_cli("run", spec, *argv) == ExitCode.OK
        (log,) = checkpoints(workdir)
        assert await run_cli("report", log, "--summary", "-o", "json") == ExitCode.OK
        assert await run_cli("verify", log, *argv) == ExitCode.OK
        out = capsys.readouterr()
        written = [
            p.read_bytes().decode("utf-8", "replace") for p in log.parent.iterdir() if p.is_file()
        ]
        secrets = {
            str(value)
            for c in emu.dataset.conversations
            for key, value in json.loads(c.attributes).items()
            if key in ("customer", "matter")
        }
        assert secrets and "M-2026-0001" in secrets
        for text in (out.out, out.err, *written):
            assert text and not [s for s in secrets if s in text]
