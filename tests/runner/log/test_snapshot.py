"""Resume snapshots (runner/log/snapshot.py): a snapshot and the log's tail replay to what the
whole log does, and a snapshot that does not match its log is ignored with a warning."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

from runner.kinds.base import Target
from runner.kinds.registry import KINDS
from runner.log.digests import DigestMap, SortedDigests
from runner.log.records import State, encode, group_records, target_record
from runner.log.replay import Replay, read_checkpoint
from runner.log.snapshot import (
    MAGIC,
    TAIL,
    load_snapshot,
    replay_log,
    snapshot_path,
    snapshot_prefix,
    write_snapshot,
)
from tests.runner.log.test_checkpoint import HEADER, clean_log, line, message, write_log
from tests.runner.log.test_checkpoint_property import ANY_TARGET, OPERATIONS, examples


def facts(replay: Replay) -> dict[str, Any]:
    """Everything a replay says, in comparable form (whatever map holds its states)."""
    return {
        "header": replay.header,
        "states": dict(replay.states.items()),
        "open": replay.open,
        "failed": replay.failed,
        "operations": replay.operations,
        "deleted_conversations": replay.deleted_conversations,
        "discovered": replay.discovered,
        "discovery_done": replay.discovery_done,
        "children_listed": replay.children_listed,
        "unrequested": replay.unrequested,
        "services_listed": replay.services_listed,
        "services": replay.services,
        "requests": replay.requests,
        "services_rejected": replay.services_rejected,
        "requests_found": replay.requests_found,
        "pace": replay.pace,
        "loop": replay.loop,
        "exit_code": replay.exit_code,
        "traffic": replay.traffic,
        "lines": replay.lines,
        "size": replay.size,
        "last_ts": replay.last_ts,
        "active_seconds": replay.active_seconds,
        "session_start": replay.session_start,
        "counts": replay.counts(),
        "admitted": replay.admitted(),
    }


def tail_records() -> list[dict[str, Any]]:
    """Lines a later process appends: new targets, and later states of the snapshot's."""
    return [
        target_record(message(20), State.REQUESTED),
        target_record(message(20), State.DELETED, ts=30, with_parent=False),
        target_record(message(21), State.REQUESTED),
        {"t": "P", "src": 1, "n": 9, "done": True},
        {"t": "E", "exit": 0, "ts": 31, "requests": 3},
    ]


def snapshotted(tmp_path: Path) -> Path:
    """A log of every state with its snapshot, and lines appended after the snapshot."""
    log = write_log(tmp_path / "run.jsonl", *clean_log())
    write_snapshot(read_checkpoint(log))
    with log.open("ab") as out:
        out.write(b"".join(line(r) for r in tail_records()))
    return log


def test_snapshot_and_tail_replay_as_the_whole_log(tmp_path: Path) -> None:
    log = snapshotted(tmp_path)
    replay = replay_log(log)
    assert replay.warnings == []
    assert isinstance(replay.states, SortedDigests), "the snapshot was not used"
    assert replay.states.extra == 2, "only the tail's new targets are beside the arrays"
    assert facts(replay) == facts(read_checkpoint(log))


def test_the_snapshot_of_a_resumed_replay_merges_its_new_targets(tmp_path: Path) -> None:
    log = snapshotted(tmp_path)
    replay = replay_log(log)
    replay.states[next(iter(replay.states.items()))[0]] = 1 << 40  # a ts past 32 bits too
    write_snapshot(replay)
    again = replay_log(log)
    assert again.warnings == [] and again.states.extra == 0  # type: ignore[union-attr]
    assert facts(again) == facts(replay)


def test_a_compact_replay_is_snapshotted_in_its_own_memory(tmp_path: Path) -> None:
    """A big run's end writes the snapshot from a compact replay (a DigestMap): its states
    become the snapshot's sorted arrays in place and stay the replay's, saying the same; the
    snapshot replays as the log does."""
    log = write_log(tmp_path / "run.jsonl", *clean_log())
    with log.open("ab") as out:
        out.write(b"".join(line(r) for r in tail_records()))
    whole = facts(read_checkpoint(log))
    compact = read_checkpoint(log, compact_for=4)
    assert isinstance(compact.states, DigestMap) and facts(compact) == whole
    write_snapshot(compact)
    assert isinstance(compact.states, SortedDigests) and compact.states.extra == 0
    assert facts(compact) == whole
    again = replay_log(log)
    assert again.warnings == [] and isinstance(again.states, SortedDigests)
    assert facts(again) == whole


SERVICE = "IS" + "a" * 32


def test_what_the_services_requests_pace_and_footer_lines_say_survives_a_snapshot(
    tmp_path: Path,
) -> None:
    """The frozen Services' rejections, each erasure request's finds, the pace and the
    replay's warnings are the log's whether read from a snapshot or from every line (a resume
    from a snapshot would otherwise report a request found nowhere, or pace cold)."""
    before = [
        {"t": "S", "sv": [SERVICE], "rj": 2},
        {"t": "F", "src": 0, "r": "targets[0].from_file line 1", "n": 3, "sv": SERVICE},
        {"t": "F", "src": 0, "r": "targets[1]", "n": 0},
        {"t": "L", "ts": 4, "p": {"conversations": 12.5}, "cap": 7},
        {"t": "L", "ts": 5, "p": {"nowhere": 1.0}},  # ignored with a warning
        {"t": "E", "exit": 130, "ts": 5, "loop": "uvloop"},  # a process stopped, then resumed
    ]
    log = write_log(tmp_path / "run.jsonl", *before, *clean_log())
    write_snapshot(read_checkpoint(log))
    with log.open("ab") as out:
        out.write(b"".join(line(r) for r in tail_records()))
    replay, whole = replay_log(log), read_checkpoint(log)
    assert isinstance(replay.states, SortedDigests), "the snapshot was not used"
    assert replay.services_rejected == 2
    assert replay.requests_found == {
        ("targets[0].from_file line 1", SERVICE): 3,
        ("targets[1]", None): 0,
    }
    assert replay.pace is not None and replay.pace.in_flight == 7
    assert replay.loop == "uvloop"
    assert facts(replay) == facts(whole)
    assert replay.warnings == whole.warnings != []


@pytest.mark.parametrize(
    "change",
    [
        {"services_rejected": -1},
        {"requests_found": [["targets[0]/../x", None, 1]]},
        {"requests_found": [["targets[0].from_file line 1", "IS-nope", 1]]},
        {"pace": {"t": "L", "ts": 1, "p": {"conversations": "fast"}}},
        {"warnings": "not a list"},
        {"loop": "tokio"},
    ],
)
def test_a_bad_small_table_is_ignored(tmp_path: Path, change: dict[str, Any]) -> None:
    log = snapshotted(tmp_path)
    snap = snapshot_path(log)
    data = snap.read_bytes()
    start = len(MAGIC) + 8
    size = int.from_bytes(data[len(MAGIC) : start], "little")
    meta = orjson.loads(data[start : start + size])
    meta["replay"] |= change
    raw = orjson.dumps(meta)
    arrays = data[start + size : -16]
    # Digested again, so that what is judged is the field, not the digest.
    digest = xxhash.xxh3_128(raw + arrays).digest()
    snap.write_bytes(MAGIC + len(raw).to_bytes(8, "little") + raw + arrays + digest)
    assert "damaged" in ignored(log)


def test_snapshot_of_the_whole_log_replays_nothing_more(tmp_path: Path) -> None:
    log = write_log(tmp_path / "run.jsonl", *clean_log())
    full = read_checkpoint(log)
    write_snapshot(full)
    replay = replay_log(log)
    assert replay.warnings == [] and isinstance(replay.states, SortedDigests)
    assert facts(replay) == facts(full)
    assert replay.exit_code == 1


def test_no_snapshot_is_a_full_replay_without_a_warning(tmp_path: Path) -> None:
    log = write_log(tmp_path / "run.jsonl", *clean_log())
    replay = replay_log(log)
    assert replay.warnings == [] and isinstance(replay.states, dict)


def test_a_snapshot_is_rewritten_atomically(tmp_path: Path) -> None:
    """A leftover aside (a kill while writing) is replaced, and the new snapshot is used."""
    log = snapshotted(tmp_path)
    snap = snapshot_path(log)
    aside = snap.with_name(snap.name + ".partial")
    aside.write_bytes(snap.read_bytes()[:100])
    write_snapshot(read_checkpoint(log))
    assert not aside.exists()
    replay = replay_log(log)
    assert replay.warnings == [] and replay.states.extra == 0  # type: ignore[union-attr]


def ignored(log: Path) -> str:
    """The warning of a resume that ignored the snapshot; its replay must be the log's own."""
    replay = replay_log(log)
    assert isinstance(replay.states, dict), "the snapshot was used"
    assert facts(replay) == facts(read_checkpoint(log))
    assert replay.warnings, "no warning"
    assert replay.warnings[0].startswith(f"snapshot {snapshot_path(log)} ignored: ")
    assert replay.warnings[0].endswith("; the log is replayed in full")
    return replay.warnings[0]


def test_offset_past_the_end_of_the_log_is_ignored(tmp_path: Path) -> None:
    log = write_log(tmp_path / "run.jsonl", *clean_log())
    write_snapshot(read_checkpoint(log))
    write_log(log, *clean_log()[:5])  # the same file, cut short
    assert "cut short since" in ignored(log)


def test_another_inode_is_ignored(tmp_path: Path) -> None:
    log = snapshotted(tmp_path)
    copy = tmp_path / "copy.jsonl"
    shutil.copyfile(log, copy)
    os.replace(copy, log)  # the same bytes, another file
    assert "another file (inode)" in ignored(log)


def test_another_header_is_ignored(tmp_path: Path) -> None:
    log = snapshotted(tmp_path)
    data = log.read_bytes()
    old = HEADER.run_id.encode()
    new = old[:-1] + (b"0" if old[-1:] != b"0" else b"1")
    with log.open("r+b") as out:  # the same inode and length, another run
        out.write(data.replace(old, new, 1))
    assert "header line" in ignored(log)


def test_other_bytes_before_the_offset_are_ignored(tmp_path: Path) -> None:
    log = snapshotted(tmp_path)
    data = log.read_bytes()
    at = data.index(b'"ts":9')
    with log.open("r+b") as out:  # a state's ts changed in place: still a valid log
        out.seek(at)
        out.write(b'"ts":8')
    assert "bytes before the offset" in ignored(log)


def test_an_offset_inside_a_line_is_ignored(tmp_path: Path) -> None:
    log = write_log(tmp_path / "run.jsonl", *clean_log())
    replay = read_checkpoint(log)
    replay.size -= 3
    write_snapshot(replay)
    assert "bytes before the offset" in ignored(log)


@pytest.mark.parametrize("keep", [0, 5, len(MAGIC) + 4, 200, -40, -1])
def test_a_truncated_snapshot_is_ignored(tmp_path: Path, keep: int) -> None:
    log = snapshotted(tmp_path)
    snap = snapshot_path(log)
    snap.write_bytes(snap.read_bytes()[:keep])
    ignored(log)


@pytest.mark.parametrize("where", [0.1, 0.5, 0.9, 0.999])
def test_a_garbled_snapshot_is_ignored(tmp_path: Path, where: float) -> None:
    log = snapshotted(tmp_path)
    snap = snapshot_path(log)
    data = bytearray(snap.read_bytes())
    data[int(len(data) * where)] ^= 0x55
    snap.write_bytes(bytes(data))
    ignored(log)


def rewrite_meta(snap: Path, change: dict[str, Any]) -> None:
    """Rewrite the snapshot's meta block with ``change`` applied (a valid snapshot otherwise)."""
    data = snap.read_bytes()
    start = len(MAGIC) + 8
    size = int.from_bytes(data[len(MAGIC) : start], "little")
    meta = orjson.loads(data[start : start + size]) | change
    raw = orjson.dumps(meta)
    arrays = data[start + size : -16]
    # Digested again, so that what is judged is the field, not the digest.
    digest = xxhash.xxh3_128(raw + arrays).digest()
    snap.write_bytes(MAGIC + len(raw).to_bytes(8, "little") + raw + arrays + digest)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"v": 1}, "another version"),
        ({"hash": "siphash"}, "another version"),
        ({"n": 3}, "size"),
        ({"offset": "12"}, "damaged"),
    ],
)
def test_another_version_or_a_bad_meta_block_is_ignored(
    tmp_path: Path, change: dict[str, Any], words: str
) -> None:
    log = snapshotted(tmp_path)
    rewrite_meta(snapshot_path(log), change)
    assert words in ignored(log)


def test_a_path_in_an_open_target_is_ignored(tmp_path: Path) -> None:
    """The open targets are decoded by the log's codec: an ID that is a path is refused."""
    log = snapshotted(tmp_path)
    snap = snapshot_path(log)
    data = snap.read_bytes()
    start = len(MAGIC) + 8
    meta = orjson.loads(data[start : start + int.from_bytes(data[len(MAGIC) : start], "little")])
    meta["replay"]["open"][0]["id"] = "../../v2/ControlPlane/x"
    rewrite_meta(snap, meta)
    assert "damaged" in ignored(log)


def test_a_link_in_place_of_the_snapshot_is_ignored(tmp_path: Path) -> None:
    log = snapshotted(tmp_path)
    snap = snapshot_path(log)
    real = tmp_path / "elsewhere.snap"
    os.replace(snap, real)
    snap.symlink_to(real)
    assert "symbolic link" in ignored(log)


def test_a_state_bulkops_never_writes_is_ignored(tmp_path: Path) -> None:
    """A packed state whose kind index is past the last kind (every state index is one now,
    held the eighth): the arrays' check refuses it (the digest is rewritten to match, as a
    forger would)."""
    log = snapshotted(tmp_path)
    snap = snapshot_path(log)
    data = bytearray(snap.read_bytes())
    start = len(MAGIC) + 8
    tables = start + int.from_bytes(data[len(MAGIC) : start], "little")
    values = tables + orjson.loads(data[start:tables])["n"] * 12
    assert len(KINDS) < 8
    data[values] |= 7 << 3  # kind index 7: no kind has it
    data[-16:] = xxhash.xxh3_128(bytes(data[start:-16])).digest()
    snap.write_bytes(bytes(data))
    assert "state" in ignored(log)


def test_a_wrong_digest_of_the_tables_is_ignored(tmp_path: Path) -> None:
    log = snapshotted(tmp_path)
    snap = snapshot_path(log)
    data = bytearray(snap.read_bytes())
    data[-1] ^= 1
    snap.write_bytes(bytes(data))
    assert "digest" in ignored(log)


def test_a_snapshot_of_a_log_bigger_than_its_tail_window(tmp_path: Path) -> None:
    """The tail digest covers the last 64 KiB before the offset; a change before that window
    is not seen (the log stays the truth for what a resume may delete: the spec confines it)."""
    records = [target_record(message(n), State.DELETED, ts=n) for n in range(2000)]
    log = write_log(tmp_path / "run.jsonl", *records)
    assert log.stat().st_size > TAIL
    write_snapshot(read_checkpoint(log))
    assert facts(replay_log(log)) == facts(read_checkpoint(log))


# -- resume equivalence -----------------------------------------------------------------------

STEP = st.one_of(
    st.sampled_from([State.REQUESTED, State.DELETED, State.GONE, State.GONE_AFTER_REQUEST]).map(
        lambda s: {"s": s}
    ),
    OPERATIONS.map(lambda op: {"s": State.ACCEPTED, "op": op}),
    st.integers(400, 99_999).map(lambda code: {"s": State.FAILED, "e": code, "m": "no"}),
)
OTHER_LINES = st.sampled_from(
    [
        {"t": "P", "src": 0, "n": 3},
        {"t": "P", "src": 1, "n": 2, "done": True},
        {"t": "P", "src": 0, "c": "CH" + "0" * 32},
        {"t": "E", "exit": 4, "ts": 7, "requests": 5},
    ]
)


def to_line(target: Target, step: dict[str, Any], ts: int) -> dict[str, Any]:
    state = step["s"]
    return target_record(
        target,
        state,
        ts=None if state is State.REQUESTED else ts,
        operation=step.get("op"),
        code=step.get("e"),
        message=step.get("m"),
    )


@examples(60)
@given(
    events=st.lists(st.one_of(st.tuples(ANY_TARGET, STEP), OTHER_LINES), min_size=1, max_size=40),
    cut=st.integers(0, 40),
    grouped=st.booleans(),
)
def test_a_snapshot_and_its_tail_replay_as_the_whole_log(
    tmp_path_factory: pytest.TempPathFactory,
    events: list[Any],
    cut: int,
    grouped: bool,
) -> None:
    """Any log, snapshotted after any line, then appended to: the snapshot and the tail replay
    to exactly what the whole log replays to."""
    records = [
        to_line(e[0], e[1], ts) if isinstance(e, tuple) else e for ts, e in enumerate(events)
    ]
    if grouped:
        records = group_records(records)
    cut = min(cut, len(records))
    log = tmp_path_factory.mktemp("snap") / "run.jsonl"
    log.write_bytes(line(HEADER.to_record()) + b"".join(encode(r) for r in records[:cut]))
    write_snapshot(read_checkpoint(log))
    with log.open("ab") as out:
        out.write(b"".join(encode(r) for r in records[cut:]))
    replay = replay_log(log)
    assert replay.warnings == [] and isinstance(replay.states, SortedDigests)
    whole = facts(read_checkpoint(log))
    assert facts(replay) == whole
    # And its snapshot in turn (the new targets merged into the arrays) replays the same.
    write_snapshot(replay)
    again = replay_log(log)
    assert isinstance(again.states, SortedDigests) and again.states.extra == 0
    assert facts(again) == whole


# -- the snapshot process of a run ------------------------------------------------------------


def snapshot_process(log: Path, offset: int) -> int:
    """Run `python -m runner.log.snapshot LOG OFFSET` as a run starts it; its exit code."""
    done = subprocess.run(
        [sys.executable, "-m", "runner.log.snapshot", str(log), str(offset)],
        env=dict(os.environ),
        capture_output=True,
        check=False,
    )
    return done.returncode


def test_the_snapshot_process_covers_the_durable_prefix_only(tmp_path: Path) -> None:
    """A run's snapshot process reads the log up to the offset it is given (the end of the
    last fsynced batch) and no further, though the writer has appended more since — a line
    being written included."""
    log = write_log(tmp_path / "run.jsonl", *clean_log())
    offset = log.stat().st_size
    with log.open("ab") as out:
        out.write(b"".join(line(r) for r in tail_records()) + b'{"s":"D","k":"m","id')
    assert snapshot_process(log, offset) == 0
    snapshot = load_snapshot(log)
    assert snapshot is not None and snapshot.size == offset
    replay = replay_log(log)
    assert isinstance(replay.states, SortedDigests)
    assert facts(replay) == facts(read_checkpoint(log))
    assert replay.warnings == read_checkpoint(log).warnings  # the torn line, judged by the log


def test_the_snapshot_process_builds_on_the_snapshot_and_never_goes_back(tmp_path: Path) -> None:
    log = snapshotted(tmp_path)
    first = snapshot_path(log).stat()
    assert snapshot_process(log, 10) == 0  # covered already: nothing written
    assert snapshot_path(log).stat().st_mtime_ns == first.st_mtime_ns
    assert snapshot_process(log, log.stat().st_size) == 0
    replay = replay_log(log)
    assert replay.states.extra == 0  # type: ignore[union-attr]
    assert facts(replay) == facts(read_checkpoint(log))


def test_a_snapshot_no_longer_wanted_is_not_put_in_place(tmp_path: Path) -> None:
    """A snapshot process whose run has died renames nothing: only its aside was written."""
    log = write_log(tmp_path / "run.jsonl", *clean_log())
    with pytest.raises(OSError, match="no longer wanted"):
        snapshot_prefix(log, log.stat().st_size, wanted=lambda: False)
    assert not snapshot_path(log).exists()
    assert list(tmp_path.iterdir()) == [log]


def test_a_snapshot_interval_that_is_not_a_number_keeps_the_default() -> None:
    """float() reads "nan", which no sleep takes: the run keeps the default interval."""
    from runner.app.snapshots import SnapshotSettings

    assert SnapshotSettings.of({"BULKOPS_SNAPSHOT_SECONDS": "nan"}).seconds == 60.0
    assert SnapshotSettings.of({"BULKOPS_SNAPSHOT_SECONDS": "0.5"}).seconds == 0.5
