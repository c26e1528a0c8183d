"""The journal of a verify (runner.log.verify_journal): what its writer writes is what its reader
reads back, and what bulkops could not have written — beyond the bounds, garbled, a source's
finds without their end, an ID that is not one — makes the journal ignored, never trusted."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from runner.errors import CheckpointError, LockedOut
from runner.kinds.base import Target
from runner.kinds.registry import KINDS
from runner.log.records import encode
from runner.log.verify_journal import (
    MAX_LINE,
    JournalHeader,
    JournalIgnored,
    JournalWriter,
    ListedSource,
    Proven,
    journal_path,
    open_journal,
    read_journal,
)

KIND = {k.name: k for k in KINDS}
CH = "CH" + "a" * 32
IS = "IS" + "b" * 32
HEADER = JournalHeader(
    run_id="20261205T000000Z-abcdef",
    log_size=1000,
    log_lines=10,
    log_head="0" * 64,
    log_tail="1" * 64,
    sample_size=5,
    seed=7,
    holds=None,
    version="0.1.0",
    started="2026-12-05T00:00:00+00:00",
)


def message(n: int) -> Target:
    return Target(KIND["message"], f"IM{n:032x}", CH)


def read(data: bytes, tmp_path: Path, bound: int = 1 << 30) -> tuple[Proven, int]:
    path = tmp_path / "j"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        return read_journal(fd, bound)
    finally:
        os.close(fd)


async def test_what_is_written_is_read_back(tmp_path: Path) -> None:
    """Verdicts (more than a line holds) and sources with their finds, Services and holds are
    read back as written; a torn last line is dropped and the offset stops before it."""
    log = tmp_path / "run.jsonl"
    journal = open_journal(log, 0)
    journal.start(HEADER)
    writer = JournalWriter(journal.handle)
    remains = (message(1), Target(KIND["user"], "US" + "c" * 32, None, IS))
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        for n in range(2500):
            writer.verdict(n + 1, gone=n % 10 != 0)
        writer.listed(0, ListedSource(remains, 3, (IS,)))
        writer.listed(2, ListedSource(tuple(message(n) for n in range(250)), 0, None))
        writer.close()
    journal.close()
    data = journal_path(log).read_bytes()
    assert max(len(line) for line in data.splitlines()) < MAX_LINE

    proven, end = read(data + b'{"t":"G","h":["a', tmp_path)
    assert end == len(data)
    assert proven.header == HEADER
    assert proven.gone(11) is False and proven.gone(12) is True
    assert proven.gone(99999) is None
    sources = proven.sources
    assert sources[0] == ListedSource(remains, 3, (IS,))
    assert len(sources[2].remains) == 250 and 1 not in sources


@pytest.mark.parametrize(
    ("tail", "reason"),
    [
        pytest.param(b'{"t":"G","h":["' + b"a" * MAX_LINE + b'"]}\n', "longer than", id="long"),
        pytest.param(b"{not json\n" + encode({"t": "Z"}), "damaged at line 2", id="garbled"),
        pytest.param(
            encode({"t": "M", "src": 0, "rem": [{"k": "m", "id": "IM" + "0" * 32, "c": CH}]}),
            "without saying it was listed to its end",
            id="finds-without-end",
        ),
        pytest.param(
            encode({"t": "L", "src": 0, "held": 0, "n": 3}) + encode({"t": "Z"}),
            "do not add up",
            id="count",
        ),
        pytest.param(
            encode({"t": "M", "src": 0, "rem": [{"k": "m", "id": "../../x", "c": CH}]}),
            "damaged at line 2",
            id="bad-id-last-line",
        ),
        pytest.param(encode({"t": "Z"}) + encode({"t": "G", "h": []}) * 2, "after the end", id="z"),
        pytest.param(encode({"t": "G", "h": ["1" * 24]}) + encode({"t": "Z"}), "key hash", id="h"),
    ],
)
def test_what_bulkops_never_writes_is_ignored(tmp_path: Path, tail: bytes, reason: str) -> None:
    """A line beyond the bound, a garbled line before the last, finds without their source's
    end, counts that do not add up, an ID that is not one (even last), a line after the end or
    a hash of more than 90 bits: the journal is ignored, saying why."""
    with pytest.raises(JournalIgnored, match=reason):
        read(encode(HEADER.to_record()) + tail, tmp_path)


def test_a_journal_beyond_its_bound_or_of_another_version_is_ignored(tmp_path: Path) -> None:
    """Larger than a journal of its log can be, or of another version: ignored."""
    data = encode(HEADER.to_record())
    with pytest.raises(JournalIgnored, match="larger"):
        read(data, tmp_path, bound=len(data) - 1)
    with pytest.raises(JournalIgnored, match="another version"):
        read(data.replace(b'"v":1', b'"v":2'), tmp_path)


def test_a_mismatch_says_what_differs() -> None:
    """Each difference that keeps a journal from being continued is named."""
    from dataclasses import replace

    assert HEADER.mismatch(replace(HEADER, started="2026-12-06T00:00:00+00:00")) is None
    assert "another run" in (HEADER.mismatch(replace(HEADER, run_id="x")) or "")
    grown = HEADER.mismatch(replace(HEADER, log_size=2000, log_lines=12)) or ""
    assert "the log has changed since it began" in grown and "2,000 bytes" in grown
    assert "this one: every target" in (
        HEADER.mismatch(replace(HEADER, sample_size=None, seed=None)) or ""
    )
    assert "legal holds" in (HEADER.mismatch(replace(HEADER, holds="2" * 64)) or "")
    assert "bulkops 0.1.0" in (HEADER.mismatch(replace(HEADER, version="0.2.0")) or "")


def test_a_journal_is_locked_cut_and_finished(tmp_path: Path) -> None:
    """One holder at a time (LockedOut for the next); continuing cuts a torn last line off; a
    finished journal is removed and never continued; another user's kind of file is refused."""
    log = tmp_path / "run.jsonl"
    first = open_journal(log, 0)
    first.start(HEADER)
    with pytest.raises(LockedOut, match="another bulkops verify"):
        open_journal(log, 0)
    first.handle.write(b'{"t":"G","h":["a')
    first.close()

    again = open_journal(log, 0)
    assert again.proven is not None and again.ignored is None
    again.resume("2026-12-06T00:00:00+00:00")
    again.close()
    assert (
        journal_path(log).read_bytes().endswith(b'\n{"t":"S","at":"2026-12-06T00:00:00+00:00"}\n')
    )

    third = open_journal(log, 0)
    assert third.proven is not None and third.proven.sessions == 1
    third.finish()
    third.close()
    assert not journal_path(log).exists()

    # Finished, but a crash kept it from being removed: started over, never continued.
    journal_path(log).write_bytes(encode(HEADER.to_record()) + encode({"t": "Z"}))
    journal_path(log).chmod(0o600)
    fourth = open_journal(log, 0)
    assert fourth.proven is None and fourth.ignored is None
    fourth.close()
    journal_path(log).unlink()

    journal_path(log).mkdir()
    with pytest.raises(CheckpointError, match="is a directory"):
        open_journal(log, 0)
