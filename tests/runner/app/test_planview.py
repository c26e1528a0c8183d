"""The plan's sample (issue 14 §1): at 80 columns every sampled target shows its own ID,
distinct from the others by construction, and its conversation in a column of its own."""

from __future__ import annotations

import io
from collections import Counter

from rich.console import Console

from runner.app.planview import plan_tables, shorten
from runner.kinds.base import Target
from runner.kinds.registry import by_spec

MESSAGES = by_spec("messages")
STORES = by_spec("memory_stores")
PARENT = "CH0c5c" + "0" * 26 + "01"
# IDs alike but for their last characters: a column cut at its end shows one of them five times.
IDS = [f"IM0c5c{'a' * 24}{n:04x}" for n in (1, 2, 3, 0x10, 0x100)]


def rendered(width: int) -> str:
    samples = {MESSAGES: [Target(MESSAGES, i, PARENT) for i in IDS]}
    console = Console(file=io.StringIO(), width=width, color_system=None)
    for table in plan_tables("j", Counter({MESSAGES: 5}), Counter(), samples, width):
        console.print(table)
    out = console.file.getvalue()  # type: ignore[attr-defined]  # a StringIO, given above
    assert isinstance(out, str)
    return out


def test_at_80_columns_each_sampled_message_shows_its_own_id() -> None:
    """Five messages of one conversation read as five different IDs, each ending as the ID
    does, with the conversation beside them; no line is wider than the terminal."""
    text = rendered(80)
    rows = [line for line in text.splitlines() if "│ messages" in line and "IM" in line]
    cells = [row.split("│")[2].strip() for row in rows]
    assert len(cells) == 5 and len(set(cells)) == 5
    for cell, full in zip(cells, IDS, strict=True):
        assert cell.startswith("IM…") and full.endswith(cell.removeprefix("IM…"))
    assert all(row.split("│")[3].strip().endswith("001") for row in rows)
    assert max(len(line) for line in text.splitlines()) <= 80


def test_full_ids_are_shown_when_they_fit() -> None:
    """A wide terminal shows every ID and conversation whole."""
    text = rendered(120)
    assert all(i in text for i in IDS) and PARENT in text


def test_shortened_ids_stay_distinct_however_long_their_common_prefix() -> None:
    """IDs that differ only in one early character still read differently."""
    ids = [f"mem_store_{c}{'0' * 25}" for c in "abc"]
    shown = shorten(ids, room=9)
    assert len(set(shown.values())) == 3
    assert shorten(ids, room=40) == {i: i for i in ids}


def test_kinds_without_a_conversation_get_no_conversation_column() -> None:
    """Memory stores have no parent: the sample has no empty conversation column."""
    store = "mem_store_01" + "a" * 24
    samples = {STORES: [Target(STORES, store, None)]}
    (_, table) = plan_tables("j", Counter({STORES: 1}), Counter(), samples, 80)
    assert [c.header for c in table.columns] == ["kind", "id"]
