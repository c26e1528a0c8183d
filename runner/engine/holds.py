"""The hold list a run checks at send time: what the spec and config hold, re-read when a hold
file changes.

A hold added while a run is going takes effect before the next DELETE of what it covers:
:meth:`HoldList.refresh` stats each hold file (at most every ``interval`` seconds) and re-reads
one whose mtime or size changed. A changed file that cannot be read or parsed fails safe: every
conversation counts as held (nothing that could be held is sent) until the file is good again,
and :attr:`HoldList.problem` says why — never an escaping exception.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runner.errors import InputError
from runner.kinds.base import Target
from runner.spec.holds import read_hold_file

__all__ = ["HoldFile", "HoldList", "hold_files"]


@dataclass
class HoldFile:
    """One hold file and what it held when last read."""

    path: Path
    held: frozenset[str] = frozenset()
    stamp: tuple[int, int] | None = None  # (mtime_ns, size) of the version read

    def read(self) -> None:
        """Read the file now (SpecError / OSError when it is bad or gone)."""
        # Stat before reading: a change in between is read again at the next refresh.
        try:
            stat = self.path.stat()
        except OSError:
            read_hold_file(self.path)  # raises the SpecError that names the file and the fix
            raise
        self.held = read_hold_file(self.path)
        self.stamp = (stat.st_mtime_ns, stat.st_size)


@dataclass
class HoldList:
    """Every hold of a job: inline conversations, hold files, and an attributes match."""

    listed: frozenset[str] = frozenset()
    files: Sequence[HoldFile] = ()
    attributes: Mapping[str, object] | None = None
    interval: float = 0.0  # seconds between stats of the files (0: on every check)
    now: Callable[[], float] = field(default=lambda: 0.0)
    problem: str | None = None  # why the holds are failing safe, when they are
    kept: Counter[str] = field(
        default_factory=Counter
    )  # targets kept, by hold ("list", path, "where")
    _checked: float | None = None

    def refresh(self) -> None:
        """Re-read the hold files that changed since they were read."""
        now = self.now()
        if self._checked is not None and now - self._checked < self.interval:
            return
        self._checked = now
        problems = []
        for hold in self.files:
            try:
                stat = hold.path.stat()
                if (stat.st_mtime_ns, stat.st_size) != hold.stamp:
                    hold.read()
            except (OSError, InputError) as e:
                problems.append(
                    str(e) if isinstance(e, InputError) else f"{hold.path}: {e.strerror}"
                )
        self.problem = "; ".join(problems) or None

    def hold_of(self, target: Target, attributes: Mapping[str, object] | None = None) -> str | None:
        """Which hold keeps ``target`` (None when none does): a conversation held by ID or by its
        ``attributes``, or a message or participant of one. Refreshes the files first."""
        self.refresh()
        conversation = target.parent if target.parent is not None else target.id
        if target.parent is None and not _is_conversation(target):
            return None  # a kind that lives outside conversations: no hold names it
        if self.problem is not None:
            return "unreadable hold file"  # fail safe: nothing that could be held is sent
        if conversation in self.listed:
            return "list"
        for hold in self.files:
            if conversation in hold.held:
                return str(hold.path)
        if self.attributes and attributes is not None and _matches(self.attributes, attributes):
            return "where"
        return None

    def holds(self, target: Target, attributes: Mapping[str, object] | None = None) -> bool:
        """Whether ``target`` is held, counting it under the hold that keeps it."""
        hold = self.hold_of(target, attributes)
        if hold is not None:
            self.kept[hold] += 1
        return hold is not None


def _is_conversation(target: Target) -> bool:
    return target.kind.covers_children or target.kind.name == "conversation_v2"


def _matches(wanted: Mapping[str, object], attributes: Mapping[str, object]) -> bool:
    return all(k in attributes and attributes[k] == v for k, v in wanted.items())


def hold_files(paths: Sequence[str], base: Path) -> list[HoldFile]:
    """Hold files named in a spec, relative to ``base``, read once (SpecError when bad)."""
    files = [HoldFile(base / p) for p in paths]
    for hold in files:
        try:
            hold.read()
        except OSError as e:  # gone between the spec's check and now
            raise InputError(f"exclude.from_file: {hold.path}: {e.strerror}") from None
    return files
