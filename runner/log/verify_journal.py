"""The journal of a verify beside its log (``<stem>.verify.journal``): what a ``bulkops verify``
has proven so far, so that an interrupted one resumes instead of fetching millions of targets
again (issue 13 §4). The only codec of its lines, its reader (which validates everything) and
its single writer.

A journal is written like the checkpoint: append-only, mode 0600, by one task that groups what
arrives and fsyncs once per batch (a crash loses at most the unsynced tail, which a resume
checks again: a verify sends GETs only). One verify of a log at a time: the journal is held
under an exclusive ``flock`` for the verify's life.

Layout (one JSON object per line, each at most :data:`MAX_LINE` bytes)::

    {"t":"V", "v":1, "run":…, "log":{"size":…, "lines":…, "head":sha256, "tail":sha256},
     "sample":null|{"size":N, "seed":S}, "holds":sha256|null, "bulkops":…, "started":…}
    {"t":"S", "at":…}                           another session continued it
    {"t":"G", "h":["<key hash hex>", …]}        fetched, answered 404: gone
    {"t":"R", "h":[…]}                          fetched, answered 200: still there
    {"t":"M", "src":0, "rem":[{"k":"m", "id":…, "c":…, "sv":…}, …]}   what source 0 found still
                                                selected (written just before its L line)
    {"t":"L", "src":0, "held":3, "n":12, "sv":[…]|null}   source 0 was listed again to its end:
                                                12 still selected (its M lines), 3 held
    {"t":"Z"}                                   the verification finished: never continued

A journal is untrusted input: bounded (:data:`MAX_LINE`, and in all at most
:func:`size_bound` of the log it verifies), every field checked, every ID by the log's own
codec. Anything else — another version, a garbled or foreign line, a source's M lines without
their L line — makes the whole journal :class:`JournalIgnored` (the verify starts over); only a
last line torn by a crash (no newline, or no JSON) is dropped silently, like the log's. A key
hash can only make a resume skip a fetch, never send anything: a verify sends GETs only.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import anyio
import orjson

from runner.errors import CheckpointError, LockedOut, UntrustedFile, UntrustedLine
from runner.files import open_own, open_regular
from runner.kinds.base import Target
from runner.log.digests import DigestMap
from runner.log.lock import lock_log
from runner.log.records import (
    State,
    check_ids,
    checked_parent,
    checked_service,
    encode,
    kind_code,
    kind_of,
)

__all__ = [
    "JOURNAL_SUFFIX",
    "JournalHeader",
    "JournalIgnored",
    "JournalWriter",
    "ListedSource",
    "OpenJournal",
    "Proven",
    "journal_path",
    "log_digests",
    "open_journal",
]

JOURNAL_SUFFIX = ".verify.journal"  # not *.jsonl: the checkpoint directory's logs are
VERSION = 1
MAX_LINE = 64 * 1024  # bytes; a line of verdicts holds at most HASHES_PER_LINE
HASHES_PER_LINE = 1000  # about 26 KB
REMAINS_PER_LINE = 100  # a remaining target is at most about 200 bytes
TAIL = 64 * 1024  # bytes of the log before the size covered, whose digest is recorded
_HEAD_MAX = 1 << 20  # a log's header line is kilobytes (as runner.log.snapshot reads it)
_HASH_HEX = 23  # a 90-bit key hash in hex
_GONE, _REMAINED = 0, 1
_SESSIONS_MAX = 100_000
_SOURCES_MAX = 10_000


def journal_path(log: Path) -> Path:
    """Where the journal of a verify of the log at ``log`` lives: ``<stem>.verify.journal``."""
    return log.with_suffix(JOURNAL_SUFFIX)


def size_bound(log_size: int) -> int:
    """The most bytes a journal of a log of ``log_size`` bytes may hold: a verdict costs at most
    26 bytes where its target's lines in the log cost more, plus room for what listings found
    still there (a run that deleted nothing leaves everything)."""
    return 2 * log_size + (64 << 20)


class JournalIgnored(Exception):
    """The journal cannot be continued; the reason, in words (the verify starts over)."""


@dataclass(frozen=True)
class JournalHeader:
    """What ties a journal to one verification: the log (its run, and the prefix of it that
    was verified: size, lines, digests of its header line and of the bytes before its end),
    the sample, the legal holds applied and the bulkops that began it."""

    run_id: str
    log_size: int
    log_lines: int
    log_head: str
    log_tail: str
    sample_size: int | None
    seed: int | None
    holds: str | None  # a digest of the holds the listings excepted; None: no holds
    version: str
    started: str

    def to_record(self) -> dict[str, Any]:
        """The header line's JSON object."""
        return {
            "t": "V",
            "v": VERSION,
            "run": self.run_id,
            "log": {
                "size": self.log_size,
                "lines": self.log_lines,
                "head": self.log_head,
                "tail": self.log_tail,
            },
            "sample": None
            if self.sample_size is None
            else {"size": self.sample_size, "seed": self.seed},
            "holds": self.holds,
            "bulkops": self.version,
            "started": self.started,
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> JournalHeader:
        """The header of a line (JournalIgnored when it is not one this bulkops writes)."""
        if rec.get("t") != "V":
            raise JournalIgnored("it is not a bulkops verify journal (no header line)")
        if rec.get("v") != VERSION:
            raise JournalIgnored(f"it is of another version ({_show(rec.get('v'))})")
        log, sample = rec["log"], rec["sample"]
        if not isinstance(log, dict):
            raise ValueError("'log' is not an object")
        if sample is not None and not isinstance(sample, dict):
            raise ValueError("'sample' is not an object")
        return cls(
            run_id=_text(rec["run"]),
            log_size=_count(log["size"]),
            log_lines=_count(log["lines"]),
            log_head=_digest(log["head"]),
            log_tail=_digest(log["tail"]),
            sample_size=None if sample is None else _count(sample["size"]),
            seed=None if sample is None else _int(sample["seed"]),
            holds=None if rec["holds"] is None else _digest(rec["holds"]),
            version=_text(rec["bulkops"]),
            started=_time(rec["started"]),
        )

    def mismatch(self, wanted: JournalHeader) -> str | None:
        """Why a journal of this header cannot continue the verification ``wanted`` (None: it
        can), in words that complete "the journal is ignored: …"."""
        if self.run_id != wanted.run_id:
            return f"it is of another run ({self.run_id})"
        log = (self.log_size, self.log_lines, self.log_head, self.log_tail)
        if log != (wanted.log_size, wanted.log_lines, wanted.log_head, wanted.log_tail):
            return (
                f"the log has changed since it began (it covered {self.log_size:,} bytes, "
                f"{self.log_lines:,} lines; the log now has {wanted.log_size:,} bytes, "
                f"{wanted.log_lines:,} lines: a resume ran after it?)"
            )
        if (self.sample_size, self.seed) != (wanted.sample_size, wanted.seed):
            return (
                f"it is of another verification ({_sample_words(self)}; this one: "
                f"{_sample_words(wanted)})"
            )
        if self.holds != wanted.holds:
            return "the legal holds (spec exclude, config holds) have changed since it began"
        if self.version != wanted.version:
            return f"it was begun by bulkops {self.version} (this is {wanted.version})"
        return None


def _sample_words(header: JournalHeader) -> str:
    if header.sample_size is None:
        return "every target"
    return f"--sample {header.sample_size} --seed {header.seed}"


@dataclass(frozen=True, slots=True)
class ListedSource:
    """A source listed again to its end: what it still selected, and how many it held."""

    remains: tuple[Target, ...]
    held: int
    services: tuple[str, ...] | None = None  # the Services known once it was listed


@dataclass
class Proven:
    """What a journal records: the header, the later sessions, each fetched target's verdict
    (by key hash) and each source listed again."""

    header: JournalHeader
    sessions: int = 0  # sessions that continued it after the first
    verdicts: DigestMap = field(default_factory=DigestMap)
    sources: dict[int, ListedSource] = field(default_factory=dict)
    finished: bool = False

    def gone(self, digest: int) -> bool | None:
        """Whether the target of key hash ``digest`` was proven gone (True), found still there
        (False), or not fetched yet (None)."""
        verdict = self.verdicts.get(digest)
        return None if verdict is None else verdict == _GONE


# -- reading -----------------------------------------------------------------------------------


def read_journal(fd: int, bound: int) -> tuple[Proven, int]:
    """What the journal open at ``fd`` records, and the offset after its last whole line (a
    torn last line is left beyond it); JournalIgnored when it cannot be continued."""
    size = os.fstat(fd).st_size
    if size > bound:
        raise JournalIgnored(f"it is larger ({size:,} bytes) than a journal of this log can be")
    proven: Proven | None = None
    pending: dict[int, list[Target]] = {}
    end = 0
    with os.fdopen(os.dup(fd), "rb") as handle:
        handle.seek(0)
        number = 0
        while raw := handle.readline(MAX_LINE + 1):
            number += 1
            if not raw.endswith(b"\n"):
                if len(raw) > MAX_LINE:
                    raise JournalIgnored(f"line {number} is longer than {MAX_LINE:,} bytes")
                break  # torn by a crash mid-write: dropped
            try:
                rec = orjson.loads(raw)
                if not isinstance(rec, dict):
                    raise ValueError("not a JSON object")
                if proven is None:
                    proven = Proven(JournalHeader.from_record(rec))
                else:
                    _apply(proven, pending, rec)
            except (ValueError, KeyError, TypeError, UntrustedLine) as exc:
                if handle.peek(1) == b"" and not isinstance(exc, UntrustedLine):
                    break  # a last line garbled by a crash: dropped, like the log's
                raise JournalIgnored(f"it is damaged at line {number} ({exc})") from None
            end += len(raw)
    if proven is None:
        raise JournalIgnored("it has no header line")
    if pending:
        raise JournalIgnored(
            f"it records what source {min(pending)} found without saying it was listed to its end"
        )
    return proven, end


def _apply(proven: Proven, pending: dict[int, list[Target]], rec: dict[str, Any]) -> None:
    kind = rec.get("t")
    if proven.finished:
        raise ValueError("a line after the end")
    if kind in ("G", "R"):
        hashes = rec["h"]
        if not isinstance(hashes, list) or len(hashes) > HASHES_PER_LINE:
            raise ValueError("'h' is not a list of key hashes")
        verdict = _GONE if kind == "G" else _REMAINED
        for one in hashes:
            proven.verdicts[_key_hash(one)] = verdict
    elif kind == "M":
        source, remains = _source(rec["src"]), rec["rem"]
        if not isinstance(remains, list) or len(remains) > REMAINS_PER_LINE:
            raise ValueError("'rem' is not a list of targets")
        pending.setdefault(source, []).extend(_target(r) for r in remains)
    elif kind == "L":
        source = _source(rec["src"])
        found = pending.pop(source, [])
        if len(found) != _count(rec["n"]) or source in proven.sources:
            raise ValueError(f"source {source}'s lines do not add up")
        services = rec.get("sv")
        if services is not None:
            if not isinstance(services, list) or len(services) > _SOURCES_MAX:
                raise ValueError("'sv' is not a list of Services")
            services = tuple(checked_service(s) for s in services)
        proven.sources[source] = ListedSource(tuple(found), _count(rec["held"]), services)
    elif kind == "S":
        _time(rec["at"])
        proven.sessions += 1
        if proven.sessions > _SESSIONS_MAX:
            raise ValueError("too many sessions")
    elif kind == "Z":
        proven.finished = True
    else:
        raise ValueError(f"unknown line type {_show(kind)}")


def _target(rec: object) -> Target:
    """A remaining target of an M line, every part checked by the log's codec."""
    if not isinstance(rec, dict):
        raise ValueError("a remaining target is not an object")
    kind = kind_of(rec["k"])
    parent = checked_parent(kind, rec.get("c"), State.GONE)
    service = None if rec.get("sv") is None else checked_service(rec["sv"])
    check_ids(kind, (rec["id"],))
    return Target(kind, rec["id"], parent, service)


def _key_hash(value: object) -> int:
    if type(value) is not str or not 0 < len(value) <= _HASH_HEX:
        raise ValueError("not a key hash")
    digest = int(value, 16)
    if digest >> 90:
        raise ValueError("not a key hash")
    return digest


def _source(value: object) -> int:
    source = _count(value)
    if source >= _SOURCES_MAX:
        raise ValueError("not a source")
    return source


def _count(value: object) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"{_show(value)} is not a count")
    return value


def _int(value: object) -> int:
    if type(value) is not int or abs(value) >= 1 << 64:
        raise ValueError(f"{_show(value)} is not a seed")
    return value


def _text(value: object) -> str:
    if type(value) is not str or len(value) > 200:
        raise ValueError(f"{_show(value)} is not a short string")
    return value


def _time(value: object) -> str:
    text = _text(value)
    if datetime.fromisoformat(text).tzinfo is None:  # ValueError names a bad one
        raise ValueError(f"{_show(value)} is not a UTC time")
    return text


def _digest(value: object) -> str:
    if type(value) is not str or len(value) != 64 or value.strip("0123456789abcdef"):
        raise ValueError(f"{_show(value)} is not a SHA-256")
    return value


def _show(value: object) -> str:
    return repr(value)[:40]


def log_digests(log: Path, size: int) -> tuple[str, str]:
    """SHA-256 of the log's header line and of the :data:`TAIL` bytes before ``size``: with the
    size and line count, what says a journal was written for this log as it is now."""
    fd = open_regular(log, follow=False)
    try:
        start = os.pread(fd, _HEAD_MAX, 0)
        head = start[: start.find(b"\n") + 1]
        cover = min(TAIL, size)
        tail = os.pread(fd, cover, size - cover)
    finally:
        os.close(fd)
    return hashlib.sha256(head).hexdigest(), hashlib.sha256(tail).hexdigest()


# -- opening, locked ---------------------------------------------------------------------------


@dataclass
class OpenJournal:
    """The journal of one verify, open and locked for the verify's life."""

    path: Path
    handle: BinaryIO
    proven: Proven | None  # what it recorded, when it can be continued (else None)
    ignored: str | None  # why what it held cannot be continued (None: nothing, or usable)
    _end: int  # the offset after its last whole line

    def start(self, header: JournalHeader) -> None:
        """Begin a new verification: whatever the file held is replaced by ``header``."""
        fd = self.handle.fileno()
        os.ftruncate(fd, 0)
        self._write([header.to_record()])
        self.proven = None

    def resume(self, at: str) -> None:
        """Continue the verification it records: a torn last line is cut off, and a session
        line says when this one began."""
        os.ftruncate(self.handle.fileno(), self._end)
        self._write([{"t": "S", "at": at}])

    def finish(self) -> None:
        """The verification ended with a verdict on everything: mark it (a crash before the
        removal must not let a later verify continue it), then remove the file."""
        self._write([{"t": "Z"}])
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def close(self) -> None:
        """Release the lock (with the descriptor)."""
        with contextlib.suppress(OSError):
            self.handle.close()

    def _write(self, records: list[dict[str, Any]]) -> None:
        self.handle.write(b"".join(encode(r) for r in records))
        self.handle.flush()
        os.fsync(self.handle.fileno())


_IN_USE = (
    "another bulkops verify of {log} is running (it holds {path}); wait for it to finish "
    "(two verifies of one log would each fetch everything)"
)


def open_journal(log: Path, log_size: int, *, restart: bool = False) -> OpenJournal:
    """Open (or create) the journal of the log at ``log``, locked: LockedOut when another
    verify holds it; CheckpointError when what is at its path is not this user's own regular
    file (a link, a directory, a FIFO, another user's file: refused, never followed or
    replaced). ``restart`` discards what it holds. What it holds is read and checked here;
    when it cannot be continued, :attr:`OpenJournal.ignored` says why."""
    path = journal_path(log)
    for _attempt in range(3):
        try:
            fd = open_own(path, os.O_RDWR | os.O_APPEND, create=True)
        except UntrustedFile as exc:
            raise CheckpointError(
                f"verify journal {path} {exc.reason}; bulkops writes it only as a file of its "
                "own: remove it and verify again"
            ) from None
        except OSError as exc:
            raise CheckpointError(
                f"cannot write verify journal {path}: {exc.strerror}; the verify writes beside "
                "the log"
            ) from None
        handle = os.fdopen(fd, "ab")
        if not lock_log(fd):  # the log's own lock, taken on the journal
            handle.close()
            raise LockedOut(_IN_USE.format(log=log, path=path))
        if _still_at(path, fd):
            break
        handle.close()  # a verify that finished removed it meanwhile: open the new one
    else:
        raise LockedOut(_IN_USE.format(log=log, path=path))
    if restart or os.fstat(fd).st_size == 0:
        return OpenJournal(path, handle, None, None, 0)
    try:
        proven, end = read_journal(fd, size_bound(log_size))
    except JournalIgnored as exc:
        return OpenJournal(path, handle, None, str(exc), 0)
    except OSError as exc:
        return OpenJournal(path, handle, None, f"it cannot be read ({exc.strerror})", 0)
    if proven.finished:
        return OpenJournal(path, handle, None, None, 0)  # a finished one is never continued
    return OpenJournal(path, handle, proven, None, end)


def _still_at(path: Path, fd: int) -> bool:
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_ino, st.st_dev) == (own.st_ino, own.st_dev)


# -- writing -----------------------------------------------------------------------------------


def remains_record(target: Target) -> dict[str, Any]:
    """A remaining target as an M line names it: kind, IDs, never content."""
    rec: dict[str, Any] = {"k": kind_code(target.kind), "id": target.id}
    if target.parent:
        rec["c"] = target.parent
    if target.service:
        rec["sv"] = target.service
    return rec


class JournalWriter:
    """The single owner of a journal while a verify runs: verdicts and listed sources are
    queued (a list append, never a wait) and group-committed — written together, one fsync per
    batch, off the event loop — as :class:`~runner.log.writer.CheckpointWriter` does for the
    log. If the file cannot be written, the rest is dropped (a resume checks it again) and
    ``on_error`` is called once."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self._gone: list[int] = []
        self._remained: list[int] = []
        self._lines: list[dict[str, Any]] = []
        self._wake = anyio.Event()
        self._closed = False
        self.error: OSError | None = None
        self.on_error: Callable[[OSError], None] = lambda _exc: None

    def verdict(self, digest: int, *, gone: bool) -> None:
        """Queue a fetched target's verdict (by its key hash)."""
        (self._gone if gone else self._remained).append(digest)
        self._wake.set()

    def listed(self, source: int, found: ListedSource) -> None:
        """Queue a source listed again to its end (its M lines, then its L line)."""
        remains = [remains_record(t) for t in found.remains]
        for start in range(0, len(remains), REMAINS_PER_LINE):
            self._lines.append(
                {"t": "M", "src": source, "rem": remains[start : start + REMAINS_PER_LINE]}
            )
        self._lines.append(
            {
                "t": "L",
                "src": source,
                "held": found.held,
                "n": len(remains),
                "sv": None if found.services is None else list(found.services),
            }
        )
        self._wake.set()

    def close(self) -> None:
        """No more records: :meth:`run` writes what is queued and returns."""
        self._closed = True
        self._wake.set()

    async def run(self) -> None:
        """Write what arrives, one fsync per batch, until closed; what is queued when it is
        cancelled (an interrupted verify) is written before it returns."""
        try:
            while True:
                data = self._take()
                if data is None:
                    if self._closed:
                        break
                    self._wake = anyio.Event()
                    await self._wake.wait()
                    continue
                if self.error is None:
                    try:
                        self._handle.write(data)
                        self._handle.flush()
                        await anyio.to_thread.run_sync(os.fsync, self._handle.fileno())
                    except OSError as exc:
                        self._failed(exc)
        finally:
            self.flush()

    def flush(self) -> None:
        """Write and fsync whatever is queued, now (no wait on the event loop)."""
        data = self._take()
        if data is None or self.error is not None:
            return
        try:
            self._handle.write(data)
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as exc:
            self._failed(exc)

    def _failed(self, exc: OSError) -> None:
        self.error = exc
        self.on_error(exc)

    def _take(self) -> bytes | None:
        if not (self._gone or self._remained or self._lines):
            return None
        lines: list[dict[str, Any]] = []
        for kind, hashes in (("G", self._gone), ("R", self._remained)):
            for start in range(0, len(hashes), HASHES_PER_LINE):
                chunk = hashes[start : start + HASHES_PER_LINE]
                lines.append({"t": kind, "h": [f"{d:x}" for d in chunk]})
        lines.extend(self._lines)
        self._gone, self._remained, self._lines = [], [], []
        return b"".join(encode(r) for r in lines)
