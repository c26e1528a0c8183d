"""Legal holds: the hold-file format, the hold list re-read at send time, and the admission."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import ValidationError

from runner.clock import MONOTONIC
from runner.engine.admission import Admission, Verdict
from runner.engine.holds import HoldFile, HoldList, hold_files
from runner.engine.scheduler import Engine
from runner.errors import InputError, SpecError
from runner.kinds.base import Target
from runner.kinds.registry import by_name
from runner.log.lock import open_log
from runner.log.writer import CheckpointWriter
from runner.plan.planner import build_plan
from runner.plan.selection import Explicit, Source
from runner.spec.holds import HOLD_FILE_MAX_BYTES, ExcludeSpec, parse_hold_file
from runner.spec.jobspec import parse_spec
from tests.runner.app.test_run_e2e import SUPPORT_SERVICE
from tests.runner.engine.test_discovery import requester_at
from tests.runner.engine.test_scheduler import a_conversation_with_messages, settings
from tests.runner.log.test_checkpoint import HEADER, sid, ttid

MESSAGE = by_name("message")
PARTICIPANT = by_name("participant")
CONVERSATION_V1 = by_name("conversation_v1")
CONVERSATION_V2 = by_name("conversation_v2")
USER = by_name("user")

HELD = Target(CONVERSATION_V1, sid("CH", 1))
FREE = Target(CONVERSATION_V1, sid("CH", 2))
LATE = Target(CONVERSATION_V1, sid("CH", 3))
V2_HELD = Target(CONVERSATION_V2, ttid("conv_conversation_", 7))


def write(path: Path, text: str) -> None:
    """Write a hold file so that a re-read sees the change even within one mtime tick."""
    before = path.stat() if path.exists() else None
    path.write_text(text)
    if before is not None:
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))


def test_hold_file_lists_v1_and_v2_ids_skipping_header_comments_and_blanks() -> None:
    data = f"id,matter\n{HELD.id},M-1\n\n# closed matters below\n{V2_HELD.id}\n".encode()
    assert parse_hold_file("holds.csv", data) == {HELD.id, V2_HELD.id}


def test_malformed_id_names_the_file_the_line_and_the_fix() -> None:
    with pytest.raises(SpecError) as e:
        parse_hold_file("holds.csv", f"{HELD.id}\nIS{'0' * 32}\n".encode())
    assert str(e.value).startswith("holds.csv, line 2: 'IS")
    assert "fix the ID or remove the line" in str(e.value)


def test_oversized_hold_file_is_refused() -> None:
    with pytest.raises(SpecError, match="larger than"):
        parse_hold_file("holds.csv", b"#" * (HOLD_FILE_MAX_BYTES + 1))


def test_inline_holds_are_checked() -> None:
    assert ExcludeSpec(conversations=(HELD.id,)).listed() == {HELD.id}
    with pytest.raises(ValidationError, match="not a conversation ID a hold can name"):
        ExcludeSpec(conversations=("CHnope",))


def test_held_conversation_its_children_and_v2_are_held_others_not(tmp_path: Path) -> None:
    path = tmp_path / "holds.csv"
    write(path, f"{V2_HELD.id}\n")
    holds = HoldList(listed=frozenset({HELD.id}), files=hold_files([path.name], tmp_path))
    assert holds.holds(HELD)
    assert holds.holds(Target(MESSAGE, sid("IM", 1), HELD.id))
    assert holds.holds(Target(PARTICIPANT, sid("MB", 1), HELD.id))
    assert holds.holds(V2_HELD)
    assert not holds.holds(FREE)
    assert not holds.holds(Target(MESSAGE, sid("IM", 2), FREE.id))
    assert holds.kept == {"list": 3, str(path): 1}


def test_attributes_hold_matches_every_key() -> None:
    """A v1 conversation is held when its attributes (a JSON string) hold every key: value of a
    where clause, with the same JSON type (true is not 1)."""
    holds = HoldList(wheres=[{"legal_hold": True}])
    cases = {
        sid("CH", 11): '{"legal_hold": true, "team": "x"}',
        sid("CH", 12): '{"legal_hold": false}',
        sid("CH", 13): "{}",
        sid("CH", 14): '{"legal_hold": 1}',
    }
    for conversation, raw in cases.items():
        holds.note_attributes(conversation, raw)
    verdicts = [holds.holds(Target(CONVERSATION_V1, c)) for c in cases]
    assert verdicts == [True, False, False, False]
    assert holds.holds(Target(MESSAGE, sid("IM", 11), sid("CH", 11)))
    assert holds.kept == {"where": 2}


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("not json", id="not-json"),
        pytest.param("[1, 2]", id="not-an-object"),
        pytest.param(None, id="absent"),
        pytest.param(7, id="a-number"),
        pytest.param("{" * 100_000, id="too-long"),
        pytest.param("[" * 5000 + "]" * 5000, id="too-deep"),
    ],
)
def test_unreadable_attributes_fail_safe(raw: object) -> None:
    """Attributes that are not a bounded JSON object never crash the run: the conversation is
    held (counted as unreadable attributes), and nothing of it is sent."""
    holds = HoldList(wheres=[{"legal_hold": True}])
    holds.note_attributes(FREE.id, raw)
    assert holds.holds(FREE)
    assert holds.kept == {"unreadable attributes": 1}


def test_unknown_attributes_are_held_at_send_time_only() -> None:
    """A conversation whose attributes were never read is admitted, but held if its DELETE is
    about to go without them."""
    holds = HoldList(wheres=[{"legal_hold": True}])
    child = Target(MESSAGE, sid("IM", 3), FREE.id)
    assert holds.attributes_unknown(child) == FREE.id
    assert not holds.holds(child)
    assert holds.holds(child, sending=True)
    assert not HoldList().holds(child, sending=True)  # no attribute hold: nothing to read


def test_a_hold_added_to_the_file_takes_effect_on_the_next_check(tmp_path: Path) -> None:
    path = tmp_path / "holds.csv"
    write(path, f"{HELD.id}\n")
    holds = HoldList(files=hold_files([path.name], tmp_path))
    assert not holds.holds(LATE)
    write(path, f"{HELD.id}\n{LATE.id}\n")
    assert holds.holds(LATE)


def test_a_changed_file_that_is_bad_fails_safe_then_recovers(tmp_path: Path) -> None:
    path = tmp_path / "holds.csv"
    write(path, f"{HELD.id}\n")
    holds = HoldList(files=hold_files([path.name], tmp_path))
    write(path, f"{HELD.id}\nnot-an-id\n")
    assert holds.holds(FREE)  # nothing that could be held is sent
    assert holds.problem is not None and "line 2" in holds.problem
    assert not holds.holds(Target(USER, sid("US", 1)))  # no hold names a User
    write(path, f"{HELD.id}\n")
    assert not holds.holds(FREE)
    assert holds.problem is None
    path.unlink()
    assert holds.holds(FREE)
    assert holds.problem is not None and "holds.csv" in holds.problem


def test_missing_hold_file_at_start_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope.csv: no such hold file; fix the path"):
        hold_files(["nope.csv"], tmp_path)


def test_refresh_stats_at_most_every_interval(tmp_path: Path) -> None:
    path = tmp_path / "holds.csv"
    write(path, "")
    clock = [0.0]
    holds = HoldList(files=[HoldFile(path)], interval=0.5, now=lambda: clock[0])
    holds.refresh()
    write(path, f"{LATE.id}\n")
    clock[0] = 0.4
    assert not holds.holds(LATE)
    clock[0] = 0.6
    assert holds.holds(LATE)


def test_admission_never_admits_nor_covers_through_a_held_conversation() -> None:
    admission = Admission(planning=True, holds=HoldList(listed=frozenset({HELD.id})))
    assert admission.admit(HELD) is Verdict.HELD
    assert admission.admit(FREE) is Verdict.ADMITTED
    assert admission.admit(Target(MESSAGE, sid("IM", 1), HELD.id)) is Verdict.HELD
    assert admission.admit(Target(MESSAGE, sid("IM", 2), FREE.id)) is Verdict.COVERED
    assert admission.held == {CONVERSATION_V1: 1, MESSAGE: 1}


async def test_over_http_nothing_held_is_deleted_and_a_hold_added_before_the_send_holds(
    start_emulator: Any, tmp_path: Path
) -> None:
    """A conversation held by the list is not deleted, nor its messages (not covered through
    it either); a conversation held by a file written after it was admitted, but before the
    write-ahead let its DELETE go, is not deleted; the rest is. Judged by the emulator's ledger."""
    async with start_emulator() as emu:
        held, messages = await a_conversation_with_messages(emu)
        others = [
            c["sid"]
            for c in await emu.resources("conversation_v1")
            if c["sid"] != held and c["service_sid"] != SUPPORT_SERVICE
        ][:2]
        late, free = others
        path = tmp_path / "holds.csv"
        write(path, "id\n")
        holds = HoldList(listed=frozenset({held}), files=hold_files([path.name], tmp_path))
        sources: list[Source] = [
            Explicit(
                CONVERSATION_V1, tuple(Target(CONVERSATION_V1, c) for c in (held, late, free))
            ),
            Explicit(MESSAGE, tuple(Target(MESSAGE, m, held) for m in messages)),
        ]
        log = tmp_path / "run.jsonl"
        async with requester_at(emu, 4) as requester:
            with open_log(log, HEADER) as handle:
                writer = CheckpointWriter(log, HEADER.started_at)
                engine = Engine(
                    replace(settings(), holds=holds),
                    requester,
                    sources,
                    writer,
                    clock=MONOTONIC,
                )

                async def run() -> None:
                    await engine.run()
                    writer.close()

                with anyio.fail_after(30):
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(run)
                        await anyio.wait_all_tasks_blocked()  # admitted, held at the write-ahead
                        write(path, f"id\n{late}\n")
                        tg.start_soon(writer.run, handle)

        deletes = [r["path"] for r in (await emu.ledger())["requests"] if r["method"] == "DELETE"]
        assert deletes == [f"/v1/Conversations/{free}"]
        assert holds.kept == {"list": 1 + len(messages), str(path): 1}


def test_the_plan_carries_the_spec_holds_with_the_hold_file_made_absolute(tmp_path: Path) -> None:
    """The planner no longer refuses exclude:, it resolves it: the listed IDs, the hold file's
    path relative to the spec, and the where clause."""
    write(tmp_path / "h.csv", f"{LATE.id}\n")
    spec = parse_spec(
        f"version: 1\nname: j\ntargets: [{{kind: conversations, ids: [{FREE.id}]}}]\n"
        f"exclude: {{conversations: [{HELD.id}], from_file: h.csv,"
        " where: {attributes: {legal_hold: true}}}\n",
        base_dir=tmp_path,
    )
    holds = build_plan(spec, datetime.now(UTC)).holds
    assert holds is not None
    assert holds.listed == {HELD.id}
    assert holds.files == (tmp_path / "h.csv",)
    assert holds.wheres == ((("legal_hold", True),),)
