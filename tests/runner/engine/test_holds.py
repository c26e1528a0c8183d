"""Legal holds: the hold-file format, the hold list re-read at send time, and the admission."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from runner.engine.admission import Admission, Verdict
from runner.engine.holds import HoldFile, HoldList, hold_files
from runner.errors import InputError, SpecError
from runner.kinds.base import Target
from runner.kinds.registry import by_name
from runner.spec.holds import HOLD_FILE_MAX_BYTES, ExcludeSpec, parse_hold_file
from tests.runner.log.test_checkpoint import sid, ttid

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
    holds = HoldList(attributes={"legal_hold": True})
    assert holds.holds(FREE, {"legal_hold": True, "team": "x"})
    assert not holds.holds(FREE, {"legal_hold": False})
    assert not holds.holds(FREE, {})
    assert holds.kept == {"where": 1}


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
