"""State ``H`` (held by a legal hold) in the log: final, counted, never listed, never driven."""

from __future__ import annotations

from pathlib import Path

from runner.kinds.base import Target
from runner.kinds.registry import by_name
from runner.log.records import (
    FINAL_STATES,
    STATE_BITS,
    STATES,
    State,
    decode_targets,
    group_records,
    target_record,
)
from runner.log.replay import read_checkpoint
from runner.report.completion import render_csv, summarize
from tests.runner.log.test_checkpoint import message, requested, sid, write_log

HELD_CONVERSATION = Target(by_name("conversation_v1"), sid("CH", 20))


def test_eight_states_fill_the_three_bit_field() -> None:
    """Held is the eighth state: it fits the replay's packed state, and a ninth would not."""
    assert State.HELD in STATES and State.HELD in FINAL_STATES
    assert len(STATES) == 1 << STATE_BITS


def test_a_held_line_round_trips_grouped() -> None:
    """Held lines of one conversation group into one line, and decode back target by target."""
    targets = [message(1), message(2)]
    (line,) = group_records([target_record(t, State.HELD, ts=3) for t in targets])
    assert line["s"] == "H" and len(line["ids"]) == 2
    assert [r.target for r in decode_targets(line)] == targets


def test_held_targets_are_final_counted_and_never_listed(tmp_path: Path) -> None:
    """A target held when found (its held line alone) and one held at send time (requested,
    then held) are final — neither is left to drive — counted as held, absent from the report's
    rows, and not counted against safety.max_deletions (never sent); a held conversation
    covers nothing."""
    m1, m2, m3 = message(1), message(2), message(3)
    log = write_log(
        tmp_path / "run.jsonl",
        requested(m1),
        requested(m2),
        target_record(m1, State.DELETED, ts=1, with_parent=False),
        target_record(m2, State.HELD, ts=2),
        target_record(m3, State.HELD, ts=2),
        target_record(HELD_CONVERSATION, State.HELD, ts=2),
    )
    replay = read_checkpoint(log)
    assert replay.open == {} and replay.unrequested == set()
    assert replay.state_of(m2) is State.HELD and replay.state_of(m3) is State.HELD
    assert replay.admitted() == 1  # m1: no held target was sent
    assert replay.deleted_conversations == set()
    assert summarize(replay).totals == {"deleted": 1, "held": 3}
    rows = render_csv(replay)
    assert m1.id in rows and m2.id not in rows and m3.id not in rows
    assert HELD_CONVERSATION.id not in rows
