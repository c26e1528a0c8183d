"""How a plan reads on the terminal: counts per kind, then a sample of the targets, each by its
own ID and, for a message or participant, its conversation in a column of its own.

IDs of one kind share their first characters (``IM``, ``CH``), so a column cut at its end shows
the same ``CH0c5c…`` on every row. When full IDs do not fit, each is shortened to its type and
its *tail*, with as many characters of the tail as it takes for every ID shown to read
differently: distinct IDs stay distinct by construction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from rich.console import Console
from rich.table import Table

from runner.kinds.base import ResourceKind, Target
from runner.kinds.registry import KINDS

__all__ = ["holds_table", "plan_tables", "print_plan", "shorten"]

_LEAST_TAIL = 6  # hex characters: below this, a tail says little to a person comparing IDs
# What a table spends on borders and padding per column (rich's default box), and once.
_CHROME_PER_COLUMN, _CHROME = 3, 1


def shorten(ids: Iterable[str], room: int) -> dict[str, str]:
    """Each of ``ids`` as shown in a column ``room`` characters wide: whole if every one fits,
    else its type prefix, ``…`` and the shortest tail (at least 6, or what fits) that keeps
    every shown ID different from the others."""
    unique = sorted(set(ids))
    if not unique or max(len(i) for i in unique) <= room:
        return {i: i for i in unique}
    tail = max(_LEAST_TAIL, room - 3)
    while len({_shown(i, tail) for i in unique}) < len(unique):
        tail += 1
    return {i: _shown(i, tail) for i in unique}


def _shown(value: str, tail: int) -> str:
    # A SID's type is its two capitals (CH, IM, MB); other IDs (conv_conversation_…) show none.
    prefix = value[:2] if value[:2].isalpha() and value[:2].isupper() else ""
    if len(prefix) + 1 + tail >= len(value):
        return value
    return f"{prefix}…{value[-tail:]}"


def plan_tables(
    name: str,
    selected: Counter[ResourceKind],
    covered: Counter[ResourceKind],
    samples: Mapping[ResourceKind, Sequence[Target]],
    width: int,
) -> list[Table]:
    """The counts table of the plan of job ``name``, then the sample table (none when nothing
    is selected), fitted to a terminal ``width`` characters wide."""
    counts = Table(title=f"plan for job {name!r} (dry run: nothing deleted)", title_justify="left")
    counts.add_column("kind")
    counts.add_column("selected", justify="right")
    counts.add_column("covered by conversation", justify="right")
    for kind in KINDS:
        if selected[kind] or covered[kind]:
            counts.add_row(kind.label, str(selected[kind]), str(covered[kind]))
    shown = [t for kind in KINDS for t in samples.get(kind, ())]
    if not shown:
        return [counts]
    kind_width = max(len("kind"), *(len(t.kind.label) for t in shown))
    columns = 3 if any(t.parent for t in shown) else 2
    spare = width - kind_width - _CHROME - _CHROME_PER_COLUMN * columns
    room = max(_LEAST_TAIL + 3, spare // (columns - 1))
    ids = shorten((t.id for t in shown), room)
    parents = shorten((t.parent for t in shown if t.parent), room)
    table = Table(title="sample (IDs only)", title_justify="left")
    for column in ("kind", "id", "conversation")[:columns]:
        table.add_column(column, no_wrap=True)
    for target in shown:
        row = [target.kind.label, ids[target.id]]
        if columns == 3:
            row.append(parents[target.parent] if target.parent else "")
        table.add_row(*row)
    return [counts, table]


def print_plan(
    name: str,
    selected: Counter[ResourceKind],
    covered: Counter[ResourceKind],
    samples: Mapping[ResourceKind, Sequence[Target]],
    console: Console,
) -> None:
    """:func:`plan_tables` on ``console``, at its width."""
    for table in plan_tables(name, selected, covered, samples, console.width):
        console.print(table)


def per_service_table(by_service: Mapping[str, Counter[str]]) -> Table:
    """The v1 targets of a job of several Services, counted in each Service."""
    table = Table(title="per Service (v1 targets)", title_justify="left")
    for column in ("service", "selected", "covered by conversation"):
        table.add_column(column)
    for service, counts in sorted(by_service.items()):
        table.add_row(service, str(counts["selected"]), str(counts["covered"]))
    return table


def holds_table(kept: Mapping[str, int]) -> Table:
    """How many found targets each legal hold kept (counts only: what a hold holds is not
    shown). A hold is named ``list`` (the inline conversations), its file's path, ``where`` (the
    attributes), or the reason it failed safe."""
    table = Table(title="held (never touched)", title_justify="left")
    table.add_column("hold")
    table.add_column("targets kept", justify="right")
    for hold, count in sorted(kept.items()):
        table.add_row(hold, str(count))
    return table
