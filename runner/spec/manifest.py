"""Manifest files: long lists of IDs given to a target with ``from_file``.

Two formats, chosen by the file's extension:

* ``.csv``: a header row, then one target per line. The ``id`` column is required; messages and
  participants also need ``conversation_sid``. Other columns are accepted and ignored, so an export
  with more columns can be used as it is. Cells are stripped of surrounding spaces. One record per
  physical line: quoted cells spanning lines are not supported (no ID contains a line break).
* ``.jsonl`` / ``.ndjson``: one JSON value per line, either an object
  ``{"id": …, "conversation_sid": …}`` (other keys ignored) or, for kinds without a parent
  conversation, a bare JSON string.

Blank lines are skipped everywhere. Files are read as a stream, a line at a time, so a manifest of
millions of rows costs constant memory; for that reason a manifest has no size bound, but it must
be a regular file (a link to one is fine): a FIFO, ``/dev/zero`` or a socket is refused at once.
Duplicate rows are not detected here: that needs memory in proportion to the file, and the
runner's checkpoint already deletes each target once.

:func:`validate_manifest` reads the whole file before anything is deleted and reports every bad
row (the first :data:`MAX_PROBLEMS`, then a count). :func:`iter_manifest` streams it again for the
runner and checks each row once more, since the file could change between the two reads.

Both read a plain CSV (no quotes, no blank lines, every row's ID cells in place and valid) a
block at a time: one anchored regular expression (:func:`plain_rows`) vouches for a whole block
of rows at C speed, where checking a row at a time in Python cost about as much as the run's
start-up imports (issue 16 §1). A block it does not vouch for is read again a line at a time, as
any other manifest is, so every problem is found and worded exactly as before.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import BinaryIO

from runner.errors import SpecError, UntrustedFile
from runner.files import open_regular_stream
from runner.kinds.base import ResourceKind, Target
from runner.kinds.ids import CONVERSATION_SID, IdPattern, show_value
from runner.kinds.spec_model import ManifestInfo

__all__ = [
    "MANIFEST_SUFFIXES",
    "MAX_LINE_BYTES",
    "MAX_PROBLEMS",
    "iter_manifest",
    "validate_manifest",
]

MANIFEST_SUFFIXES = (".csv", ".jsonl", ".ndjson")
MAX_PROBLEMS = 20
# An ID row is under 100 bytes; a longer line is not a manifest row, and reading it whole could
# exhaust memory if the file has no line breaks at all.
MAX_LINE_BYTES = 64 * 1024
# Bytes read at a time by the plain-CSV path: big enough that the per-block work is negligible,
# small enough that memory stays flat whatever the file's size.
BLOCK_BYTES = 1 << 20


def _cell(pattern: IdPattern) -> bytes | None:
    """An ID cell of ``pattern`` as a bytes expression (spaces or tabs around it, which the row
    parser strips), or None when the pattern cannot be used on bytes as it is on text."""
    regex = pattern.regex
    if regex.flags & ~re.UNICODE or _SIMPLE.fullmatch(regex.pattern) is None:
        return None
    return rb"[ \t]*(?:" + regex.pattern.encode("ascii") + rb")[ \t]*"


# What an ID pattern may be written with for the block check to use it (the patterns are
# bulkops' own, runner.kinds.ids): literals, classes and ranges of letters and digits, counts,
# repeats, groups, alternatives. None of that matches a comma, a quote or white space, so the
# cells the expression finds are the cells str.split finds.
_SIMPLE = re.compile(r"[A-Za-z0-9_\-\[\]{}()?:|+*]*")


@cache
def plain_rows(kind: ResourceKind, id_at: int, parent_at: int) -> re.Pattern[bytes] | None:
    """An expression that matches a block of whole plain CSV rows of ``kind`` (each ending in a
    line break) only when the line-at-a-time parser would accept every one of them as a
    target with these columns: the cells before the last ID column hold no comma, none holds a
    quote, and the ID cells are IDs. A subset of what that parser accepts (a blank line, a quote,
    other white space around an ID: not vouched for, read a line at a time). None when this kind
    cannot be checked this way."""
    own = _cell(kind.pattern)
    parent = _cell(CONVERSATION_SID) if parent_at >= 0 else b""
    if own is None or parent is None:
        return None
    cells = [
        own if index == id_at else parent if index == parent_at else rb'[^,\n"]*'
        for index in range(max(id_at, parent_at) + 1)
    ]
    row = b",".join(cells) + rb'(?:,[^\n"]*)?\r?\n'
    return re.compile(rb"(?:" + row + rb")*")


def _vouched(block: bytes, rows: re.Pattern[bytes]) -> bool:
    """Whether ``block`` (whole lines) is plain rows that are all valid targets."""
    if rows.fullmatch(block) is None:
        return False
    if len(block) > MAX_LINE_BYTES and max(map(len, block.split(b"\n"))) > MAX_LINE_BYTES:
        return False
    if block.isascii():
        return True
    try:
        block.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class _Scan:
    """One streaming pass over a manifest, yielding rows or problems and hashing every byte."""

    def __init__(self, path: Path, kind: ResourceKind) -> None:
        self.path = path
        self.kind = kind
        self.digest = hashlib.sha256()
        self.fatal: str | None = None
        self.rows = 0
        self.number = 0  # lines read so far (the plain-CSV path reads past lines())
        self.targets = True  # rows as targets; False: plain blocks as counts (validation)

    def lines(self, handle: BinaryIO) -> Iterator[tuple[int, str | None]]:
        """Non-blank lines as (number, text), or (number, None) for a line that is not text."""
        while True:
            raw = handle.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            self.number += 1
            number = self.number
            self.digest.update(raw)
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                # Consume the rest of the over-long line so numbering stays right.
                while raw and not raw.endswith(b"\n"):
                    raw = handle.readline(MAX_LINE_BYTES + 1)
                    self.digest.update(raw)
                yield number, None
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                yield number, None
                continue
            if number == 1:
                text = text.removeprefix("\ufeff")
            if text.strip():
                yield number, text.rstrip("\r\n")

    def rows_of(self, handle: BinaryIO) -> Iterator[tuple[int, Target | str | int]]:
        """Rows as (line, Target) or (line, problem); sets ``fatal`` if the file is unusable.
        With ``targets`` False, a block of plain rows comes as (last line, how many rows)."""
        suffix = self.path.suffix.lower()
        if suffix == ".csv":
            yield from self._csv(handle)
        else:
            yield from self._jsonl(handle)

    def _check(self, value: object, parent: object) -> Target | str:
        if not isinstance(value, str) or not value:
            return f"id is missing or not text ({show_value(value)})"
        if parent is not None and not isinstance(parent, str):
            return f"conversation_sid is not text ({show_value(parent)})"
        try:
            return self.kind.target(value, parent)
        except ValueError as exc:
            return str(exc)

    def _plain(
        self, handle: BinaryIO, rows: re.Pattern[bytes], id_at: int, parent_at: int
    ) -> Iterator[tuple[int, Target | int]]:
        """Blocks of plain rows, each vouched for whole by ``rows`` before any of it is used; at
        the first block it does not vouch for (or a last line without a line break) the handle
        is put back at that block's start, for the line-at-a-time parser to go on from."""
        kind = self.kind
        carry = b""
        while True:
            start = handle.tell() - len(carry)
            data = handle.read(BLOCK_BYTES)
            read = carry + data
            cut = read.rfind(b"\n") + 1 if data else 0
            if cut == 0:
                handle.seek(start)
                return
            block, carry = read[:cut], read[cut:]
            if not _vouched(block, rows):
                handle.seek(start)
                return
            self.digest.update(block)
            first = self.number
            self.number += block.count(b"\n")
            if not self.targets:
                yield self.number, self.number - first
                continue
            number = first
            for line in block.decode("utf-8").split("\n")[:-1]:
                number += 1
                cells = line.split(",")
                parent = cells[parent_at].strip() if parent_at >= 0 else None
                # Every part matched its kind's pattern in the block's expression.
                yield number, Target(kind, cells[id_at].strip(), parent)

    def _csv(self, handle: BinaryIO) -> Iterator[tuple[int, Target | str | int]]:
        columns: list[str] | None = None
        id_at = parent_at = -1
        for number, text in self.lines(handle):
            if text is None:
                yield number, "is not UTF-8 text, or is longer than 64 KiB"
                if columns is None:
                    self.fatal = "has no readable header row"
                    return
                continue
            # Plain rows (no quotes) are split directly: the csv module costs 3x more per row.
            fields = text.split(",") if '"' not in text else next(csv.reader([text]))
            cells = [cell.strip() for cell in fields]
            if columns is None:
                columns = [cell.lower() for cell in cells]
                needed = ["id", "conversation_sid"] if self.kind.has_parent else ["id"]
                missing = [name for name in needed if name not in columns]
                if missing:
                    self.fatal = (
                        f"line {number}: the header row has no {' or '.join(missing)} column "
                        f"(found {', '.join(show_value(c) for c in cells)}); the first line must "
                        f"name the columns: {','.join(needed)}"
                    )
                    return
                id_at = columns.index("id")
                parent_at = columns.index("conversation_sid") if self.kind.has_parent else -1
                rows = plain_rows(self.kind, id_at, parent_at)
                if rows is not None:
                    yield from self._plain(handle, rows, id_at, parent_at)
                continue
            if len(cells) <= max(id_at, parent_at):
                yield number, f"has {len(cells)} fields, the header has {len(columns)}"
                continue
            parent = cells[parent_at] if parent_at >= 0 else None
            yield number, self._check(cells[id_at], parent)
        if columns is None:
            self.fatal = "is empty: it needs a header row and at least one row of IDs"

    def _jsonl(self, handle: BinaryIO) -> Iterator[tuple[int, Target | str]]:
        for number, text in self.lines(handle):
            if text is None:
                yield number, "is not UTF-8 text, or is longer than 64 KiB"
                continue
            try:
                value = json.loads(text)
            except ValueError:
                yield number, f"is not JSON: {show_value(text)}"
                continue
            if isinstance(value, str):
                if self.kind.has_parent:
                    yield (
                        number,
                        (
                            f"{show_value(value)} needs its conversation: write "
                            '{"id": "...", "conversation_sid": "CH..."}'
                        ),
                    )
                    continue
                yield number, self._check(value, None)
            elif isinstance(value, dict):
                parent = value.get("conversation_sid") if self.kind.has_parent else None
                yield number, self._check(value.get("id"), parent)
            else:
                yield number, 'is not an object like {"id": "..."} or an ID in quotes'


def _open(path: Path, where: str, display: str) -> BinaryIO:
    if path.suffix.lower() not in MANIFEST_SUFFIXES:
        raise SpecError(
            f"{where}: {display} is not a .csv, .jsonl or .ndjson file "
            "(the extension sets the format)"
        )
    try:
        # A regular file only (links followed): a FIFO or device would never end, and is
        # refused at the open, which O_NONBLOCK keeps from waiting for a FIFO's writer.
        return open_regular_stream(path)
    except UntrustedFile as exc:
        if exc.reason.startswith("is a directory"):
            raise SpecError(f"{where}: {display} is a directory, not a manifest file") from None
        raise SpecError(
            f"{where}: {display} {exc.reason}: give a .csv or .jsonl file (a pipe or device "
            "would never end)"
        ) from None
    except FileNotFoundError:
        raise SpecError(
            f"{where}: {display} does not exist "
            "(a relative path starts at the spec file's directory)"
        ) from None
    except IsADirectoryError:
        raise SpecError(f"{where}: {display} is a directory, not a manifest file") from None
    except OSError as exc:
        raise SpecError(f"{where}: {display} cannot be read ({exc.strerror})") from None


def validate_manifest(
    path: Path,
    kind: ResourceKind,
    *,
    where: str = "from_file",
    display: str | None = None,
) -> ManifestInfo:
    """Read the whole manifest, checking every row; raise SpecError listing every bad row.

    ``where`` and ``display`` name the manifest in messages (``targets[3].from_file``, the path
    as the spec wrote it): ``targets[3].from_file: jobs/ids.csv line 5001: 'IM12' is not …``.
    """
    shown = display if display is not None else str(path)
    scan = _Scan(path, kind)
    scan.targets = False
    problems: list[str] = []
    bad = 0
    try:
        with _open(path, where, shown) as handle:
            for number, row in scan.rows_of(handle):
                if isinstance(row, Target):
                    scan.rows += 1
                    continue
                if isinstance(row, int):  # a block of plain rows, all valid
                    scan.rows += row
                    continue
                bad += 1
                if bad <= MAX_PROBLEMS:
                    problems.append(f"{where}: {shown} line {number}: {row}")
    except OSError as exc:
        raise SpecError(f"{where}: {shown} cannot be read ({exc.strerror})") from None
    if scan.fatal is not None:
        problems.append(f"{where}: {shown} {scan.fatal}")
    elif scan.rows == 0 and bad == 0:
        problems.append(f"{where}: {shown} has no rows: a manifest needs at least one ID")
    if bad > MAX_PROBLEMS:
        problems.append(f"{where}: {shown}: and {bad - MAX_PROBLEMS} more bad rows")
    if problems:
        raise SpecError(problems)
    return ManifestInfo(scan.rows, scan.digest.hexdigest())


def iter_manifest(
    path: Path,
    kind: ResourceKind,
    *,
    expected_sha256: str | None = None,
) -> Iterator[Target]:
    """Stream the targets of a manifest already checked by :func:`validate_manifest`.

    Each row is checked again, and with ``expected_sha256`` the file's hash is compared at the
    end: a file edited after validation raises SpecError rather than yielding an unchecked ID.
    """
    scan = _Scan(path, kind)
    with _open(path, "from_file", str(path)) as handle:
        for number, row in scan.rows_of(handle):
            if isinstance(row, str):
                raise SpecError(f"from_file: {path} line {number}: {row}")
            assert isinstance(row, Target)  # scan.targets: rows come one by one
            yield row
    if scan.fatal is not None:
        raise SpecError(f"from_file: {path} {scan.fatal}")
    if expected_sha256 is not None and scan.digest.hexdigest() != expected_sha256:
        raise SpecError(f"from_file: {path} changed after the job spec was validated")
