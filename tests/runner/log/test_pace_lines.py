"""Pace lines (``L``, issue 14 §6): written and read by the codec, untrusted when read.

A pace line only speeds a resume's start, so one bulkops could not have written is ignored with
a warning, never taken for damage, and never widens anything: what it may say is bounded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from runner.kinds.base import Product
from runner.log.records import (
    PACE_MAX_IN_FLIGHT,
    PACE_MAX_RATE,
    Pace,
    decode_object,
    decode_pace,
    encode,
    pace_record,
)
from runner.log.replay import read_checkpoint
from tests.fixtures.make_checkpoint_fixture import FIXTURE

(OLD_LOG,) = sorted((FIXTURE / "checkpoints").glob("*.jsonl"))


def test_a_pace_line_reads_back_as_written() -> None:
    """Rates are kept to a tenth of a request a second, the in-flight cap only when lowered."""
    line = encode(pace_record(12, {Product.CONVERSATIONS: 198.4567}, 40))
    assert line == b'{"t":"L","ts":12,"p":{"conversations":198.5},"cap":40}\n'
    assert decode_pace(decode_object(line)) == Pace(12, {Product.CONVERSATIONS: 198.5}, 40)
    bare = decode_object(encode(pace_record(3, {}, None)))
    assert decode_pace(bare) == Pace(3, {}, None)


def _with_lines(tmp_path: Path, after: int, lines: list[dict[str, Any]]) -> Path:
    """The committed v2 log with ``lines`` inserted after its line ``after``."""
    old = OLD_LOG.read_bytes().splitlines(keepends=True)
    log = tmp_path / OLD_LOG.name
    log.write_bytes(
        b"".join([*old[:after], *(orjson.dumps(r) + b"\n" for r in lines), *old[after:]])
    )
    return log


def test_pace_lines_change_nothing_else_a_replay_says(tmp_path: Path) -> None:
    """Pace lines anywhere in a log leave every target's state, the traffic and the exit code as
    the log without them says; the last one is the pace."""
    before = read_checkpoint(OLD_LOG)
    first = pace_record(2, {Product.CONVERSATIONS: 150.0}, None)
    last = pace_record(5, {Product.CONVERSATIONS: 190.0, Product.MEMORY: 20.0}, 30)
    log = _with_lines(tmp_path, 3, [first])
    log.write_bytes(log.read_bytes().replace(b'{"t":"E"', encode(last) + b'{"t":"E"'))

    after = read_checkpoint(log)

    assert before.pace is None  # a log written before pace lines
    assert after.pace == Pace(5, {Product.CONVERSATIONS: 190.0, Product.MEMORY: 20.0}, 30)
    assert after.counts() == before.counts()
    assert after.open.keys() == before.open.keys()
    assert (after.exit_code, after.traffic) == (before.exit_code, before.traffic)
    assert after.warnings == before.warnings == []


@pytest.mark.parametrize(
    "line",
    [
        pytest.param({"t": "L", "ts": 4, "p": {"voice": 100.0}}, id="unknown-product"),
        pytest.param({"t": "L", "ts": 4, "p": {"conversations": 10 * PACE_MAX_RATE}}, id="fast"),
        pytest.param({"t": "L", "ts": 4, "p": {"conversations": 0.5}}, id="under-one"),
        pytest.param({"t": "L", "ts": 4, "p": {"conversations": "200"}}, id="text-rate"),
        pytest.param({"t": "L", "ts": 4, "p": {"conversations": True}}, id="bool-rate"),
        pytest.param({"t": "L", "ts": 4, "p": [200.0]}, id="not-a-mapping"),
        pytest.param({"t": "L", "ts": -1, "p": {}}, id="negative-ts"),
        pytest.param({"t": "L", "ts": 4.5, "p": {}}, id="fractional-ts"),
        pytest.param({"t": "L", "p": {}}, id="no-ts"),
        pytest.param({"t": "L", "ts": 4, "p": {}, "cap": 0}, id="cap-zero"),
        pytest.param({"t": "L", "ts": 4, "p": {}, "cap": PACE_MAX_IN_FLIGHT + 1}, id="cap-wide"),
        pytest.param({"t": "L", "ts": 4, "p": {}, "cap": "64"}, id="cap-text"),
    ],
)
def test_a_pace_line_bulkops_could_not_have_written_is_ignored(
    tmp_path: Path, line: dict[str, Any]
) -> None:
    """A pace line out of bounds or of the wrong shape is ignored with one warning: the pace is
    the last valid line's (or none), and the log still replays, wherever the line is."""
    valid = pace_record(2, {Product.CONVERSATIONS: 150.0}, None)
    log = _with_lines(tmp_path, 3, [valid, line, line])

    replay = read_checkpoint(log)

    assert replay.pace == Pace(2, {Product.CONVERSATIONS: 150.0}, None)
    (warning,) = replay.warnings
    assert warning.startswith("a pace line was ignored (")
    assert replay.counts() == read_checkpoint(OLD_LOG).counts()
