"""A snapshot of a replayed log beside it (``<log>.snap``), so a resume reads the snapshot and
the log's tail instead of every line (issue 16 §3) — the write-ahead log + snapshot of etcd, or
SQLite's WAL checkpoint.

The log stays the truth. A snapshot says which prefix of the log it stands for — the byte
offset and line count it covers, the log's inode, and digests of the log's header line and of
the 64 KiB before the offset — and a resume uses it only if all of that matches the log it is
resuming; anything else (a missing, truncated, garbled or foreign snapshot, another version,
another log) is ignored with a warning and the log replayed in full. A snapshot is written
aside (``<log>.snap.partial``), fsynced and renamed over the old one, so a crash while writing
leaves the old snapshot or none, never half of one; and only by the process that holds the
log's lock.

A snapshot is untrusted input, like the log: read within bounds, every field checked, the IDs
of the targets it leaves open checked by the log's own codec, and a resume still confines what
it drives to the spec. What it cannot prove cheaply — that the state of every one of millions
of targets is the log's — is guarded by a digest of the whole snapshot against damage; a file forged
to pass that check needs write access to the checkpoint directory, which can rewrite the log
itself just as well, and a state can only make a resume skip a target (never delete one the
spec does not select).

Layout: ``MAGIC``, the length of the JSON meta block (8 bytes, little-endian), the meta block
(the checks above and the replay's small tables), then the replay's final states as three
arrays sorted by digest (:class:`~runner.log.digests.SortedDigests`): the top 64 bits of each
digest, its low 26, and the packed state (32 or 64 bits); last, the XXH3-128 digest of the
meta block and the arrays (16 bytes), written after them so that they are streamed out
without a copy.
"""

from __future__ import annotations

import hashlib
import os
import sys
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import xxhash

from runner.errors import CheckpointError, UntrustedFile, UntrustedLine
from runner.files import create_aside, open_own, open_regular
from runner.kinds.registry import KINDS
from runner.log.digests import DigestMap, SortedDigests, low6_counts, sort_in_place
from runner.log.records import (
    CONVERSATION_MATCH,
    STATES,
    Header,
    State,
    TargetRecord,
    checked_service,
    decode_footer_object,
    decode_header,
    decode_pace,
    decode_request_found,
    decode_services_rejected,
    decode_target,
    key_hash,
    kind_index,
    pace_record,
    target_record,
)
from runner.log.replay import Replay, read_checkpoint

__all__ = ["SNAPSHOT_SUFFIX", "replay_log", "snapshot_path", "write_snapshot"]

SNAPSHOT_SUFFIX = ".snap"
MAGIC = b"bulkops snapshot\n"
VERSION = 2  # 2: the Services left out, each erasure request's finds, the pace, the loop,
# warnings
HASH = "xxh3-128-top90"  # key_hash's algorithm: a snapshot's digests are only valid under it
TAIL = 64 * 1024  # bytes before the offset whose digest the snapshot records
_HEAD_MAX = 1 << 20  # a header line is kilobytes; none is longer (see lock._headerless)
_META_MAX = 1 << 30  # the meta block: open and failed targets, Operations, conversations
_LOW26 = (1 << 26) - 1
_WARNINGS_MAX = 1000  # a replay's warnings are each said once, and few
_WARNING_LEN = 4096
_LEN = 8  # bytes of the meta block's length
_TRAILER = 16  # the arrays' XXH3-128 digest
# Every packed state's low six bits that can be: a kind's index and a state's.
_CODES = [(kind_index(k) << 3) | i for k in KINDS for i in range(len(STATES))]


def snapshot_path(log: Path) -> Path:
    """Where the snapshot of the log at ``log`` lives: beside it, ``<log>.snap``."""
    return log.with_name(log.name + SNAPSHOT_SUFFIX)


class SnapshotIgnored(Exception):
    """The snapshot cannot stand for the log's prefix; the reason, in words."""


# -- reading -----------------------------------------------------------------------------------


def replay_log(path: Path) -> Replay:
    """The replay of the log at ``path``: from its snapshot and the lines after it when the
    snapshot matches the log, else from every line (the warning says why a snapshot present
    was not used). Refusals of the log itself are :func:`read_checkpoint`'s."""
    warning: str | None = None
    try:
        prior = load_snapshot(path)
    except SnapshotIgnored as exc:
        prior = None
        warning = f"snapshot {snapshot_path(path)} ignored: {exc}; the log is replayed in full"
    replay = read_checkpoint(path, into=prior)
    if warning is not None:
        replay.warnings.insert(0, warning)
    return replay


def load_snapshot(path: Path) -> Replay | None:
    """The replay the snapshot of the log at ``path`` holds, up to the offset it covers (the
    caller reads the rest); None when there is no snapshot; :class:`SnapshotIgnored` when there
    is one that does not match the log or cannot be read."""
    snap = snapshot_path(path)
    try:
        snap_fd = open_own(snap, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except UntrustedFile as exc:
        raise SnapshotIgnored(f"it {exc.reason}") from None
    except OSError as exc:
        raise SnapshotIgnored(f"it cannot be read ({exc.strerror})") from None
    with os.fdopen(snap_fd, "rb") as handle:
        try:
            log_fd = open_regular(path, follow=False)
        except (OSError, UntrustedFile):
            return None  # read_checkpoint words what is wrong with the log
        try:
            return _load(handle, log_fd, path)
        except (OSError, ValueError, KeyError, TypeError, UntrustedLine, CheckpointError) as exc:
            raise SnapshotIgnored(f"it is damaged ({exc})") from None
        finally:
            os.close(log_fd)


def _load(handle: Any, log_fd: int, path: Path) -> Replay:
    size = os.fstat(handle.fileno()).st_size
    start = handle.read(len(MAGIC) + _LEN)
    if len(start) < len(MAGIC) + _LEN or not start.startswith(MAGIC):
        raise SnapshotIgnored("it is not a bulkops snapshot (or was cut short)")
    meta_len = int.from_bytes(start[len(MAGIC) :], "little")
    if meta_len > min(_META_MAX, size):
        raise SnapshotIgnored("it was cut short")
    raw_meta = handle.read(meta_len)
    meta = orjson.loads(raw_meta)
    if not isinstance(meta, dict):
        raise SnapshotIgnored("its meta block is not an object")
    if meta.get("v") != VERSION or meta.get("hash") != HASH:
        raise SnapshotIgnored(
            f"it is of another version ({show(meta.get('v'))}, {show(meta.get('hash'))}; "
            f"this bulkops reads {VERSION}, {HASH})"
        )
    header = _check_log(meta, log_fd)
    count, wide = _int(meta["n"]), meta["wide"]
    if type(wide) is not bool:
        raise ValueError("'wide' is not a boolean")
    body = count * (8 + 4 + (8 if wide else 4)) + _TRAILER
    if size != len(MAGIC) + _LEN + meta_len + body:
        raise SnapshotIgnored(f"its size ({size:,} bytes) is not what its tables take")
    tops, bottoms, values = _arrays(count, wide)
    checksum = xxhash.xxh3_128(raw_meta)  # a flipped byte of a failure's message counts too
    for table in (tops, bottoms, values):
        view = memoryview(table).cast("B")
        if handle.readinto(view) != len(view):
            raise SnapshotIgnored("it was cut short")
        checksum.update(view)
    if checksum.digest() != handle.read(_TRAILER):
        raise SnapshotIgnored("its contents do not match their digest")
    if sys.byteorder != "little":
        for table in (tops, bottoms, values):
            table.byteswap()
    counts = low6_counts(values, _CODES)
    if sum(counts.values()) != count:
        raise SnapshotIgnored("a target's state is not one bulkops writes")
    replay = Replay(header, path, states=SortedDigests(tops, bottoms, values, counts))
    _restore(replay, meta["replay"])
    replay.lines, replay.size = _int(meta["lines"]), _int(meta["offset"])
    return replay


def _check_log(meta: dict[str, Any], log_fd: int) -> Header:
    """The log's header, once the snapshot's checks of the log (inode, offset, header and tail
    digests) all pass."""
    st = os.fstat(log_fd)
    offset = _int(meta["offset"])
    if (meta["inode"], meta["dev"]) != (st.st_ino, st.st_dev):
        raise SnapshotIgnored("it was written for another file (inode) than this log")
    if offset > st.st_size:
        raise SnapshotIgnored(
            f"it covers {offset:,} bytes of the log, which has {st.st_size:,} (cut short since)"
        )
    head = _header_line(log_fd)
    if head is None or offset < len(head):
        raise SnapshotIgnored("the log has no header line it covers")
    if _digest(head) != meta["head"]:
        raise SnapshotIgnored("the log's header line is not the one it was written for")
    tail = os.pread(log_fd, min(TAIL, offset), offset - min(TAIL, offset))
    if not tail.endswith(b"\n") or _digest(tail) != meta["tail"]:
        raise SnapshotIgnored("the log's bytes before the offset it covers differ from its own")
    return decode_header(head)


def _header_line(log_fd: int) -> bytes | None:
    start = os.pread(log_fd, _HEAD_MAX, 0)
    end = start.find(b"\n")
    return None if end < 0 else start[: end + 1]


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _arrays(count: int, wide: bool) -> tuple[array[int], array[int], array[int]]:
    """Arrays of ``count`` zeros, allocated at their size (no temporary copy of the bytes)."""
    return (
        array("Q", [0]) * count,
        array("I", [0]) * count,
        array("Q" if wide else "I", [0]) * count,
    )


def _int(value: object) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"{show(value)} is not a count")
    return value


def show(value: object) -> str:
    """A value of the snapshot in a message, bounded."""
    return repr(value)[:40]


def _strings(value: object) -> list[str]:
    if not isinstance(value, list) or not all(type(v) is str and len(v) <= 512 for v in value):
        raise ValueError("not a list of strings")
    return value


def _by_source(value: object) -> dict[int, set[str]]:
    if not isinstance(value, dict):
        raise ValueError("not a mapping of sources")
    return {int(k): set(_strings(v)) for k, v in value.items()}


def _records(value: object, states: frozenset[State]) -> dict[int, TargetRecord]:
    """The open or failed targets, each line decoded (and its IDs checked) by the log's codec."""
    if not isinstance(value, list):
        raise ValueError("not a list of targets")
    records: dict[int, TargetRecord] = {}
    for rec in value:
        if not isinstance(rec, dict):
            raise ValueError("a target is not an object")
        record = decode_target(rec)
        if record.state not in states:
            raise ValueError(f"a target in state {record.state.value} among {sorted(states)}")
        records[key_hash(record.target.key)] = record
    return records


def _digest_key(value: str) -> int:
    if type(value) is not str or len(value) > 23:
        raise ValueError("not a digest")
    return int(value, 16)


def _restore(replay: Replay, tables: dict[str, Any]) -> None:
    """Fill ``replay``'s small tables from the snapshot's, each checked."""
    replay.open = _records(tables["open"], frozenset({State.REQUESTED, State.ACCEPTED}))
    replay.failed = _records(tables["failed"], frozenset({State.FAILED}))
    operations = tables["operations"]
    if not isinstance(operations, dict):
        raise ValueError("'operations' is not a mapping")
    for digest, operation in operations.items():
        # An Operation id only ever goes into a report here (polls use the open targets').
        if type(operation) is not str or len(operation) > 512:
            raise ValueError("an Operation id is not one")
        replay.operations[_digest_key(digest)] = operation
    conversations = _strings(tables["deleted_conversations"])
    if any(CONVERSATION_MATCH(c) is None for c in conversations):
        raise ValueError("a deleted conversation is not a Conversation SID")
    replay.deleted_conversations = set(conversations)
    replay.discovered = {int(k): _int(v) for k, v in tables["discovered"].items()}
    replay.discovery_done = {_int(v) for v in tables["discovery_done"]}
    replay.children_listed = _by_source(tables["children_listed"])
    replay.services_listed = _by_source(tables["services_listed"])
    for services in replay.services_listed.values():
        for service in services:
            checked_service(service)
    services = tables["services"]
    replay.services = None if services is None else tuple(checked_service(s) for s in services)
    replay.services_rejected = decode_services_rejected({"rj": tables["services_rejected"]})
    replay.requests = {str(k): _int(v) for k, v in tables["requests"].items()}
    for request, service, found in tables["requests_found"]:
        # The log's own codec checks each, as it checks an F line.
        row = decode_request_found({"r": request, "n": found, "sv": service})
        replay.requests_found[(row.request, row.service)] = row.found
    pace = tables["pace"]
    replay.pace = None if pace is None else decode_pace(pace)
    warnings = tables["warnings"]
    if not isinstance(warnings, list) or len(warnings) > _WARNINGS_MAX:
        raise ValueError("'warnings' is not a short list")
    replay.warnings = [w for w in warnings if type(w) is str and len(w) <= _WARNING_LEN]
    replay.unrequested = {_digest_key(d) for d in tables["unrequested"]}
    code = tables["exit_code"]
    replay.exit_code = None if code is None else int(code)
    replay.traffic = Counter({str(k): _int(v) for k, v in tables["traffic"].items()})
    replay.loop = decode_footer_object({"exit": 0, "loop": tables["loop"]}).loop
    replay.last_ts = _int(tables["last_ts"])
    replay.ended_sessions = _int(tables["ended_sessions"])
    start = tables["session_start"]
    replay.session_start = None if start is None else _int(start)


# -- writing -----------------------------------------------------------------------------------


def write_snapshot(replay: Replay, *, wanted: Callable[[], bool] | None = None) -> Path:
    """Write the snapshot of ``replay`` (of the whole log up to ``replay.size``) beside its log,
    atomically; its path. The caller holds the log's lock, or is the snapshot process of the
    run that does (no one else appends to the log or writes its snapshot). OSError when it
    cannot be written: the log is untouched, and a resume replays whatever the old snapshot (or
    none) does not cover. ``wanted`` is asked just before the rename: False leaves the old
    snapshot in place (OSError)."""
    path = replay.path
    log_fd = open_regular(path, follow=False)
    try:
        st = os.fstat(log_fd)
        head = _header_line(log_fd)
        if head is None or replay.size < len(head) or replay.size > st.st_size:
            raise OSError(0, "the log does not hold what its replay read")
        cover = min(TAIL, replay.size)
        tail = os.pread(log_fd, cover, replay.size - cover)
    finally:
        os.close(log_fd)
    _sort_compact_states(replay)
    layout = _layout(replay.states)
    meta = {
        "v": VERSION,
        "hash": HASH,
        "offset": replay.size,
        "lines": replay.lines,
        "inode": st.st_ino,
        "dev": st.st_dev,
        "head": _digest(head),
        "tail": _digest(tail),
        "n": layout.count,
        "wide": layout.wide,
        "replay": _tables(replay),
    }
    raw_meta = orjson.dumps(meta)
    target = snapshot_path(path)
    aside, fd = create_aside(target)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(MAGIC + len(raw_meta).to_bytes(_LEN, "little") + raw_meta)
            checksum = xxhash.xxh3_128(raw_meta)

            def emit(chunk: memoryview) -> None:
                out.write(chunk)
                checksum.update(chunk)

            layout.emit(emit)
            out.write(checksum.digest())
            out.flush()
            os.fsync(out.fileno())
        if wanted is not None and not wanted():
            raise OSError(0, "no longer wanted")
        os.replace(aside, target)
    except BaseException:
        aside.unlink(missing_ok=True)
        raise
    _sync_directory(path.parent)
    return target


def _sort_compact_states(replay: Replay) -> None:
    """A compact replay's states (a :class:`DigestMap`: a big run's end, or a run's snapshot
    process) become the sorted arrays the snapshot writes, in the map's own memory, and stay
    the replay's (the same states, as a resume from the snapshot holds them): no sorted copy
    beside the map at the run's memory peak."""
    if isinstance(replay.states, DigestMap) and sys.byteorder == "little":
        tops, bottoms, values = sort_in_place(replay.states)
        replay.states = SortedDigests(tops, bottoms, values, low6_counts(values, _CODES))


class _Layout:
    """The snapshot's three arrays, as chunks written one after the other: ``count`` targets,
    ``wide`` values (64 bits); ``emit`` hands every chunk, in order, to its argument."""

    def __init__(self, count: int, wide: bool, tables: list[list[array[int]]]) -> None:
        self.count, self.wide, self._tables = count, wide, tables

    def emit(self, out: Callable[[memoryview], None]) -> None:
        for chunks in self._tables:
            for chunk in chunks:
                if sys.byteorder != "little":
                    chunk = array(chunk.typecode, chunk)
                    chunk.byteswap()
                out(memoryview(chunk).cast("B"))


class _Merged(_Layout):
    """A snapshot's arrays with the digests beside them merged in, streamed: slices of the
    arrays (views, not copies) between the few new digests, so that writing the snapshot of a
    ten-million-target resume costs no second copy of its tables."""

    def __init__(self, states: SortedDigests) -> None:
        tops, bottoms, values = states.tables()
        extra = sorted((d >> 26, d & _LOW26, v) for d, v in states.extra_items())
        self._base = (tops, bottoms, values)
        self._extra = (
            array("Q", [e[0] for e in extra]),
            array("I", [e[1] for e in extra]),
            array(values.typecode, [e[2] for e in extra]),
        )
        # Where each new digest goes in the arrays (before the first greater one).
        self._at = array("Q")
        at = 0
        for top, bottom, _ in extra:
            at = bisect_left(tops, top, at)
            while at < len(tops) and tops[at] == top and bottoms[at] < bottom:
                at += 1
            self._at.append(at)
        super().__init__(len(tops) + len(extra), values.typecode == "Q", [])

    def emit(self, out: Callable[[memoryview], None]) -> None:
        for base, extra in zip(self._base, self._extra, strict=True):
            whole, new = memoryview(base).cast("B"), memoryview(extra).cast("B")
            size, start = base.itemsize, 0
            for index, at in enumerate(self._at):
                out(whole[start * size : at * size])
                out(new[index * size : (index + 1) * size])
                start = at
            out(whole[start * size :])


def _layout(states: dict[int, int] | DigestMap | SortedDigests) -> _Layout:
    if isinstance(states, SortedDigests) and sys.byteorder == "little":
        narrow = states.tables()[2].typecode == "I"
        if not (narrow and any(v >> 32 for _, v in states.extra_items())):
            return _Merged(states)
    tops, bottoms, values = sorted_tables(states)
    return _Layout(len(tops), values.typecode == "Q", [[tops], [bottoms], [values]])


def _sync_directory(directory: Path) -> None:
    """Make the rename durable (a crash after it must not bring the old name back)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tables(replay: Replay) -> dict[str, Any]:
    """The replay's small tables as JSON (digests as hex: JSON has no 90-bit ints)."""

    def lines(records: dict[int, TargetRecord]) -> list[dict[str, Any]]:
        return [
            target_record(
                r.target,
                r.state,
                ts=r.ts,
                operation=r.operation,
                code=r.code,
                message=r.message,
                generation=r.generation,
            )
            for r in records.values()
        ]

    return {
        "open": lines(replay.open),
        "failed": lines(replay.failed),
        "operations": {f"{d:x}": op for d, op in replay.operations.items()},
        "deleted_conversations": sorted(replay.deleted_conversations),
        "discovered": {str(k): v for k, v in replay.discovered.items()},
        "discovery_done": sorted(replay.discovery_done),
        "children_listed": {str(k): sorted(v) for k, v in replay.children_listed.items()},
        "services_listed": {str(k): sorted(v) for k, v in replay.services_listed.items()},
        "services": None if replay.services is None else list(replay.services),
        "services_rejected": replay.services_rejected,
        "requests": replay.requests,
        "requests_found": [[r, sv, n] for (r, sv), n in replay.requests_found.items()],
        "pace": None
        if replay.pace is None
        else pace_record(replay.pace.ts, replay.pace.rates, replay.pace.in_flight),
        "warnings": replay.warnings[:_WARNINGS_MAX],
        "unrequested": [f"{d:x}" for d in replay.unrequested],
        "exit_code": replay.exit_code,
        "traffic": dict(replay.traffic),
        "loop": replay.loop,
        "last_ts": replay.last_ts,
        "ended_sessions": replay.ended_sessions,
        "session_start": replay.session_start,
    }


def sorted_tables(
    states: dict[int, int] | DigestMap | SortedDigests,
) -> tuple[array[int], array[int], array[int]]:
    """The final states as the snapshot's three arrays, sorted by digest.

    Built in place in about 20 bytes a target, with no Python object per target alive at once
    (a sort of a million (digest, state) tuples would take 150 MB, beyond a big run's budget):
    a counting sort on the digests' top bits (uniform, being hashes) puts each in its bucket
    of a few, and each bucket is then sorted on its own."""
    count = len(states)
    bits = max(count.bit_length() - 2, 0)  # a bucket per 2 to 4 targets
    shift = 64 - bits
    starts = array("Q", [0]) * ((1 << bits) + 1)
    for digest, _ in states.items():
        starts[((digest >> 26) >> shift) + 1] += 1
    for bucket in range(1, len(starts)):
        starts[bucket] += starts[bucket - 1]
    wide = any(value >> 32 for _, value in states.items())
    tops, bottoms, values = _arrays(count, wide)
    fill = array("Q", starts)
    for digest, value in states.items():
        top = digest >> 26
        bucket = top >> shift
        at = fill[bucket]
        fill[bucket] = at + 1
        tops[at], bottoms[at], values[at] = top, digest & _LOW26, value
    for bucket in range(len(starts) - 1):
        low, high = starts[bucket], starts[bucket + 1]
        if high - low > 1:
            rows = sorted(zip(tops[low:high], bottoms[low:high], values[low:high], strict=True))
            for at, (top, bottom, value) in enumerate(rows, start=low):
                tops[at], bottoms[at], values[at] = top, bottom, value
    return tops, bottoms, values


# -- the snapshot process of a run ------------------------------------------------------------


def snapshot_prefix(path: Path, offset: int, wanted: Callable[[], bool] | None = None) -> bool:
    """Write the snapshot of the log at ``path`` up to byte ``offset`` (the end of a line that
    is on disk): from its current snapshot and the lines after it, else from every line (into
    a compact map: this runs beside the run, whose memory it must not double). False when the
    snapshot already covers as much."""
    try:
        prior = load_snapshot(path)
    except SnapshotIgnored:
        prior = None
    if prior is not None and prior.size >= offset:
        return False
    compact = None if prior is not None else max(offset // 64, 1024)
    replay = read_checkpoint(path, into=prior, compact_for=compact, until=offset)
    write_snapshot(replay, wanted=wanted)
    return True


def main(argv: list[str]) -> int:
    """``python -m runner.log.snapshot LOG OFFSET``: what a run starts, every so often, to
    snapshot the durable prefix of its log in another process (the run's own memory and event
    loop untouched). It takes no lock: the run that started it holds the log's, and kills it
    before its own last snapshot; one whose run has died meanwhile renames nothing into place
    (a new run of the log may hold the lock by then). Exit 0 when the snapshot is in place."""
    log, offset = Path(argv[0]), int(argv[1])
    parent = os.getppid()
    try:
        snapshot_prefix(log, offset, wanted=lambda: os.getppid() == parent)
    except (OSError, CheckpointError, UntrustedFile):
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
