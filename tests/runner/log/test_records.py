"""The records codec: kinds map one way in one place, and it writes the bytes bulkops wrote.

The bytes are those of tests/fixtures/checkpoint-v2, a log written by bulkops before the codec
existed: each of its lines, decoded and encoded again through ``runner.log.records``, is the
same line.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from runner.kinds.registry import KINDS
from runner.log.records import (
    KIND_BITS,
    Header,
    TargetRecord,
    check_kinds_fit,
    children_listed_record,
    decode_footer,
    decode_footer_object,
    decode_header,
    decode_progress,
    decode_targets,
    encode,
    footer_record,
    group_records,
    kind_at,
    kind_code,
    kind_index,
    kind_of,
    progress_record,
    target_record,
)
from tests.fixtures.make_checkpoint_fixture import FIXTURE


def test_every_kind_has_one_code_and_one_index() -> None:
    """Code and index of each kind lead back to it, and every index fits the packed bits."""
    for resource in KINDS:
        assert kind_of(kind_code(resource)) is resource
        assert kind_at(kind_index(resource)) is resource
        assert kind_index(resource) < 1 << KIND_BITS
    assert len({kind_code(r) for r in KINDS}) == len(KINDS)


def test_a_ninth_kind_is_refused_by_name() -> None:
    """More kinds than the 3-bit index holds fail at once, saying where to widen it."""
    check_kinds_fit(1 << KIND_BITS)
    with pytest.raises(RuntimeError, match=r"9 resource kinds do not fit .* 3-bit kind index"):
        check_kinds_fit(9)


def _again(rec: dict[str, Any]) -> bytes:
    """The line the codec writes for what ``rec`` says."""
    kind = rec.get("t")
    if kind == "H":
        return encode(Header.from_record(rec).to_record())
    if kind == "P":
        progress = decode_progress(rec)
        if progress.listed is not None:
            return encode(children_listed_record(progress.source, progress.listed))
        return encode(
            progress_record(
                progress.source, progress.found, done=progress.done, error=rec.get("error")
            )
        )
    if kind == "E":
        footer = decode_footer_object(rec)
        traffic = footer.traffic
        return encode(
            footer_record(
                footer.exit_code,
                rec["ts"],
                requests=traffic["requests"],
                retries=traffic["retries"],
                throttled=traffic["throttled"],
                loop=footer.loop,
            )
        )
    records = [_target(one, with_parent="c" in rec) for one in decode_targets(rec)]
    (line,) = group_records(records)
    return encode(line)


def _target(rec: TargetRecord, *, with_parent: bool) -> dict[str, Any]:
    return target_record(
        rec.target,
        rec.state,
        ts=rec.ts,
        operation=rec.operation,
        code=rec.code,
        message=rec.message,
        generation=rec.generation,
        with_parent=with_parent,
    )


def test_the_codec_writes_the_bytes_of_a_version_2_log() -> None:
    """Every line of the fixture log round-trips byte for byte."""
    (log,) = sorted(FIXTURE.glob("checkpoints/*.jsonl"))
    raw_lines = log.read_bytes().splitlines(keepends=True)
    assert decode_header(raw_lines[0]).job == "fixture"
    assert decode_footer(raw_lines[-1]) == 130
    assert decode_footer(raw_lines[1]) is None
    for raw in raw_lines:
        assert _again(orjson.loads(raw)) == raw
