"""The checkpoint log's reader and writer, over hand-made clean and damaged logs."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from runner.errors import CheckpointError
from runner.kinds.base import Target
from runner.kinds.registry import by_name
from runner.log.lock import open_log
from runner.log.records import (
    GROUP_MAX_IDS,
    RECORD_VERSION,
    Header,
    State,
    group_records,
    target_record,
)
from runner.log.replay import MAX_LINE, iter_target_lines, read_checkpoint
from runner.log.writer import CheckpointWriter
from runner.report.completion import render_csv, summarize

REPO = Path(__file__).resolve().parents[3]
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"

HEADER = Header(
    run_id="r20261122T060000Z",
    job="purge",
    fingerprint="f" * 64,
    frozen_now="2026-11-22T06:00:00+00:00",
    times={},
    spec_path="job.yaml",
    config_path=None,
    version="0.1.0",
    started="2026-11-22T06:00:00+00:00",
)


def sid(prefix: str, n: int) -> str:
    """A Twilio SID of real shape: ``prefix`` and 32 hex digits."""
    return f"{prefix}{n:032x}"


def ttid(prefix: str, n: int) -> str:
    """A v2-style ID of real shape: ``prefix`` and 26 lower-case base-36 characters, first 0-7."""
    digits = []
    for _ in range(25):
        n, rest = divmod(n, 36)
        digits.append(_BASE36[rest])
    return prefix + "0" + "".join(reversed(digits))


def message(n: int) -> Target:
    """The ``n``-th message target (its conversation is shared by 100 messages)."""
    return Target(by_name("message"), sid("IM", n), sid("CH", n // 100))


def conversation_v2(n: int) -> Target:
    """The ``n``-th v2 conversation target."""
    return Target(by_name("conversation_v2"), ttid("conv_conversation_", n))


def operation(n: int) -> str:
    """The ``n``-th v2 Operation id."""
    return ttid("proc_job_", n)


def requested(target: Target, generation: int = 0) -> dict[str, Any]:
    """A target's *requested* line; a deliberate retry of a failure is a later generation."""
    record = target_record(target, State.REQUESTED)
    if generation:
        record["g"] = generation
    return record


def line(record: dict[str, Any]) -> bytes:
    """One log line as the writer encodes it."""
    return orjson.dumps(record) + b"\n"


def log_bytes(*records: dict[str, Any], header: Header | None = HEADER) -> bytes:
    """A log: the header line (unless ``None``), then one line per record."""
    head = b"" if header is None else line(header.to_record())
    return head + b"".join(line(r) for r in records)


def write_log(
    path: Path, *records: dict[str, Any], tail: bytes = b"", header: Header | None = HEADER
) -> Path:
    """Write a hand-made log at ``path``, ending with the raw bytes ``tail``."""
    path.write_bytes(log_bytes(*records, header=header) + tail)
    return path


async def write_through_writer(
    path: Path, records: Iterable[dict[str, Any]], header: Header | None = HEADER
) -> CheckpointWriter:
    """Append ``records`` to ``path`` the way a run does: open_log, one writer task, put, close."""
    with open_log(path, header) as handle:
        writer = CheckpointWriter(path, HEADER.started_at)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(writer.run, handle)
                for record in records:
                    writer.put(record)
                writer.close()
        finally:
            writer.close()  # also when the writer failed
    return writer


M1, M2, M3 = message(1), message(2), message(3)
PARTICIPANT = Target(by_name("participant"), sid("MB", 7), sid("CH", 0))
CH_DELETED = Target(by_name("conversation_v1"), sid("CH", 10))
CH_FAILED = Target(by_name("conversation_v1"), sid("CH", 11))
V2_REQUESTED, V2_ACCEPTED, V2_DONE = conversation_v2(1), conversation_v2(2), conversation_v2(3)
CONFIGURATION = Target(by_name("configuration"), ttid("conv_configuration_", 5))
STORE = Target(by_name("memory_store"), ttid("mem_store_", 6))


def clean_log() -> list[dict[str, Any]]:
    """A log of a run that went through every state, with discovery progress and a footer."""
    return [
        {"t": "P", "src": 0, "n": 2},
        target_record(M1, State.DELETED, ts=1),
        target_record(M2, State.GONE, ts=2),
        target_record(M3, State.COVERED, ts=2),
        target_record(PARTICIPANT, State.FAILED, ts=3, code=50300, message="Service unavailable"),
        target_record(CH_DELETED, State.DELETED, ts=4),
        target_record(CH_FAILED, State.FAILED, ts=4, code=50432, message="nope"),
        target_record(V2_REQUESTED, State.REQUESTED),
        target_record(V2_ACCEPTED, State.REQUESTED),
        target_record(V2_ACCEPTED, State.ACCEPTED, ts=5, operation=operation(2)),
        target_record(V2_DONE, State.REQUESTED),
        target_record(V2_DONE, State.ACCEPTED, ts=5, operation=operation(3)),
        target_record(V2_DONE, State.DELETED, ts=9, operation=operation(3)),
        target_record(CONFIGURATION, State.REQUESTED),
        target_record(CONFIGURATION, State.GONE, ts=6),
        target_record(STORE, State.REQUESTED),
        target_record(STORE, State.ACCEPTED, ts=7, operation="mem_op_1"),
        {"t": "P", "src": 0, "n": 3, "done": True},
        {"t": "P", "src": 1, "n": 4},
        {"t": "E", "exit": 1, "ts": 12},
    ]


def test_clean_log_replays_every_latest_state(tmp_path: Path) -> None:
    """A clean log replays to each target's latest state, open/failed records, progress and exit."""
    replay = read_checkpoint(write_log(tmp_path / "run.jsonl", *clean_log()))

    assert replay.warnings == []
    assert replay.header == HEADER
    expected = {
        M1: State.DELETED,
        M2: State.GONE,
        M3: State.COVERED,
        PARTICIPANT: State.FAILED,
        CH_DELETED: State.DELETED,
        CH_FAILED: State.FAILED,
        V2_REQUESTED: State.REQUESTED,
        V2_ACCEPTED: State.ACCEPTED,
        V2_DONE: State.DELETED,
        CONFIGURATION: State.GONE,
        STORE: State.ACCEPTED,
    }
    assert {t: replay.state_of(t) for t in expected} == expected
    assert replay.counts() == Counter((t.kind, s) for t, s in expected.items())
    assert sorted((r.target.id, r.state, r.operation) for r in replay.open.values()) == sorted(
        [
            (V2_REQUESTED.id, State.REQUESTED, None),
            (V2_ACCEPTED.id, State.ACCEPTED, operation(2)),
            (STORE.id, State.ACCEPTED, "mem_op_1"),
        ]
    )
    failed = {r.target: (r.code, r.message) for r in replay.failed.values()}
    assert failed == {PARTICIPANT: (50300, "Service unavailable"), CH_FAILED: (50432, "nope")}
    assert replay.deleted_conversations == {CH_DELETED.id}
    assert replay.discovered == {0: 3, 1: 4}
    assert replay.discovery_done == {0}
    assert replay.exit_code == 1
    assert replay.last_ts == 9
    assert replay.lines == len(clean_log()) + 1


def test_target_absent_from_the_log_has_no_state(tmp_path: Path) -> None:
    """A target the log never names has no state, and a log without a footer has no exit code."""
    replay = read_checkpoint(write_log(tmp_path / "run.jsonl", target_record(M1, State.DELETED)))
    assert replay.state_of(M2) is None
    assert replay.state_of(Target(by_name("participant"), M1.id, M1.parent)) is None
    assert replay.exit_code is None


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(1, id="after-brace"),
        pytest.param(12, id="mid-key"),
        pytest.param(40, id="mid-id"),
        pytest.param(-1, id="before-closing-brace"),
    ],
)
def test_torn_last_line_is_ignored_with_a_warning(tmp_path: Path, cut: int) -> None:
    """A last line cut mid-JSON (no newline) is ignored with a warning naming its line."""
    torn = orjson.dumps(target_record(M2, State.DELETED, ts=3))[:cut]
    path = write_log(tmp_path / "run.jsonl", target_record(M1, State.DELETED, ts=1), tail=torn)

    replay = read_checkpoint(path)

    assert replay.state_of(M1) is State.DELETED
    assert replay.state_of(M2) is None
    assert len(replay.warnings) == 1
    assert replay.warnings[0].startswith("line 3: torn or partial last line ignored")


def test_torn_last_line_keeps_the_targets_previous_state(tmp_path: Path) -> None:
    """A torn final line about an accepted target leaves it accepted, with its Operation."""
    torn = orjson.dumps(target_record(V2_DONE, State.DELETED, ts=9, operation=operation(3)))[:-5]
    path = write_log(
        tmp_path / "run.jsonl",
        target_record(V2_DONE, State.REQUESTED),
        target_record(V2_DONE, State.ACCEPTED, ts=5, operation=operation(3)),
        tail=torn,
    )

    replay = read_checkpoint(path)

    assert replay.state_of(V2_DONE) is State.ACCEPTED
    assert [r.operation for r in replay.open.values()] == [operation(3)]
    assert replay.warnings and replay.warnings[0].startswith("line 4:")


def test_complete_last_line_without_newline_counts(tmp_path: Path) -> None:
    """A last line that is whole but lacks its newline is a record, not damage."""
    path = write_log(tmp_path / "run.jsonl", tail=orjson.dumps(target_record(M1, State.DELETED)))
    replay = read_checkpoint(path)
    assert replay.state_of(M1) is State.DELETED
    assert replay.warnings == []


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="zero-length"),
        pytest.param(b"\n", id="one-newline"),
        pytest.param(b"  \n\n\t\n   ", id="whitespace-only"),
        pytest.param(line(HEADER.to_record())[:30], id="torn-header"),
    ],
)
def test_log_without_a_header_is_refused(tmp_path: Path, content: bytes) -> None:
    """An empty, blank or header-torn log is refused: the header is missing."""
    path = tmp_path / "run.jsonl"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="has no header line"):
        read_checkpoint(path)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    """A checkpoint path that does not exist is a CheckpointError, not a FileNotFoundError."""
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.jsonl")


@pytest.mark.parametrize(
    "tail",
    [
        pytest.param(b"\0" * 4096, id="nul-bytes"),
        pytest.param(b"\0" * 100 + b"\n", id="nul-line"),
        pytest.param(b'{"s":"D","k":"m","id":"IM00', id="half-a-record"),
        pytest.param(b"\xff\xfe\x00garbage", id="binary"),
        pytest.param(b'{"s":"D","k":"m","id":"IM00\n   \n\n', id="half-a-record-then-blanks"),
        pytest.param(b"[1, 2, 3]\n", id="not-an-object"),
    ],
)
def test_trailing_garbage_is_a_warning_not_an_error(tmp_path: Path, tail: bytes) -> None:
    """Garbage after the last good line (zero-fill, half a record) is reported and ignored."""
    path = write_log(
        tmp_path / "run.jsonl",
        target_record(M1, State.DELETED, ts=1),
        {"t": "E", "exit": 0, "ts": 2},
        tail=tail,
    )

    replay = read_checkpoint(path)

    assert replay.state_of(M1) is State.DELETED
    assert replay.exit_code == 0
    assert len(replay.warnings) == 1
    assert replay.warnings[0].startswith("line 4:")


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(b"}{ not json", id="garbage"),
        pytest.param(b"\0" * 64, id="nul-bytes"),
        pytest.param(b'{"s":"D","k":"m","id":"IM00{"s":"Q","k":"c2","id":"x"}', id="spliced"),
        pytest.param(b'{"s":"X","k":"m","id":"IM00"}', id="unknown-state"),
        pytest.param(b'{"s":"D","k":"zz","id":"IM00"}', id="unknown-kind"),
        pytest.param(b'{"s":"D","k":"m"}', id="no-id"),
        pytest.param(b'"a string"', id="not-an-object"),
        pytest.param(b'{"t":"P","n":3}', id="progress-without-source"),
    ],
)
def test_corrupt_middle_line_is_refused_with_its_number(tmp_path: Path, bad: bytes) -> None:
    """Damage before the last line is refused, naming the line, since skipping could lose state."""
    path = tmp_path / "run.jsonl"
    path.write_bytes(
        log_bytes(target_record(M1, State.DELETED))
        + bad
        + b"\n"
        + log_bytes(target_record(M2, State.DELETED), header=None)
    )
    with pytest.raises(CheckpointError, match="is corrupt at line 3"):
        read_checkpoint(path)


def test_blank_lines_do_not_shift_line_numbers(tmp_path: Path) -> None:
    """Line numbers in errors count blank lines too, so they match an editor's."""
    path = tmp_path / "run.jsonl"
    path.write_bytes(
        log_bytes(target_record(M1, State.DELETED)) + b"\n\n}{\n" + line({"t": "E", "exit": 0})
    )
    with pytest.raises(CheckpointError, match="at line 5"):
        read_checkpoint(path)


def test_unknown_record_version_is_refused(tmp_path: Path) -> None:
    """A header of another record version is refused, naming that version."""
    header = {**HEADER.to_record(), "v": 99}
    path = tmp_path / "run.jsonl"
    path.write_bytes(line(header) + line(target_record(M1, State.DELETED)))
    with pytest.raises(
        CheckpointError, match=f"record version 99; this bulkops reads version {RECORD_VERSION}"
    ):
        read_checkpoint(path)


def test_unknown_record_version_alone_is_refused(tmp_path: Path) -> None:
    """A header-only log of another version is refused too, not mistaken for a torn line."""
    path = tmp_path / "run.jsonl"
    path.write_bytes(line({**HEADER.to_record(), "v": 99}))
    with pytest.raises(CheckpointError, match="record version 99"):
        read_checkpoint(path)


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(target_record(M1, State.DELETED), id="target-record"),
        pytest.param({"t": "E", "exit": 0}, id="footer"),
    ],
)
def test_log_that_does_not_start_with_a_header_is_refused(
    tmp_path: Path, first: dict[str, Any]
) -> None:
    """A log whose first line is not a header is refused."""
    path = write_log(tmp_path / "run.jsonl", first, target_record(M2, State.DELETED), header=None)
    with pytest.raises(CheckpointError, match="does not start with a header line"):
        read_checkpoint(path)


def test_header_with_missing_fields_is_refused(tmp_path: Path) -> None:
    """A header line lacking the job fingerprint is corrupt at line 1."""
    record = HEADER.to_record()
    del record["fp"]
    path = tmp_path / "run.jsonl"
    path.write_bytes(line(record) + line(target_record(M1, State.DELETED)))
    with pytest.raises(CheckpointError, match="corrupt at line 1"):
        read_checkpoint(path)


def test_second_header_in_the_middle_is_refused(tmp_path: Path) -> None:
    """A second header line (two logs concatenated) is refused with its line number."""
    path = write_log(
        tmp_path / "run.jsonl",
        target_record(M1, State.DELETED),
        HEADER.to_record(),
        target_record(M2, State.DELETED),
    )
    with pytest.raises(CheckpointError, match="at line 3: a second header line"):
        read_checkpoint(path)


def test_unknown_record_type_is_refused(tmp_path: Path) -> None:
    """A record of an unknown type in the middle is refused, naming the type."""
    path = write_log(tmp_path / "run.jsonl", {"t": "Z", "x": 1}, target_record(M1, State.DELETED))
    with pytest.raises(CheckpointError, match="at line 2: unknown record type 'Z'"):
        read_checkpoint(path)


def test_accepted_then_deleted_replays_to_deleted_with_its_operation(tmp_path: Path) -> None:
    """Q → A → D replays to deleted, not open, and the report keeps the Operation id."""
    path = write_log(
        tmp_path / "run.jsonl",
        target_record(V2_DONE, State.REQUESTED),
        target_record(V2_DONE, State.ACCEPTED, ts=1, operation=operation(3)),
        target_record(V2_DONE, State.DELETED, ts=2, operation=operation(3)),
    )
    replay = read_checkpoint(path)

    assert replay.state_of(V2_DONE) is State.DELETED
    assert replay.open == {}
    assert replay.failed == {}
    (row,) = csv.DictReader(io.StringIO(render_csv(replay)))
    assert (row["id"], row["outcome"], row["operation_id"]) == (
        V2_DONE.id,
        "deleted",
        operation(3),
    )


def test_failure_after_acceptance_keeps_the_operation(tmp_path: Path) -> None:
    """A → F where the failed line omits the Operation still carries it in ``failed``."""
    path = write_log(
        tmp_path / "run.jsonl",
        target_record(V2_DONE, State.ACCEPTED, ts=1, operation=operation(3)),
        target_record(V2_DONE, State.FAILED, ts=2, code=20409, message="gave up"),
    )
    replay = read_checkpoint(path)
    (failed,) = replay.failed.values()
    assert (failed.state, failed.operation, failed.code) == (State.FAILED, operation(3), 20409)
    assert replay.open == {}


@pytest.mark.parametrize(
    "final",
    [
        pytest.param(State.DELETED, id="deleted"),
        pytest.param(State.GONE, id="gone"),
        pytest.param(State.GONE_AFTER_REQUEST, id="gone-after-request"),
    ],
)
def test_retried_failure_is_no_longer_failed(tmp_path: Path, final: State) -> None:
    """F then D (or G, or R) — a retry — replays to the retry's outcome and leaves ``failed``;
    a v1 conversation in any of them covers its children."""
    path = write_log(
        tmp_path / "run.jsonl",
        target_record(CH_FAILED, State.FAILED, ts=1, code=50300, message="down"),
        target_record(CH_FAILED, final, ts=2),
    )
    replay = read_checkpoint(path)
    assert replay.state_of(CH_FAILED) is final
    assert replay.failed == {}
    assert replay.deleted_conversations == {CH_FAILED.id}


def test_accepted_alone_is_open_with_its_operation(tmp_path: Path) -> None:
    """A target whose last line is A is open, with the Operation a resume must poll."""
    path = write_log(
        tmp_path / "run.jsonl",
        target_record(STORE, State.ACCEPTED, ts=1, operation="mem_op_9"),
    )
    replay = read_checkpoint(path)
    (rec,) = replay.open.values()
    assert (rec.target, rec.state, rec.operation) == (STORE, State.ACCEPTED, "mem_op_9")
    assert replay.counts() == Counter({(by_name("memory_store"), State.ACCEPTED): 1})


def test_conversation_deleted_then_failed_is_not_deleted(tmp_path: Path) -> None:
    """A v1 conversation whose latest line is not deleted/gone leaves deleted_conversations."""
    path = write_log(
        tmp_path / "run.jsonl",
        target_record(CH_DELETED, State.DELETED, ts=1),
        target_record(CH_DELETED, State.FAILED, ts=2, code=500, message="x"),
    )
    assert read_checkpoint(path).deleted_conversations == set()


def test_garbled_last_line_records_nothing(tmp_path: Path) -> None:
    """A last line rejected as garbled (a non-numeric ts) leaves its target unrecorded."""
    garbled = {**target_record(M2, State.DELETED), "ts": "soon"}
    path = write_log(tmp_path / "run.jsonl", target_record(M1, State.DELETED, ts=1), garbled)

    replay = read_checkpoint(path)

    assert len(replay.warnings) == 1
    assert replay.state_of(M2) is None


async def test_writer_writes_every_record_in_order(tmp_path: Path) -> None:
    """Records put through the writer all reach the file, in order, after close()."""
    path = tmp_path / "run.jsonl"
    targets = [message(n) for n in range(6000)]
    records = [target_record(t, State.DELETED, ts=n // 100) for n, t in enumerate(targets)]
    records.insert(3000, {"t": "P", "src": 0, "n": 3000})
    records.append({"t": "E", "exit": 0, "ts": 60})

    writer = await write_through_writer(path, records)

    assert orjson.loads(path.read_bytes().split(b"\n", 1)[0]) == HEADER.to_record()
    logged = [(r.target, r.state, r.ts) for r in iter_target_lines(path)]
    assert logged == [(t, State.DELETED, n // 100) for n, t in enumerate(targets)]
    assert 1 <= writer.syncs <= writer.lines_written <= len(records)
    replay = read_checkpoint(path)
    assert replay.counts() == Counter({(by_name("message"), State.DELETED): 6000})
    assert (replay.discovered, replay.exit_code) == ({0: 3000}, 0)


async def test_writer_appends_to_a_resumed_log(tmp_path: Path) -> None:
    """Opening an existing log without a header appends after its last line."""
    path = tmp_path / "run.jsonl"
    await write_through_writer(path, [target_record(M1, State.DELETED)])
    await write_through_writer(path, [target_record(M2, State.DELETED)], header=None)

    replay = read_checkpoint(path)

    assert (replay.state_of(M1), replay.state_of(M2)) == (State.DELETED, State.DELETED)
    assert replay.lines == 3


async def test_resuming_after_a_torn_tail_leaves_a_readable_log(tmp_path: Path) -> None:
    """After a resume appends to a log with a torn tail, the log still replays."""
    torn = orjson.dumps(target_record(M2, State.DELETED, ts=2))[:20]
    path = write_log(tmp_path / "run.jsonl", target_record(M1, State.DELETED, ts=1), tail=torn)
    assert read_checkpoint(path).warnings  # the torn tail: the run resumes from here

    resumed = [target_record(M2, State.DELETED, ts=3), target_record(M3, State.DELETED, ts=3)]
    await write_through_writer(path, resumed, header=None)

    replay = read_checkpoint(path)  # actual: CheckpointError "is corrupt at line 3"
    assert (replay.state_of(M2), replay.state_of(M3)) == (State.DELETED, State.DELETED)


@pytest.mark.parametrize("tail", [b'{"s":"D","k":"m","id":"IM', b"\x00\xff garbage\n"])
def test_a_resume_cuts_the_damaged_last_line_it_ignored(tmp_path: Path, tail: bytes) -> None:
    """A damaged last line (torn, or whole but garbled) is cut before appending, so the log
    replays afterwards, with the resumed run's records applied to the same replay."""
    path = write_log(tmp_path / "run.jsonl", requested(M1), requested(M2), tail=tail)
    replay = read_checkpoint(path)
    assert replay.warnings and replay.size == len(log_bytes(requested(M1), requested(M2)))

    with open_log(path, None, replayed=replay.size) as handle:
        handle.write(line(target_record(M1, State.DELETED, ts=3, with_parent=False)))
    caught_up = read_checkpoint(path, into=replay)
    assert caught_up is replay and replay.state_of(M1) is State.DELETED
    assert [r.target for r in replay.open.values()] == [M2]
    fresh = read_checkpoint(path)
    assert fresh.warnings == [] and fresh.states == replay.states


def test_a_resume_refuses_a_log_that_grew_after_it_was_read(tmp_path: Path) -> None:
    """Whole records beyond what the replay read are never cut off: the resume is refused."""
    path = write_log(tmp_path / "run.jsonl", requested(M1))
    replay = read_checkpoint(path)
    with path.open("ab") as f:
        f.write(line(target_record(M1, State.DELETED, ts=3)))
    with (
        pytest.raises(CheckpointError, match="grew after it was read"),
        open_log(path, None, replayed=replay.size),
    ):
        pass
    assert read_checkpoint(path).state_of(M1) is State.DELETED


async def test_writer_survives_an_error_message_it_cannot_encode(tmp_path: Path) -> None:
    """A remote error message holding a lone surrogate is still logged, and so is what follows."""
    path = tmp_path / "run.jsonl"
    odd = json.loads('"bad \\ud800 request"')  # as runner.wire.client decodes an error body
    records = [
        target_record(M1, State.FAILED, ts=1, code=400, message=odd),
        target_record(M2, State.DELETED, ts=1),
    ]

    await write_through_writer(path, records)  # actual: ExceptionGroup(TypeError) from run()

    replay = read_checkpoint(path)
    assert (replay.state_of(M1), replay.state_of(M2)) == (State.FAILED, State.DELETED)


async def test_new_log_is_created_private(tmp_path: Path) -> None:
    """A new log is created with mode 0600: it lists IDs."""
    path = tmp_path / "sub" / "run.jsonl"
    await write_through_writer(path, [])
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert read_checkpoint(path).header == HEADER


def test_new_log_over_an_existing_one_is_refused(tmp_path: Path) -> None:
    """open_log with a header on an existing path refuses instead of overwriting it."""
    path = write_log(tmp_path / "run.jsonl", target_record(M1, State.DELETED))
    before = path.read_bytes()
    with (
        pytest.raises(CheckpointError, match="already exists; use `bulkops resume`"),
        open_log(path, HEADER),
    ):
        pass
    assert path.read_bytes() == before


_TRY_LOCK = """
import sys
from pathlib import Path
from runner.log.lock import open_log
from runner.errors import CheckpointError
try:
    with open_log(Path(sys.argv[1]), None):
        pass
except CheckpointError as exc:
    print(exc)
    sys.exit(3)
"""


def try_lock_elsewhere(path: Path) -> subprocess.CompletedProcess[str]:
    """Try to open ``path`` for appending from a second process (flock is per open file)."""
    return subprocess.run(
        [sys.executable, "-c", _TRY_LOCK, str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
        check=False,
    )


def test_second_process_cannot_drive_a_held_log(tmp_path: Path) -> None:
    """While one process holds a log, another's open_log fails naming another process."""
    path = write_log(tmp_path / "run.jsonl", target_record(M1, State.DELETED))
    with open_log(path, None):
        held = try_lock_elsewhere(path)
    released = try_lock_elsewhere(path)

    assert held.returncode == 3, held.stderr
    assert "in use by another bulkops process" in held.stdout
    assert released.returncode == 0, released.stdout + released.stderr


def report_rows(replay_path: Path) -> list[dict[str, str]]:
    """The completion report of the log at ``replay_path``, as CSV rows."""
    return list(csv.DictReader(io.StringIO(render_csv(read_checkpoint(replay_path)))))


def test_gone_after_request_replays_grouped_and_reads_as_its_own_outcome(tmp_path: Path) -> None:
    """R lines (grouped or not) are final and their own outcome in the rows and the summary;
    the targets of a later process are not driven again."""
    path = write_log(
        tmp_path / "run.jsonl",
        requested(M1),
        requested(M2),
        requested(M3),
        # killed; the resume re-sent all three: two read 404, one was still there
        *group_records(
            [
                target_record(M1, State.GONE_AFTER_REQUEST, ts=5, with_parent=False),
                target_record(M2, State.GONE_AFTER_REQUEST, ts=5, with_parent=False),
                target_record(M3, State.DELETED, ts=5, with_parent=False),
            ]
        ),
    )
    lines = [json.loads(raw) for raw in path.read_text().splitlines()]
    assert [len(line["ids"]) for line in lines if line.get("s") == "R"] == [2]
    replay = read_checkpoint(path)
    assert replay.open == {} and replay.state_of(M1) is State.GONE_AFTER_REQUEST
    outcomes = {r["id"]: r["outcome"] for r in report_rows(path)}
    assert outcomes == {M1.id: "gone_after_request", M2.id: "gone_after_request", M3.id: "deleted"}
    assert summarize(replay).totals == Counter({"gone_after_request": 2, "deleted": 1})


def test_report_lists_a_retried_failure_once(tmp_path: Path) -> None:
    """The completion report lists each target once, a retried failure with its final outcome."""
    path = write_log(
        tmp_path / "run.jsonl",
        requested(M1),
        requested(M2),
        requested(CH_FAILED),
        target_record(M1, State.FAILED, ts=1, code=50300, message="down"),
        target_record(M2, State.DELETED, ts=1),
        requested(V2_DONE),
        target_record(V2_DONE, State.FAILED, ts=2, code=500, message="gave up: HTTP 500"),
        target_record(CH_FAILED, State.FAILED, ts=2, code=50432, message="nope"),
        {"t": "E", "exit": 1, "ts": 3},
        # the resume with --retry-failed: each failure is requested again, one generation on
        requested(M1, 1),
        target_record(M1, State.DELETED, ts=10),
        requested(V2_DONE, 1),
        target_record(V2_DONE, State.ACCEPTED, ts=11, operation=operation(3)),
        target_record(V2_DONE, State.DELETED, ts=12, operation=operation(3)),
        requested(CH_FAILED, 1),
        target_record(CH_FAILED, State.FAILED, ts=12, code=50432, message="still nope"),
        {"t": "E", "exit": 1, "ts": 13},
    )
    rows = report_rows(path)

    outcomes = {r["id"]: (r["outcome"], r["operation_id"], r["error"]) for r in rows}
    assert len(rows) == len(outcomes) == 4
    assert outcomes == {
        M1.id: ("deleted", "", ""),
        M2.id: ("deleted", "", ""),
        V2_DONE.id: ("deleted", operation(3), ""),
        CH_FAILED.id: ("failed", "", "still nope"),
    }
    assert next(r for r in rows if r["id"] == M1.id)["time"] == "2026-11-22T06:00:10Z"
    totals = summarize(read_checkpoint(path)).totals
    assert totals == Counter({"deleted": 3, "failed": 1})


def test_report_lists_targets_logged_only_by_their_final_line(tmp_path: Path) -> None:
    """A target whose only line is its final one (sync kinds, as 0610c85 logs them) is reported."""
    path = write_log(
        tmp_path / "run.jsonl",
        target_record(M1, State.DELETED, ts=1),
        target_record(CH_DELETED, State.GONE, ts=2),
        target_record(PARTICIPANT, State.FAILED, ts=2, code=50300, message="down"),
    )
    outcomes = {r["id"]: r["outcome"] for r in report_rows(path)}
    assert outcomes == {M1.id: "deleted", CH_DELETED.id: "gone", PARTICIPANT.id: "failed"}


def test_each_target_has_one_row_whatever_lines_it_has(tmp_path: Path) -> None:
    """A target failed and then deleted by its final lines alone, one requested first and one
    covered: one row each, and a log of today's writer (a request before every end) leaves
    no target to the final-line path."""
    modern = read_checkpoint(
        write_log(tmp_path / "new.jsonl", requested(M1), target_record(M1, State.DELETED, ts=1))
    )
    assert modern.unrequested == set()
    path = write_log(
        tmp_path / "run.jsonl",
        target_record(PARTICIPANT, State.FAILED, ts=1, code=50300, message="down"),
        requested(M1),
        target_record(M1, State.DELETED, ts=2),
        target_record(PARTICIPANT, State.DELETED, ts=3),
    )
    rows = report_rows(path)
    assert sorted((r["id"], r["outcome"]) for r in rows) == sorted(
        [(M1.id, "deleted"), (PARTICIPANT.id, "deleted")]
    )


def test_report_survives_a_carriage_return_in_an_error(tmp_path: Path) -> None:
    """A bare CR in an error message (it comes from the remote side) keeps the report valid CSV."""
    path = write_log(
        tmp_path / "run.jsonl",
        requested(M1),
        target_record(M1, State.FAILED, ts=1, code=502, message="gave up: Bad\rGateway"),
    )
    (row,) = report_rows(path)  # actual: _csv.Error: new-line character seen in unquoted field
    assert row["error"] == "gave up: Bad\rGateway"


def size_budget_records() -> Sequence[dict[str, Any]]:
    """10,000 messages written as their final line, 1,000 v2 conversations as Q, A and D."""
    records: list[dict[str, Any]] = [
        target_record(message(n), State.DELETED, ts=3600 + n // 10) for n in range(10_000)
    ]
    for n in range(1_000):
        target = conversation_v2(n)
        op = operation(10**6 + n)
        records.append(target_record(target, State.REQUESTED))
        records.append(target_record(target, State.ACCEPTED, ts=4600 + n, operation=op))
        records.append(target_record(target, State.DELETED, ts=4700 + n, operation=op))
    return records


def test_log_stays_within_the_size_budget(tmp_path: Path) -> None:
    """Averaged over messages and v2 conversations, the log takes at most 150 bytes a target."""
    path = write_log(tmp_path / "run.jsonl", *size_budget_records())

    per_target = path.stat().st_size / 11_000

    assert per_target <= 150, f"{per_target:.1f} bytes per target"
    assert sum(read_checkpoint(path).counts().values()) == 11_000


def test_a_batch_groups_lines_that_are_not_adjacent() -> None:
    """Deletions finished in the same second group into one line even when requested lines of
    other conversations sit between them."""
    other = Target(by_name("message"), sid("IM", 9), sid("CH", 5))
    records = [
        target_record(M1, State.DELETED, ts=4, with_parent=False),
        requested(other),
        target_record(M2, State.DELETED, ts=4, with_parent=False),
        target_record(PARTICIPANT, State.DELETED, ts=4, with_parent=False),
        target_record(M3, State.DELETED, ts=4, with_parent=False),
    ]
    lines = group_records(records)
    assert lines == [
        {"s": "D", "k": "m", "ts": 4, "ids": [M1.id, M2.id, M3.id]},
        requested(other),
        target_record(PARTICIPANT, State.DELETED, ts=4, with_parent=False),
    ]


def test_a_batch_naming_one_target_twice_keeps_its_order() -> None:
    """Moving a later line of a target ahead of an earlier one would change its last state."""
    records = [
        target_record(M1, State.FAILED, ts=2, with_parent=False),
        requested(M2),
        target_record(M3, State.FAILED, ts=2, with_parent=False),
        target_record(M2, State.DELETED, ts=2, with_parent=False),
        target_record(M1, State.DELETED, ts=2, with_parent=False),
    ]
    assert [len(r.get("ids", [r.get("id")])) for r in group_records(records)] == [1, 1, 1, 2]
    assert group_records(records)[-1]["ids"] == [M2.id, M1.id]


def test_later_lines_without_the_conversation_take_it_from_the_requested_line(
    tmp_path: Path,
) -> None:
    """A failed message keeps its conversation (needed to build its DELETE path on a retry)."""
    log = write_log(
        tmp_path / "log.jsonl",
        requested(M1),
        requested(M2),
        target_record(M1, State.FAILED, ts=3, code=20003, message="no", with_parent=False),
        target_record(M2, State.ACCEPTED, ts=3, operation="op", with_parent=False),
    )
    replay = read_checkpoint(log)
    (failed,) = replay.failed.values()
    (pending,) = replay.open.values()
    assert failed.target == M1 and failed.target.parent == M1.parent
    assert pending.target == M2 and pending.operation == "op"


def test_a_compact_replay_reports_exactly_what_a_dict_replay_does(tmp_path: Path) -> None:
    """The big-run report's compact state map gives the same counts, states and report rows."""
    from runner.report.completion import render_json

    records: list[dict[str, Any]] = []
    outcomes = [State.DELETED, State.GONE, State.FAILED, State.DELETED]
    for batch in range(6):  # pages of requested lines, then their outcomes grouped per second
        page = [message(batch * 50 + n) for n in range(50)]
        records += group_records([requested(t) for t in page])
        finished = []
        for n, t in enumerate(page[:45]):  # five of each page are left requested
            state = outcomes[(batch + n) % 4]
            failed = state is State.FAILED
            finished.append(
                target_record(
                    t,
                    state,
                    ts=batch,
                    with_parent=False,
                    code=20404 if failed else None,
                    message="refused" if failed else None,
                )
            )
        records += group_records(finished)
    records.append(requested(V2_ACCEPTED))
    records.append(
        target_record(V2_ACCEPTED, State.ACCEPTED, ts=7, operation=operation(2), with_parent=False)
    )
    path = write_log(tmp_path / "big.jsonl", *records)
    plain = read_checkpoint(path)
    compact = read_checkpoint(path, compact_for=10)  # too small on purpose: it must grow
    assert compact.counts() == plain.counts() and sum(plain.counts().values()) == 301
    for target in [message(n) for n in range(300)] + [V2_ACCEPTED]:
        assert compact.state_of(target) == plain.state_of(target)
    assert render_csv(compact) == render_csv(plain)
    assert render_json(compact) == render_json(plain)
    assert len(plain.open) == len(compact.open) == 31 and len(plain.failed) == 67


def test_a_line_longer_than_any_bulkops_writes_is_refused_not_read_whole(tmp_path: Path) -> None:
    """A log is untrusted: a line with no newline for 64 MiB stops the replay with its number
    instead of being read into memory however long it is."""
    path = tmp_path / "run.jsonl"
    with path.open("wb") as out:
        out.write(log_bytes(target_record(M1, State.DELETED)))
        out.write(b"x" * (MAX_LINE + 1))
    with pytest.raises(CheckpointError, match="line 3 is longer than 67,108,864 bytes"):
        read_checkpoint(path)


def test_grouped_lines_hold_at_most_group_max_ids_and_replay() -> None:
    """However many deletions one batch holds, a line names at most GROUP_MAX_IDS of them, so
    it stays far below what a replay reads as one line."""
    count = 2 * GROUP_MAX_IDS + 1
    records = [{"s": "D", "k": "m", "id": f"IM{n:032x}", "ts": 4} for n in range(count)]
    lines = group_records(records)
    assert [len(r.get("ids", [r.get("id")])) for r in lines] == [GROUP_MAX_IDS, GROUP_MAX_IDS, 1]
    assert max(len(orjson.dumps(r)) for r in lines) < MAX_LINE // 10
