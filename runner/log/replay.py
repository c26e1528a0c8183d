"""Replaying a checkpoint log: :class:`Replay` and :func:`read_checkpoint`.

Every line is decoded and validated by :mod:`runner.log.records`; this module keeps what the
lines say, compactly enough for millions of targets.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import CheckpointError, UntrustedFile, UntrustedLine
from runner.files import open_regular
from runner.kinds.base import ResourceKind, Target
from runner.log.digests import DigestMap, SortedDigests
from runner.log.records import (
    ABSENT_STATES,
    DRIVEN,
    RECORD_VERSION,
    STATE_BY_VALUE,
    STATE_INDEX,
    STATES,
    UNSENT_STATES,
    Header,
    Pace,
    State,
    TargetRecord,
    check_ids,
    checked_parent,
    checked_service,
    decode_footer_object,
    decode_object,
    decode_pace,
    decode_progress,
    decode_request_found,
    decode_services,
    decode_services_rejected,
    decode_targets,
    is_target_object,
    key_hash,
    kind_at,
    kind_code,
    kind_of,
    line_ids,
    pack,
)

_GROUPED_KEYS = frozenset({"s", "k", "c", "sv", "ts", "ids"})
_SINGLE_KEYS = (_GROUPED_KEYS - {"ids"}) | {"id"}  # a line a group of one would be
_GONE_FOR_GOOD = ABSENT_STATES | {State.COVERED}
_FINISHED_QUICKLY = _GONE_FOR_GOOD | {State.HELD}  # final lines the grouped fast path takes

# A requested target read from a grouped line, kept as a tuple until the log is fully read:
# most are finished by a later line, so building their records would be wasted work.
_Lazy = tuple[ResourceKind, str, "str | None", int, "str | None"]


@dataclass
class Replay:
    """What a checkpoint log says, replayed in order; compact enough for millions of targets.

    Only the latest state of each target is kept, as one small int (state, resource and the
    ``ts`` of its last line) under the hash of its key; full records are kept only for targets
    still open (requested, accepted) or failed — the ones a resume drives again — and the
    Operation id of each async target.
    """

    header: Header
    path: Path
    states: dict[int, int] | DigestMap | SortedDigests = field(default_factory=dict)
    open: dict[int, TargetRecord] = field(default_factory=dict)
    failed: dict[int, TargetRecord] = field(default_factory=dict)
    operations: dict[int, str] = field(default_factory=dict)
    deleted_conversations: set[str] = field(default_factory=set)
    discovered: dict[int, int] = field(default_factory=dict)
    discovery_done: set[int] = field(default_factory=set)
    # Conversations whose children each source listed in full, so a resume skips them.
    children_listed: dict[int, set[str]] = field(default_factory=dict)
    # Targets whose first line is a final one (no requested line before it): logs written by
    # the scheduler at 0610c85 have just that for sync kinds. The report makes their rows from
    # it; a log of today's writer always logs a request first, so this stays empty.
    unrequested: set[int] = field(default_factory=set)
    # Services each source listed in full, so a resume skips them; and the Services a
    # `service: all` run found when it began (None until that line).
    services_listed: dict[int, set[str]] = field(default_factory=dict)
    services: tuple[str, ...] | None = None
    services_rejected: int = 0  # Services the frozen listing left out (an invalid SID)
    # Erasure requests listed in full, by position (targets[2].from_file line 7): how many
    # things each found (0: found nowhere, reported not_found).
    requests: dict[str, int] = field(default_factory=dict)
    # What each request found in each Service (None: the job's one) before deleting any of it.
    requests_found: dict[tuple[str, str | None], int] = field(default_factory=dict)
    # The last valid pace line: what the run had learned of the server's limits, for a resume
    # to start from (issue 14 §6). None in logs written before it.
    pace: Pace | None = None
    exit_code: int | None = None
    traffic: Counter[str] = field(default_factory=Counter)
    loop: str | None = None  # the event loop of the last process whose footer names one
    warnings: list[str] = field(default_factory=list)
    lines: int = 0
    size: int = 0  # bytes of the log replayed: the end of its last whole, valid line
    last_ts: int = 0
    # Seconds the processes that drove the log were at work, as its lines show: each from its
    # first timed line (the run's start, for the first) to its footer or its last line. The
    # time between a stop and the resume that followed is not counted.
    ended_sessions: int = 0
    session_start: int | None = 0  # the current process's first ts; None after a footer
    _lazy: dict[int, _Lazy] = field(default_factory=dict, repr=False)

    @property
    def active_seconds(self) -> int:
        """Seconds of work over every process that drove the log (not the wall time since the
        run began, which counts the pauses between a stop and its resume)."""
        current = 0 if self.session_start is None else self.last_ts - self.session_start
        return self.ended_sessions + max(0, current)

    def _timed(self, ts: int) -> None:
        """A line of ``ts`` (seconds since the run began) was read."""
        if ts > self.last_ts:
            self.last_ts = ts
        if self.session_start is None:
            self.session_start = ts

    def _session_ended(self, ts: int | None) -> None:
        """A footer: the process that drove the log ended (at ``ts``, if it says)."""
        if self.session_start is not None:
            end = max(self.last_ts, ts or 0)
            self.ended_sessions += max(0, end - self.session_start)
        self.session_start = None

    def state_of(self, target: Target) -> State | None:
        """The latest recorded state of ``target``, if the log names it."""
        code = self.states.get(key_hash(target.key))
        return None if code is None else STATES[code & 7]

    def latest(self, digest: int) -> tuple[State, int] | None:
        """(state, ts) of the last line about the target with key hash ``digest``."""
        code = self.states.get(digest)
        return None if code is None else (STATES[code & 7], code >> 6)

    def erasure_requests(self) -> list[tuple[str, int]]:
        """The erasure requests listed in full and how much each found, by position, in the
        spec's order (line 9 before line 10)."""
        return sorted(
            self.requests.items(),
            key=lambda item: [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", item[0])],
        )

    def requests_not_found(self) -> list[str]:
        """The positions of the erasure requests found nowhere, in the spec's order."""
        return [position for position, found in self.erasure_requests() if not found]

    def counts(self) -> Counter[tuple[ResourceKind, State]]:
        """Targets by resource and latest state, in the registry's order of kinds and states
        (the same log gives the same report, whatever map its replay used)."""
        raw = self._low_counts()
        return Counter({(kind_at(c >> 3), STATES[c & 7]): n for c, n in sorted(raw.items())})

    def admitted(self) -> int:
        """Targets the log records as driven — every one but those covered by their
        conversation or held: a DELETE was sent for each, or may have been (what
        safety.max_deletions counts)."""
        unsent = {STATE_INDEX[state] for state in UNSENT_STATES}  # covered, held: never sent
        return sum(n for code, n in self._low_counts().items() if code & 7 not in unsent)

    def _low_counts(self) -> Counter[int]:
        """Targets by the low six bits of their packed state (kind and state index)."""
        if isinstance(self.states, SortedDigests):  # a snapshot's: counted without a loop
            return self.states.low_counts()
        return Counter(c & 63 for c in self.states.values())

    def _pop_open(self, digest: int) -> TargetRecord | None:
        lazy = self._lazy.pop(digest, None)
        if lazy is not None:
            resource, id_, parent, generation, service = lazy
            target = Target(resource, id_, parent, service)
            return TargetRecord(target, State.REQUESTED, generation=generation)
        return self.open.pop(digest, None)

    def _settle(self) -> None:
        """Build the records of the requested targets that no later line finished."""
        for digest in list(self._lazy):
            record = self._pop_open(digest)
            assert record is not None
            self.open[digest] = record

    def _apply_group(self, rec: dict[str, Any]) -> bool:
        """Apply a grouped line the quick way; False if it needs the general path."""
        ids = rec["ids"]
        if not isinstance(ids, list) or not ids:
            raise ValueError("'ids' is not a non-empty list")
        return self._apply_ids(rec, ids, _GROUPED_KEYS)

    def _apply_single(self, rec: dict[str, Any]) -> bool:
        """Apply a one-target line as the group of one it is, the quick way; False if it needs
        the general path. Most outcome lines of a fanout are such lines: a batch of outcomes
        spans many conversations, and only one conversation's targets share a line."""
        one = rec.get("id")
        if one is None or not rec.keys() <= _SINGLE_KEYS:
            return False
        return self._apply_ids(rec, [one], _SINGLE_KEYS)

    def _apply_ids(self, rec: dict[str, Any], ids: list[Any], keys: frozenset[str]) -> bool:
        """The quick way of a line of ``ids`` whose other fields are ``keys`` at most."""
        state = STATE_BY_VALUE[rec["s"]]
        if not rec.keys() <= keys or not (state in _FINISHED_QUICKLY or state is State.REQUESTED):
            return False
        resource = kind_of(rec["k"])
        parent = checked_parent(resource, rec.get("c"), state)
        service = None if rec.get("sv") is None else checked_service(rec["sv"])
        ts = rec.get("ts") or 0
        if not isinstance(ts, int):
            raise ValueError("malformed grouped line")
        check_ids(resource, ids)
        code = pack(ts, resource, state)
        if "ts" in rec:
            self._timed(ts)
        prefix = kind_code(resource) + ":"
        states, lazy, open_, failed = self.states, self._lazy, self.open, self.failed
        if state is not State.REQUESTED:
            # The common case, kept tight: a batch of targets finished.
            for one in ids:
                digest = key_hash(prefix + str(one))
                if (
                    lazy.pop(digest, None) is None
                    and open_.pop(digest, None) is None
                    and state not in UNSENT_STATES
                    and states.get(digest) is None
                ):
                    self.unrequested.add(digest)
                states[digest] = code
                if failed:
                    failed.pop(digest, None)
        else:
            for one in ids:
                self._requested(str(one), prefix, code, resource, parent, service)
        if resource.covers_children:
            if state.is_absent:
                self.deleted_conversations.update(str(i) for i in ids)
            else:
                self.deleted_conversations.difference_update(str(i) for i in ids)
        return True

    def _requested(
        self,
        id_: str,
        prefix: str,
        code: int,
        resource: ResourceKind,
        parent: str | None,
        service: str | None,
    ) -> None:
        digest = key_hash(prefix + id_)
        self.states[digest] = code
        earlier = self._lazy.pop(digest, None)
        previous = self.open.pop(digest, None) if earlier is None else None
        failure = self.failed.pop(digest, None)
        generation, known_parent, known_service = (
            (0, None, None) if earlier is None else (earlier[3], earlier[2], earlier[4])
        )
        for before in (previous, failure):
            if before is not None:
                generation = max(generation, before.generation)
                known_parent = before.target.parent
                known_service = before.target.service
        if parent is None:
            parent = known_parent
        if service is None:
            service = known_service
        if previous is not None and previous.operation is not None:
            # Rare (requested again after an Operation): keep the Operation, the long way.
            self.open[digest] = TargetRecord(
                Target(resource, id_, parent, service),
                State.REQUESTED,
                operation=previous.operation,
                generation=generation,
            )
        else:
            self._lazy[digest] = (resource, id_, parent, generation, service)

    def _apply_target(self, rec: TargetRecord) -> None:
        target = rec.target
        digest = key_hash(target.key)
        ts = rec.ts or 0
        if (
            rec.state.is_final
            and rec.state not in UNSENT_STATES
            and self.states.get(digest) is None
        ):
            self.unrequested.add(digest)
        self.states[digest] = pack(ts, target.kind, rec.state)
        if rec.ts is not None:
            self._timed(ts)
        if rec.operation is not None:
            self.operations[digest] = rec.operation
        previous = self._pop_open(digest)
        if previous is not None:
            if rec.operation is None:
                rec.operation = previous.operation
            rec.generation = max(rec.generation, previous.generation)
            if target.parent is None:
                rec.target = previous.target  # later lines leave out what the first one named
        earlier_failure = self.failed.pop(digest, None)
        if earlier_failure is not None:
            rec.generation = max(rec.generation, earlier_failure.generation)
            if target.parent is None:
                rec.target = earlier_failure.target
        if rec.state in DRIVEN and rec.target.parent is None and target.kind.has_parent:
            raise UntrustedLine(
                f"{target.kind.name} {target.id} is left to drive, but no line names its "
                "conversation"
            )
        if rec.state in (State.REQUESTED, State.ACCEPTED):
            self.open[digest] = rec
        elif rec.state is State.FAILED:
            self.failed[digest] = rec
        if target.kind.covers_children:
            if rec.state.is_absent:
                self.deleted_conversations.add(target.id)
            else:
                self.deleted_conversations.discard(target.id)


def read_checkpoint(
    path: Path,
    *,
    into: Replay | None = None,
    compact_for: int | None = None,
    until: int | None = None,
) -> Replay:
    """Replay a log. A torn or garbled *last* line is reported and ignored; damage anywhere else
    is refused with its line number, because skipping it could lose a target's state.

    With ``into`` (a replay of this same log), only what was appended since is read and applied
    to it — how a resume brings its replay up to date without holding a second copy.

    ``compact_for`` (about how many targets the log names) keeps the final states in a
    :class:`DigestMap`, a fifth of a dict's memory but slower to fill: for the report at the end
    of a run, where memory peaks, not for a resume racing to its first request.

    ``until`` (a byte offset at the end of a line) reads no line beyond it: the durable prefix
    of a log another process is appending to, which a snapshot of it covers.
    """
    replay = into
    number = before = 0 if into is None else into.lines
    end = 0 if into is None else into.size
    for number, raw, last, end_of_line in _lines(path, end, before, until):
        try:
            rec = decode_object(raw)
            if replay is None:
                replay = _start_replay(rec, path)
                if compact_for is not None:
                    replay.states = DigestMap(compact_for)
            else:
                _apply(replay, rec)
            end = end_of_line
        except UntrustedLine as exc:
            raise CheckpointError(
                f"checkpoint {path} line {number} was not written by bulkops: {exc}; it cannot "
                "be resumed (restore the log, or start the job again with `bulkops run`)"
            ) from exc
        except (ValueError, KeyError, TypeError) as exc:
            if last:
                if replay is None:
                    break
                replay.warnings.append(
                    f"line {number}: torn or partial last line ignored ({len(raw)} bytes); "
                    "the targets it named are driven again"
                )
                break
            raise CheckpointError(
                f"checkpoint {path} is corrupt at line {number}: {exc}; it cannot be resumed "
                "safely (only a damaged last line is tolerated)"
            ) from exc
    if replay is None:
        raise CheckpointError(
            f"checkpoint {path} has no header line: the run died before writing it; "
            "start the job again with `bulkops run`"
        )
    replay.lines = number
    replay.size = end
    replay._settle()
    return replay


# The longest line a replay reads: bulkops' longest is a grouped line of at most
# records.GROUP_MAX_IDS IDs (about 4 MB) or a header holding a canonical spec (the spec file is
# at most 1 MB).
MAX_LINE = 64 * 1024 * 1024


def _lines(
    path: Path, offset: int = 0, before: int = 0, until: int | None = None
) -> Iterator[tuple[int, bytes, bool, int]]:
    """(line number, bytes, is-last, offset after it) of every non-blank line from byte
    ``offset`` on (where line ``before`` ended) to byte ``until`` (or the end), streamed."""
    try:
        # Never through a link, never a FIFO or device (a FIFO would block the read forever).
        handle = os.fdopen(open_regular(path, follow=False), "rb")
    except UntrustedFile as exc:
        raise untrusted(exc) from exc
    except FileNotFoundError as exc:
        raise CheckpointError(f"checkpoint {path} does not exist") from exc
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path} cannot be read: {exc.strerror}") from exc
    with handle:
        handle.seek(offset)
        pending: tuple[int, bytes, int] | None = None
        position = offset
        readline = handle.readline
        number = before
        # Bounded: a log is untrusted, and one line with no newline in it would be read whole.
        while raw := readline(MAX_LINE + 1):
            number += 1
            if len(raw) > MAX_LINE:
                raise CheckpointError(
                    f"checkpoint {path} line {number} is longer than {MAX_LINE:,} bytes, which "
                    "bulkops never writes; it cannot be resumed (restore the log, or start the "
                    "job again with `bulkops run`)"
                )
            position += len(raw)
            if until is not None and position > until:
                break
            if not raw.strip():
                continue
            if pending is not None:
                yield pending[0], pending[1], False, pending[2]
            pending = (number, raw, position)
        if pending is not None:
            yield pending[0], pending[1], True, pending[2]


def iter_target_lines(path: Path) -> Iterator[TargetRecord]:
    """Every well-formed target line of a log, in order, decoded (a grouped line gives one
    record per target)."""
    for rec in iter_target_objects(path):
        try:
            yield from decode_targets(rec)
        except (ValueError, KeyError, TypeError, CheckpointError):
            continue


def lines_naming(path: Path, keys: set[str]) -> dict[str, int]:
    """The number of the last line naming each of the target ``keys`` (for an error message
    that points at the line to look at); a key no line names is left out."""
    found: dict[str, int] = {}
    for number, raw, _last, _end in _lines(path):
        try:
            rec = decode_object(raw)
            if "s" not in rec:
                continue
            code = rec["k"]
            for one in line_ids(rec):
                key = f"{code}:{one}"
                if key in keys:
                    found[key] = number
        except (ValueError, KeyError, TypeError):
            continue
    return found


def iter_target_objects(path: Path) -> Iterator[dict[str, Any]]:
    """Every well-formed target line of a log as its JSON object, in order (for reports; damage
    is skipped here because :func:`read_checkpoint` has already judged the file)."""
    for _number, raw, _last, _end in _lines(path):
        try:
            rec = decode_object(raw)
        except ValueError:
            continue
        if is_target_object(rec):
            yield rec


def _start_replay(rec: dict[str, Any], path: Path) -> Replay:
    if rec.get("t") != "H":
        raise CheckpointError(f"checkpoint {path} does not start with a header line")
    if rec.get("v") != RECORD_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has record version {rec.get('v')!r}; "
            f"this bulkops reads version {RECORD_VERSION}"
        )
    return Replay(Header.from_record(rec), path)


def _apply(replay: Replay, rec: dict[str, Any]) -> None:
    kind = rec.get("t")
    if kind is None:
        if replay._apply_group(rec) if "ids" in rec else replay._apply_single(rec):
            return
        for target_rec in decode_targets(rec):
            replay._apply_target(target_rec)
    elif kind == "P":
        progress = decode_progress(rec)
        if progress.listed is not None:
            replay.children_listed.setdefault(progress.source, set()).add(progress.listed)
            if progress.settled is not None:
                replay.requests[progress.listed] = progress.settled
        elif progress.service is not None:
            replay.services_listed.setdefault(progress.source, set()).add(progress.service)
        else:
            replay.discovered[progress.source] = progress.found
            if progress.done:
                replay.discovery_done.add(progress.source)
    elif kind == "F":
        found = decode_request_found(rec)
        key = (found.request, found.service)
        replay.requests_found[key] = max(replay.requests_found.get(key, 0), found.found)
    elif kind == "E":
        footer = decode_footer_object(rec)
        replay.exit_code = footer.exit_code
        replay._session_ended(footer.ts)
        replay.traffic.update(footer.traffic)  # each process that drove the log adds its own
        replay.loop = footer.loop or replay.loop
    elif kind == "S":
        replay.services = decode_services(rec)
        replay.services_rejected = decode_services_rejected(rec)
    elif kind == "L":
        _apply_pace(replay, rec)
    elif kind == "H":
        raise ValueError("a second header line")
    else:
        raise ValueError(f"unknown record type {kind!r}")


def _apply_pace(replay: Replay, rec: dict[str, Any]) -> None:
    """A pace line only speeds a resume's start: one that is not valid is ignored with a
    warning (the pace is then learned again, from the last valid line or cold), never damage."""
    try:
        replay.pace = decode_pace(rec)
    except (ValueError, KeyError, TypeError) as exc:
        warning = f"a pace line was ignored ({exc}); a resume starts from an earlier one, or cold"
        if warning not in replay.warnings:
            replay.warnings.append(warning)


def untrusted(exc: UntrustedFile) -> CheckpointError:
    """The refusal of a log file that is not this user's own regular file."""
    return CheckpointError(f"checkpoint {exc.path} {exc.reason}; {exc.fix}")
