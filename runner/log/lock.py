"""Opening a checkpoint log for appending, locked against every other process.

A log is created exclusively and never through a link, and one process at a time drives it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

from runner.errors import CheckpointError, UntrustedFile
from runner.files import create_new, make_private_directory, open_own, open_own_for_append
from runner.log.records import HEADER_START, Header, decode_object, encode
from runner.log.replay import read_checkpoint, untrusted


def lock_log(fd: int) -> bool:
    """Take the log's lock on ``fd`` without waiting: an exclusive flock on the file itself,
    the one a run holds for as long as it drives the log. False when another process holds it
    (it is released when ``fd`` is closed)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def ensure_not_in_use(path: Path) -> None:
    """Refuse (exit 2) a log another process holds, or one that is not this user's own regular
    file (a link, a FIFO, another user's file), before anything else is tried."""
    try:
        fd = open_own(path, os.O_RDONLY)
    except UntrustedFile as exc:
        raise untrusted(exc) from exc
    except OSError:
        return  # read_checkpoint reports what is wrong with the file
    try:
        if not lock_log(fd):
            raise CheckpointError(_IN_USE.format(path=path))
    finally:
        os.close(fd)


def in_use(path: Path) -> bool:
    """Whether another process is driving the log at ``path`` now (it holds the log's flock).

    The probe takes a shared lock for an instant and never waits; a file that cannot be opened
    as this user's own regular file is not in use by a run of this user's."""
    try:
        fd = open_own(path, os.O_RDONLY)
    except (UntrustedFile, OSError):
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # releases the probe's lock with the descriptor
    return False


_IN_USE = (
    "checkpoint {path} is in use by another bulkops process; "
    "wait for it to finish (two processes must never drive one checkpoint)"
)


def _cut_damaged_tail(fd: int, replayed: int, path: Path) -> None:
    """Cut a damaged last line beyond ``replayed`` bytes off the log open at ``fd`` (a file of
    this user's, opened by :func:`open_log`: nothing else is ever truncated)."""
    size = os.fstat(fd).st_size
    if size <= replayed:
        return
    tail = os.pread(fd, size - replayed, replayed)
    lines = [raw for raw in tail.split(b"\n") if raw.strip()]
    if len(lines) > 1 or (lines and _is_record(lines[0])):
        raise CheckpointError(
            f"checkpoint {path} grew after it was read (another process wrote to it); "
            "run `bulkops resume` again"
        )
    os.ftruncate(fd, replayed)


def _is_record(raw: bytes) -> bool:
    try:
        decode_object(raw)
        return True
    except ValueError:
        return False


class _Found(StrEnum):
    """What an existing file at a new log's path holds."""

    NOTHING = "nothing"  # no byte, or a header torn before its newline: a run died starting
    LOG = "log"  # a header line: a run to resume, never to overwrite
    FOREIGN = "foreign"  # anything else: not ours to touch


def _headerless(fd: int) -> _Found:
    """What the file open at ``fd`` holds (read through the descriptor: a file swapped after
    the open is not the one judged)."""
    head = os.pread(fd, 1 << 20, 0)
    if not head:
        return _Found.NOTHING
    if not head.startswith(HEADER_START[: len(head)]):
        return _Found.FOREIGN
    if b"\n" in head:
        return _Found.LOG if head.startswith(HEADER_START) else _Found.FOREIGN
    # A header torn before its newline (the size check: a header is kilobytes, not a megabyte).
    return _Found.NOTHING if os.fstat(fd).st_size < (1 << 20) else _Found.FOREIGN


def _exists_refusal(path: Path, found: _Found) -> CheckpointError:
    if found is _Found.LOG:
        return CheckpointError(f"checkpoint {path} already exists; use `bulkops resume`")
    return CheckpointError(
        f"checkpoint {path} exists and is not a bulkops checkpoint; choose another path "
        "(bulkops never overwrites a file it did not create)"
    )


@contextlib.contextmanager
def open_log(
    path: Path, header: Header | None, *, replayed: int | None = None
) -> Iterator[BinaryIO]:
    """Open (or create, writing ``header``) a log for appending, locked against other processes.

    The lock is an flock on the file itself, held for the life of the run: a second process
    driving the same checkpoint would send every delete twice. It is taken before anything is
    cut off the file, so a process that is refused never touches a log another one is writing.

    A new log is created exclusively (mode 0600, never through a link). An existing file is
    reused only if it is this user's own regular file holding nothing but a torn header (a run
    killed while starting); any other file is refused, never truncated. A resume opens only an
    existing log of this user's, never through a link, never creating one.

    A resume passes ``replayed``, the byte count its replay read (else the log is read here): a
    damaged last line beyond it is cut off (so appended records do not follow garbage), and
    whole records beyond it — the log grew after it was read — are refused, not ignored.
    """
    flags = os.O_RDWR | os.O_APPEND
    restart = False
    try:
        make_private_directory(path.parent)
        if header is None:
            fd = open_own_for_append(path)
        else:
            try:
                fd = create_new(path, flags)
            except FileExistsError:
                fd = open_own(path, flags)
                found = _headerless(fd)
                if found is not _Found.NOTHING:
                    os.close(fd)
                    raise _exists_refusal(path, found) from None
                restart = True
    except UntrustedFile as exc:
        raise untrusted(exc) from exc
    except FileNotFoundError as exc:
        raise CheckpointError(f"checkpoint {path} does not exist") from exc
    except OSError as exc:
        raise CheckpointError(
            f"cannot write checkpoint {path}: {exc.strerror}; choose a writable checkpoint_dir"
        ) from exc
    handle = os.fdopen(fd, "ab")
    try:
        if not lock_log(fd):
            raise CheckpointError(_IN_USE.format(path=path))
        if restart:
            found = _headerless(fd)
            if found is not _Found.NOTHING:  # another process wrote its header meanwhile
                raise _exists_refusal(path, found)
            os.ftruncate(fd, 0)
        elif header is None:
            # Read under the lock when the caller has no replay of its own (tests, tools).
            size = read_checkpoint(path).size if replayed is None else replayed
            _cut_damaged_tail(fd, size, path)
        if header is not None:
            handle.write(encode(header.to_record()))
            handle.flush()
            os.fsync(fd)
        yield handle
    finally:
        # After a failed write the buffer still holds the lines that did not fit, and closing
        # would fail on them again; the writer has already reported that failure.
        with contextlib.suppress(OSError):
            handle.close()
