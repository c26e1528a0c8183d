"""The hold list a run checks at send time: what the spec and config hold, re-read when a hold
file changes.

A hold added while a run is going takes effect before the next DELETE of what it covers:
:meth:`HoldList.refresh` stats each hold file (at most every ``interval`` seconds) and re-reads
one whose mtime or size changed. A changed file that cannot be read or parsed fails safe: every
conversation counts as held (nothing that could be held is sent) until the file is good again,
and :attr:`HoldList.problem` says why — never an escaping exception.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runner.errors import InputError
from runner.kinds.base import Target
from runner.spec.holds import HoldSpec, read_hold_file

__all__ = [
    "UNREADABLE_ATTRIBUTES",
    "UNREADABLE_FILE",
    "WHERE",
    "HoldFile",
    "HoldList",
    "hold_files",
    "parse_attributes",
]


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


# Twilio caps a conversation's attributes at 16 KiB; anything longer is not an answer of its.
ATTRIBUTES_MAX_CHARS = 64 * 1024
UNREADABLE_FILE = "unreadable hold file"
UNREADABLE_ATTRIBUTES = "unreadable attributes"
WHERE = "where"


@dataclass
class HoldList:
    """Every hold of a job: inline conversations, hold files, and attribute matches.

    The attributes of a v1 conversation are read in memory only: :meth:`note_attributes` keeps
    the verdict (which hold, if any), never the attributes themselves."""

    listed: frozenset[str] = frozenset()
    files: Sequence[HoldFile] = ()
    wheres: Sequence[Mapping[str, object]] = ()
    interval: float = 0.0  # seconds between stats of the files (0: on every check)
    now: Callable[[], float] = field(default=lambda: 0.0)
    problem: str | None = None  # why the holds are failing safe, when they are
    kept: Counter[str] = field(
        default_factory=Counter
    )  # targets kept, by hold ("list", path, "where")
    _checked: float | None = None
    # v1 conversation SID → the hold its attributes put it under (None: none): a verdict, so
    # that no attribute value stays in memory past the moment it was read.
    _verdicts: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def of(
        cls, spec: HoldSpec, *, interval: float = 0.0, now: Callable[[], float] | None = None
    ) -> HoldList:
        """The hold list of resolved holds ``spec``, its files read now (InputError if bad)."""
        files = [HoldFile(path) for path in spec.files]
        for hold in files:
            try:
                hold.read()
            except OSError as e:  # gone between the spec's check and now
                raise InputError(f"from_file: {hold.path}: {e.strerror}") from None
        return cls(
            listed=spec.listed,
            files=files,
            wheres=[dict(where) for where in spec.wheres],
            interval=interval,
            now=now or (lambda: 0.0),
        )

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

    def note_attributes(self, conversation: str, raw: object) -> None:
        """The ``attributes`` a reply gave for v1 conversation ``conversation``: decide now
        whether they put it under a hold, and keep only that. ``raw`` is untrusted: a value
        that is not a JSON object (bounded) fails safe — the conversation is held."""
        if not self.wheres:
            return
        parsed = parse_attributes(raw)
        if parsed is None:
            self._verdicts[conversation] = UNREADABLE_ATTRIBUTES
        else:
            matched = any(_matches(where, parsed) for where in self.wheres)
            self._verdicts[conversation] = WHERE if matched else None

    def note_unreadable(self, conversation: str) -> None:
        """The attributes of ``conversation`` could not be read: it is held for this run."""
        if self.wheres:
            self._verdicts[conversation] = UNREADABLE_ATTRIBUTES

    def attributes_unknown(self, target: Target) -> str | None:
        """The v1 conversation whose attributes must be read before ``target``'s DELETE (None
        when no attribute hold applies, or its verdict is known)."""
        if not self.wheres or target.kind.name not in _V1_FAMILY:
            return None
        conversation = target.parent if target.parent is not None else target.id
        return None if conversation in self._verdicts else conversation

    def hold_of(self, target: Target, *, sending: bool = False) -> str | None:
        """Which hold keeps ``target`` (None when none does): a conversation held by ID, by a
        hold file or by its attributes, or a message or participant of one. Refreshes the
        files first. ``sending``: the DELETE is about to go, so a v1 conversation whose
        attributes were never read is held (fail safe) rather than sent."""
        conversation = target.parent if target.parent is not None else target.id
        if target.parent is None and not _is_conversation(target):
            return None  # a kind that lives outside conversations: no hold names it
        self.refresh()  # after that return: a User or a store costs no stat of the hold files
        if self.problem is not None:
            return UNREADABLE_FILE  # fail safe: nothing that could be held is sent
        if conversation in self.listed:
            return "list"
        for hold in self.files:
            if conversation in hold.held:
                return str(hold.path)
        if self.wheres and target.kind.name in _V1_FAMILY:
            if conversation in self._verdicts:
                return self._verdicts[conversation]
            if sending:
                return UNREADABLE_ATTRIBUTES
        return None

    def holds(self, target: Target, *, sending: bool = False) -> bool:
        """Whether ``target`` is held, counting it under the hold that keeps it."""
        hold = self.hold_of(target, sending=sending)
        if hold is not None:
            self.kept[hold] += 1
        return hold is not None


# The kinds that live in a v1 conversation (attributes are a v1 conversation's).
_V1_FAMILY = frozenset({"conversation_v1", "message", "participant"})


def _is_conversation(target: Target) -> bool:
    return target.kind.covers_children or target.kind.name == "conversation_v2"


def _matches(wanted: Mapping[str, object], attributes: Mapping[str, object]) -> bool:
    # `True == 1` in Python: a hold on `true` must not match a 1, so types are compared too.
    return all(
        k in attributes and type(attributes[k]) is type(v) and attributes[k] == v
        for k, v in wanted.items()
    )


def parse_attributes(raw: object) -> Mapping[str, object] | None:
    """A conversation's ``attributes`` (a JSON string on Twilio) as an object; None when it is
    not one (not text, too long, not JSON, not an object): never an exception."""
    if isinstance(raw, dict):
        return raw  # a server that sends the object itself
    if not isinstance(raw, str) or len(raw) > ATTRIBUTES_MAX_CHARS:
        return None
    try:
        parsed = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return parsed if isinstance(parsed, dict) else None


def hold_files(paths: Sequence[str], base: Path) -> list[HoldFile]:
    """Hold files named in a spec, relative to ``base``, read once (SpecError when bad)."""
    files = [HoldFile(base / p) for p in paths]
    for hold in files:
        try:
            hold.read()
        except OSError as e:  # gone between the spec's check and now
            raise InputError(f"exclude.from_file: {hold.path}: {e.strerror}") from None
    return files
