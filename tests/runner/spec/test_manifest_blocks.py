"""Plain CSV manifests are checked a block at a time (issue 16 §1); what is accepted, what is
refused and how each problem is worded must not depend on where the blocks fall."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from runner.errors import SpecError
from runner.kinds.base import Target
from runner.kinds.registry import KINDS, by_spec
from runner.spec import manifest
from runner.spec.manifest import iter_manifest, validate_manifest

CH = "CH" + "0123456789abcdef" * 2
MESSAGES = by_spec("messages")
MEMORY_STORES = by_spec("memory_stores")


def im(n: int) -> str:
    return f"IM{n:032x}"


@pytest.fixture(params=[64, 1000, 1 << 20], ids=["tiny-blocks", "small-blocks", "one-block"])
def block(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Each test runs with blocks smaller than a row, of a few rows, and larger than the file."""
    size: int = request.param
    monkeypatch.setattr(manifest, "BLOCK_BYTES", size)
    return size


def test_plain_and_other_rows_mixed_give_every_target_its_count_and_hash(
    tmp_path: Path, block: int
) -> None:
    """Rows the block check cannot vouch for (quotes, a blank line, CRLF, a tab, extra
    columns) between plain ones are read a line at a time: same targets, count and hash."""
    lines = ["note,id,conversation_sid"]
    expected = []
    for n in range(600):
        sid = im(n)
        if n == 100:
            lines.append(f'"a, quoted note",{sid},{CH}')
        elif n == 200:
            lines.append("")
            lines.append(f"x,{sid},{CH}")
        elif n == 300:
            lines.append(f"x,{sid},{CH}\r")
        elif n == 400:
            lines.append(f"x,\t{sid} , {CH}\t,extra,columns")
        else:
            lines.append(f"x,{sid},{CH}")
        expected.append(Target(MESSAGES, sid, CH))
    path = tmp_path / "m.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    info = validate_manifest(path, MESSAGES)
    assert info.count == 600
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert list(iter_manifest(path, MESSAGES, expected_sha256=info.sha256)) == expected


def test_last_row_without_a_line_break_counts(tmp_path: Path, block: int) -> None:
    """The file's last row need not end with a line break."""
    path = tmp_path / "m.csv"
    path.write_text("id,conversation_sid\n" + "\n".join(f"{im(n)},{CH}" for n in range(50)))
    assert validate_manifest(path, MESSAGES).count == 50
    assert len(list(iter_manifest(path, MESSAGES))) == 50


def test_a_bad_row_among_plain_ones_is_named_by_its_line(tmp_path: Path, block: int) -> None:
    """A bad row deep in the file, an over-long one and one that is not UTF-8: each reported
    at its physical line, whatever block it falls in."""
    rows = [f"{im(n)},{CH}".encode() for n in range(900)]
    rows[300] = f"IM12,{CH}".encode()
    rows[500] = f"{im(500)},{CH},".encode() + b"x" * (manifest.MAX_LINE_BYTES + 10)
    rows[700] = f"{im(700)},{CH},caf\xe9".encode("latin-1")
    path = tmp_path / "m.csv"
    path.write_bytes(b"id,conversation_sid\n" + b"\n".join(rows) + b"\n")
    with pytest.raises(SpecError) as info:
        validate_manifest(path, MESSAGES, where="targets[0].from_file", display="m.csv")
    assert info.value.problems == (
        "targets[0].from_file: m.csv line 302: 'IM12' is not a Message SID "
        "(IM followed by 32 hex digits)",
        "targets[0].from_file: m.csv line 502: is not UTF-8 text, or is longer than 64 KiB",
        "targets[0].from_file: m.csv line 702: is not UTF-8 text, or is longer than 64 KiB",
    )


def test_a_row_made_bad_after_validation_stops_the_stream_at_it(tmp_path: Path, block: int) -> None:
    """Iteration checks every row again: a row edited after validation raises at its line and
    no row after it is yielded."""
    path = tmp_path / "m.csv"
    good = [f"{im(n)},{CH}" for n in range(400)]
    path.write_text("id,conversation_sid\n" + "\n".join(good) + "\n")
    info = validate_manifest(path, MESSAGES)
    good[250] = f"{im(250)[:-1]}/,{CH}"
    path.write_text("id,conversation_sid\n" + "\n".join(good) + "\n")
    seen: list[Target] = []
    with pytest.raises(SpecError, match="line 252: "):
        for target in iter_manifest(path, MESSAGES, expected_sha256=info.sha256):
            seen.append(target)
    assert len(seen) <= 250
    assert all(t.id != im(250) and "/" not in t.id for t in seen)


def test_a_kind_without_a_parent_reads_plain_blocks_too(tmp_path: Path, block: int) -> None:
    """A kind of one ID column (a Memory store), its conversation column ignored."""
    store = "mem_store_01h9d8r0vte3hz8tykdj329"
    ids = [f"{store}{n:03d}" for n in range(300)]
    path = tmp_path / "s.csv"
    path.write_text("id,conversation_sid\n" + "".join(f"{i},whatever\n" for i in ids))
    assert validate_manifest(path, MEMORY_STORES).count == 300
    assert list(iter_manifest(path, MEMORY_STORES)) == [Target(MEMORY_STORES, i) for i in ids]


def test_every_kind_can_be_checked_a_block_at_a_time() -> None:
    """Every kind's ID pattern is one the block check can use (a pattern it cannot would make
    that kind's manifests fall back to the line-at-a-time parser, silently slower)."""
    assert [
        kind.name
        for kind in KINDS
        if manifest.plain_rows(kind, 0, 1 if kind.has_parent else -1) is None
    ] == []
