"""The append-only checkpoint log: one JSON line per state change, IDs only.

Layout (one JSON object per line)::

    {"t":"H", "v":1, "run":…, "job":…, "fp":…, "now":…, "times":{…}, …}   header, first line
    {"s":"Q", "k":"c2", "id":…}                                          requested (async kinds)
    {"s":"A", "k":"c2", "id":…, "op":…, "ts":12}              accepted: Operation id
    {"s":"D"|"G"|"F"|"C", "k":"m", "id":…, "c":CH…, "ts":13}  deleted/gone/failed/covered
    {"t":"P", "src":0, "n":120, "done":true}                 discovery progress of target 0
    {"t":"P", "src":1, "c":"CH…"}                 target 1 listed that conversation's children
    {"t":"E", "exit":0, "ts":20, "requests":…, "retries":…, "throttled":…}   footer: a run
                                                             (process) ended, with its traffic

``ts`` is whole seconds since the header's ``started``, which keeps lines short. A failed line also
carries ``e`` (Twilio's code, or the HTTP status) and ``m`` (Twilio's message, truncated).

One task owns the file (STYLE habit 5): everyone else queues records with it (a list append, not
a stream send: at thousands of targets a second the stream's event-loop round trip per record
cost more than the record), and the writer group-commits — it writes what has arrived, then
fsyncs once in a worker thread while more records queue up. Losing the unsynced tail in a crash
is safe by construction: every delete is idempotent (v1: a repeat answers 404 → gone; v2: the
same Idempotency-Key returns the original Operation), so a target whose line was lost is simply
driven again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO

import anyio
import orjson

from runner.errors import CheckpointError, UntrustedFile, UntrustedLine
from runner.files import (
    create_new,
    make_private_directory,
    open_own,
    open_own_for_append,
    open_regular,
)
from runner.kinds.base import ResourceKind, Target
from runner.kinds.ids import CONVERSATION_SID, is_operation_id, show_value
from runner.kinds.registry import BY_CODE, KINDS
from runner.log.digests import DigestMap

RECORD_VERSION = 2


class State(StrEnum):
    """A target's state in the log. The last line about a target wins."""

    REQUESTED = "Q"
    ACCEPTED = "A"
    DELETED = "D"
    GONE = "G"
    FAILED = "F"
    COVERED = "C"  # removed by the deletion of its conversation, which the same job deletes

    @property
    def is_final(self) -> bool:
        """Whether nothing more will be done for a target in this state."""
        return self in FINAL_STATES


FINAL_STATES = frozenset({State.DELETED, State.GONE, State.FAILED, State.COVERED})


@dataclass(frozen=True, slots=True)
class Header:
    """What a resume needs to reproduce the run: the job, its fingerprint and its frozen times."""

    run_id: str
    job: str
    fingerprint: str
    frozen_now: str
    times: dict[str, str]
    spec_path: str
    config_path: str | None
    version: str
    started: str
    canonical_spec: dict[str, Any] = field(default_factory=dict)
    shard: str | None = None  # "i/n" when the run is one shard of a job
    plan: str | None = None  # the plan file an `apply` run deletes (relative to the log)
    plan_sha256: str | None = None  # ... and its digest, checked again on resume
    # The API origin of each product the run began with ({"conversations": url, ...}): a resume
    # must name the same ones. None in logs written before it was recorded.
    hosts: dict[str, str] | None = None

    def to_record(self) -> dict[str, Any]:
        """The header line's JSON object."""
        return {
            "t": "H",
            "v": RECORD_VERSION,
            "run": self.run_id,
            "job": self.job,
            "fp": self.fingerprint,
            "now": self.frozen_now,
            "times": self.times,
            "spec": self.spec_path,
            "config": self.config_path,
            "bulkops": self.version,
            "started": self.started,
            "canon": self.canonical_spec,
            "shard": self.shard,
            "plan": self.plan,
            "plan_sha256": self.plan_sha256,
            "hosts": self.hosts,
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Header:
        """Rebuild a header from its line; KeyError/TypeError/ValueError mean the line is not a
        (usable) header."""
        for name in ("started", "now"):
            if not isinstance(rec[name], str):
                raise ValueError(f"header field {name!r} is not a timestamp")
            datetime.fromisoformat(rec[name])  # ValueError names the bad value
        return cls(
            run_id=str(rec["run"]),
            job=str(rec["job"]),
            fingerprint=str(rec["fp"]),
            frozen_now=str(rec["now"]),
            times=dict(rec["times"]),
            spec_path=str(rec["spec"]),
            config_path=rec.get("config"),
            version=str(rec["bulkops"]),
            started=str(rec["started"]),
            canonical_spec=dict(rec.get("canon") or {}),
            shard=None if rec.get("shard") is None else str(rec["shard"]),
            plan=None if rec.get("plan") is None else str(rec["plan"]),
            plan_sha256=None if rec.get("plan_sha256") is None else str(rec["plan_sha256"]),
            hosts=_hosts(rec.get("hosts")),
        )

    @property
    def started_at(self) -> datetime:
        """When the run began (UTC)."""
        return datetime.fromisoformat(self.started)


def _hosts(value: object) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError("header field 'hosts' is not a mapping of product to URL")
    return dict(value)


@dataclass(slots=True)
class TargetRecord:
    """One target's state line, decoded."""

    target: Target
    state: State
    operation: str | None = None
    code: int | None = None
    message: str | None = None
    ts: int | None = None
    generation: int = 0  # deliberate retries of a failed target; part of its Idempotency-Key


def target_record(
    target: Target,
    state: State,
    *,
    ts: int | None = None,
    operation: str | None = None,
    code: int | None = None,
    message: str | None = None,
    generation: int = 0,
    with_parent: bool = True,
) -> dict[str, Any]:
    """The JSON object of one target's state line.

    ``with_parent=False`` leaves the conversation out: for a target whose *requested* line,
    which names it, is already in the log, the replay takes the parent from there. The later
    lines of a target are then the same for every conversation and group into one line.
    """
    rec: dict[str, Any] = {"s": state.value, "k": target.kind.code, "id": target.id}
    if target.parent and with_parent:
        rec["c"] = target.parent
    if ts is not None:
        rec["ts"] = ts
    if operation:
        rec["op"] = operation
    if code is not None:
        rec["e"] = code
    if message:
        # Remote text may hold lone surrogates (json.loads accepts them) or line breaks.
        rec["m"] = message.encode("utf-8", "replace").decode("utf-8")
    if generation:
        rec["g"] = generation
    return rec


def key_hash(key: str) -> int:
    """A 90-bit digest of a target key, for this process only (digests never leave it).

    A million of them take a fraction of the memory the keys would, and a collision (which
    would skip a target) stays beyond any real chance: about 1e-15 for ten million targets.
    Two keyed SipHash values (Python's own string hash, of the key and of the key with a
    suffix) are independent pseudo-random numbers and cost a tenth of a hashlib digest, which
    matters when a resume replays millions of lines. 90 bits because any int of 61 to 90 bits
    takes the same 36 bytes (three 30-bit digits), 8 fewer than a 128-bit one.
    """
    return ((hash(key) & _LOW64) << 26) | (hash(key + "\x1f") & _LOW26)


_LOW64 = (1 << 64) - 1
_LOW26 = (1 << 26) - 1
_BY_INDEX = {k.log_index: k for k in KINDS}
_STATES = list(State)
_STATE_INDEX = {s: i for i, s in enumerate(_STATES)}
_STATE_BY_VALUE = {s.value: s for s in State}
_GROUPED_KEYS = frozenset({"s", "k", "c", "ts", "ids"})
_GONE_FOR_GOOD = frozenset({State.DELETED, State.GONE, State.COVERED})

# A requested target read from a grouped line, kept as a tuple until the log is fully read:
# most are finished by a later line, so building their records would be wasted work.
_Lazy = tuple[ResourceKind, str, "str | None", int]


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
    states: dict[int, int] | DigestMap = field(default_factory=dict)
    open: dict[int, TargetRecord] = field(default_factory=dict)
    failed: dict[int, TargetRecord] = field(default_factory=dict)
    operations: dict[int, str] = field(default_factory=dict)
    deleted_conversations: set[str] = field(default_factory=set)
    discovered: dict[int, int] = field(default_factory=dict)
    discovery_done: set[int] = field(default_factory=set)
    # Conversations whose children each source listed in full, so a resume skips them.
    children_listed: dict[int, set[str]] = field(default_factory=dict)
    exit_code: int | None = None
    traffic: Counter[str] = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)
    lines: int = 0
    size: int = 0  # bytes of the log replayed: the end of its last whole, valid line
    last_ts: int = 0
    _lazy: dict[int, _Lazy] = field(default_factory=dict, repr=False)

    def state_of(self, target: Target) -> State | None:
        """The latest recorded state of ``target``, if the log names it."""
        code = self.states.get(key_hash(target.key))
        return None if code is None else _STATES[code & 7]

    def latest(self, digest: int) -> tuple[State, int] | None:
        """(state, ts) of the last line about the target with key hash ``digest``."""
        code = self.states.get(digest)
        return None if code is None else (_STATES[code & 7], code >> 6)

    def counts(self) -> Counter[tuple[ResourceKind, State]]:
        """Targets by kind and latest state, in the registry's order of kinds and states
        (the same log gives the same report, whatever map its replay used)."""
        raw = Counter(c & 63 for c in self.states.values())
        return Counter({(_BY_INDEX[c >> 3], _STATES[c & 7]): n for c, n in sorted(raw.items())})

    def admitted(self) -> int:
        """Targets the log records as driven — every one but those covered by their
        conversation: a DELETE was sent for each, or may have been (what safety.max_deletions
        counts)."""
        covered = _STATE_INDEX[State.COVERED]
        return sum(1 for code in self.states.values() if code & 7 != covered)

    def _pop_open(self, digest: int) -> TargetRecord | None:
        lazy = self._lazy.pop(digest, None)
        if lazy is not None:
            resource, id_, parent, generation = lazy
            target = Target(resource, id_, parent)
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
        state = _STATE_BY_VALUE[rec["s"]]
        if not rec.keys() <= _GROUPED_KEYS or not (
            state in _GONE_FOR_GOOD or state is State.REQUESTED
        ):
            return False
        resource = BY_CODE[rec["k"]]
        parent = _checked_parent(resource, rec.get("c"), state)
        ts = rec.get("ts") or 0
        if not isinstance(ts, int):
            raise ValueError("malformed grouped line")
        _check_ids(resource, ids)
        code = (ts << 6) | (resource.log_index << 3) | _STATE_INDEX[state]
        if ts > self.last_ts:
            self.last_ts = ts
        prefix = resource.code + ":"
        states, lazy, open_, failed = self.states, self._lazy, self.open, self.failed
        if state is not State.REQUESTED:
            # The common case, kept tight: a batch of targets finished.
            for one in ids:
                digest = key_hash(prefix + str(one))
                states[digest] = code
                if lazy.pop(digest, None) is None:
                    open_.pop(digest, None)
                if failed:
                    failed.pop(digest, None)
        else:
            for one in ids:
                self._requested(str(one), prefix, code, resource, parent)
        if resource.covers_children:
            if state in (State.DELETED, State.GONE):
                self.deleted_conversations.update(str(i) for i in ids)
            else:
                self.deleted_conversations.difference_update(str(i) for i in ids)
        return True

    def _requested(
        self, id_: str, prefix: str, code: int, resource: ResourceKind, parent: str | None
    ) -> None:
        digest = key_hash(prefix + id_)
        self.states[digest] = code
        earlier = self._lazy.pop(digest, None)
        previous = self.open.pop(digest, None) if earlier is None else None
        failure = self.failed.pop(digest, None)
        generation, known_parent = (0, None) if earlier is None else (earlier[3], earlier[2])
        for before in (previous, failure):
            if before is not None:
                generation = max(generation, before.generation)
                known_parent = before.target.parent
        if parent is None:
            parent = known_parent
        if previous is not None and previous.operation is not None:
            # Rare (requested again after an Operation): keep the Operation, the long way.
            self.open[digest] = TargetRecord(
                Target(resource, id_, parent),
                State.REQUESTED,
                operation=previous.operation,
                generation=generation,
            )
        else:
            self._lazy[digest] = (resource, id_, parent, generation)

    def _apply_target(self, rec: TargetRecord) -> None:
        target = rec.target
        digest = key_hash(target.key)
        ts = rec.ts or 0
        self.states[digest] = (
            (ts << 6) | (target.kind.log_index << 3) | _STATE_INDEX[rec.state]
        )
        if ts > self.last_ts:
            self.last_ts = ts
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
        if (
            rec.state in _DRIVEN
            and rec.target.parent is None
            and target.kind.has_parent
        ):
            raise UntrustedLine(
                f"{target.kind.name} {target.id} is left to drive, but no line names its "
                "conversation"
            )
        if rec.state in (State.REQUESTED, State.ACCEPTED):
            self.open[digest] = rec
        elif rec.state is State.FAILED:
            self.failed[digest] = rec
        if target.kind.covers_children:
            if rec.state in (State.DELETED, State.GONE):
                self.deleted_conversations.add(target.id)
            else:
                self.deleted_conversations.discard(target.id)


def decode_targets(rec: dict[str, Any]) -> list[TargetRecord]:
    """The TargetRecords of one state line (a grouped line holds several)."""
    ids = rec.get("ids")
    if ids is None:
        return [decode_target(rec)]
    if not isinstance(ids, list) or not ids:
        raise ValueError("'ids' is not a non-empty list")
    return [decode_target({**rec, "id": one}) for one in ids]


def decode_target(rec: dict[str, Any]) -> TargetRecord:
    """A state line's object as a TargetRecord (KeyError/ValueError on a malformed one).

    Every ID is checked against its kind's pattern here, as it is read: a log is a file anyone
    with write access can edit, and what it names goes into a DELETE's path on resume. An ID
    that is not one (``../../v2/ControlPlane/…``) raises :class:`UntrustedLine`, which no torn
    tail can produce, so the log is refused wherever the line is.
    """
    resource = BY_CODE[rec["k"]]
    state = State(rec["s"])
    parent = _checked_parent(resource, rec.get("c"), state)
    _check_ids(resource, (rec["id"],))
    operation = rec.get("op")
    if operation is not None and (
        not is_operation_id(operation)
    ):
        raise UntrustedLine(
            f"operation id {show_value(operation)} is not an Operation id (letters, digits, "
            "'_' and '-', at most 512)"
        )
    target = Target(resource, rec["id"], parent)
    return TargetRecord(
        target=target,
        state=state,
        operation=operation,
        code=rec.get("e"),
        message=rec.get("m"),
        ts=rec.get("ts"),
        generation=int(rec.get("g", 0)),
    )


# Operation ids have no published pattern (Memory: a string of at most 512); these characters
# cover every form seen (proc_job_…, mem_op_…) and none can change the path of a poll.
_ID_MATCH = {k: k.pattern.regex.fullmatch for k in KINDS}
# A grouped line's ids are checked in one regex call over the ids joined by newlines (no valid
# ID holds one, which the count of newlines proves): a replay of a million targets checks them
# at a fraction of the cost of a call per ID.
_IDS_MATCH = {
    k: re.compile(f"(?:{k.pattern.regex.pattern}\n)*{k.pattern.regex.pattern}").fullmatch
    for k in KINDS
}
_CONVERSATION_MATCH = CONVERSATION_SID.regex.fullmatch
_DRIVEN = frozenset({State.REQUESTED, State.ACCEPTED, State.FAILED})  # what a resume may send


def _check_ids(resource: ResourceKind, ids: list[object] | tuple[object, ...]) -> None:
    try:
        joined = "\n".join(ids)  # type: ignore[arg-type]  # a TypeError is a non-text ID
        if joined.count("\n") == len(ids) - 1 and _IDS_MATCH[resource](joined) is not None:
            return
    except TypeError:
        pass
    match = _ID_MATCH[resource]
    for one in ids:
        if type(one) is not str or match(one) is None:
            pattern = resource.pattern
            raise UntrustedLine(f"{show_value(one)} is not a {pattern.name} ({pattern.shape})")
    raise UntrustedLine("an ID holds a line break")


def _checked_parent(resource: ResourceKind, parent: object, state: State) -> str | None:
    """The conversation a line names: a Conversation SID on message and participant lines
    (required on their *requested* lines, which every later line relies on), nothing on others
    (a parent would move a target to another shard)."""
    if not resource.has_parent:
        if parent is not None:
            raise UntrustedLine(f"a {resource.name} line names a conversation ('c')")
        return None
    if parent is None:
        if state is State.REQUESTED:
            raise UntrustedLine(f"a requested {resource.name} line names no conversation")
        return None
    if type(parent) is not str or _CONVERSATION_MATCH(parent) is None:
        raise UntrustedLine(
            f"{show_value(parent)} is not a Conversation SID (CH followed by 32 hex digits)"
        )
    return parent


def read_checkpoint(
    path: Path, *, into: Replay | None = None, compact_for: int | None = None
) -> Replay:
    """Replay a log. A torn or garbled *last* line is reported and ignored; damage anywhere else
    is refused with its line number, because skipping it could lose a target's state.

    With ``into`` (a replay of this same log), only what was appended since is read and applied
    to it — how a resume brings its replay up to date without holding a second copy.

    ``compact_for`` (about how many targets the log names) keeps the final states in a
    :class:`DigestMap`, a fifth of a dict's memory but slower to fill: for the report at the end
    of a run, where memory peaks, not for a resume racing to its first request.
    """
    replay = into
    number = before = 0 if into is None else into.lines
    end = 0 if into is None else into.size
    for number, raw, last, end_of_line in _lines(path, end, before):
        try:
            rec = orjson.loads(raw)
            if not isinstance(rec, dict):
                raise ValueError("not a JSON object")
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


def _lines(path: Path, offset: int = 0, before: int = 0) -> Iterator[tuple[int, bytes, bool, int]]:
    """(line number, bytes, is-last, offset after it) of every non-blank line from byte
    ``offset`` on (where line ``before`` ended), streamed."""
    try:
        # Never through a link, never a FIFO or device (a FIFO would block the read forever).
        handle = os.fdopen(open_regular(path, follow=False), "rb")
    except UntrustedFile as exc:
        raise _untrusted(exc) from exc
    except FileNotFoundError as exc:
        raise CheckpointError(f"checkpoint {path} does not exist") from exc
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path} cannot be read: {exc.strerror}") from exc
    with handle:
        handle.seek(offset)
        pending: tuple[int, bytes, int] | None = None
        position = offset
        for number, raw in enumerate(handle, start=before + 1):
            position += len(raw)
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
            rec = orjson.loads(raw)
            if not isinstance(rec, dict) or "s" not in rec:
                continue
            code = rec["k"]
            ids = rec["ids"] if "ids" in rec else [rec["id"]]
            for one in ids:
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
            rec = orjson.loads(raw)
        except ValueError:
            continue
        if (
            isinstance(rec, dict)
            and isinstance(rec.get("s"), str)
            and isinstance(rec.get("k"), str)
            and rec["s"] in _STATE_BY_VALUE
            and rec["k"] in BY_CODE
            and (isinstance(rec.get("ids"), list) or "id" in rec)
        ):
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
        if "ids" in rec and replay._apply_group(rec):
            return
        for target_rec in decode_targets(rec):
            replay._apply_target(target_rec)
    elif kind == "P" and "c" in rec:
        replay.children_listed.setdefault(int(rec["src"]), set()).add(str(rec["c"]))
    elif kind == "P":
        src = int(rec["src"])
        replay.discovered[src] = int(rec.get("n", 0))
        if rec.get("done"):
            replay.discovery_done.add(src)
    elif kind == "E":
        replay.exit_code = int(rec["exit"])
        for name in TRAFFIC:  # each process that drove the log adds its own figures
            replay.traffic[name] += int(rec.get(name, 0))
    elif kind == "H":
        raise ValueError("a second header line")
    else:
        raise ValueError(f"unknown record type {kind!r}")


# Traffic figures a footer carries: requests sent, retries (after a fault or a 429), and 429s.
TRAFFIC = ("requests", "retries", "throttled")

GROUPABLE = frozenset({"s", "k", "id", "c", "ts"})


class CheckpointWriter:
    """The single owner of a checkpoint file: appends records and group-commits them.

    Queuing a record never waits: it is a list append, so the per-target path never yields to
    the event loop for the log (measured: each yield costs about as much as the bookkeeping it
    guards). The queue stays bounded without backpressure because every producer is: discovery
    waits for the workers' queue, and each outcome follows a request that itself waited for
    its target's line to be on disk.
    """

    def __init__(self, path: Path, started: datetime) -> None:
        self.path = path
        # ``ts`` fields count from the run's start; the monotonic clock is read far more cheaply
        # than a datetime, once per outcome.
        self._origin = time.monotonic() - (datetime.now(UTC) - started).total_seconds()
        self._queued: list[dict[str, Any]] = []
        self._on_disk = anyio.Event()  # set once every record queued so far is fsynced
        self._wake = anyio.Event()
        self._closed = False
        self.lines_written = 0
        self.records_written = 0
        self.syncs = 0
        self.error: OSError | None = None
        self.on_error: Callable[[OSError], None] = lambda _exc: None

    def seconds(self) -> int:
        """Whole seconds since the run started, for the ``ts`` field."""
        return int(time.monotonic() - self._origin)

    def put(self, record: dict[str, Any]) -> None:
        """Queue one record."""
        if self._closed:
            raise anyio.ClosedResourceError
        self._queued.append(record)
        self._wake.set()

    def put_durable(self, record: dict[str, Any]) -> anyio.Event:
        """Queue one record; the returned event is set once it is on disk (fsynced).

        The caller hands the event to whoever must not act before the record is durable — a
        worker waits for a target's *requested* line before sending its DELETE, so a crash can
        never leave a deletion the log does not know was attempted. Records queued between two
        fsyncs share one event.
        """
        self.put(record)
        return self._on_disk

    def close(self) -> None:
        """No more records: the writer drains, fsyncs and returns."""
        self._closed = True
        self._wake.set()

    async def run(self, handle: BinaryIO) -> None:
        """Write records as they arrive; fsync once per batch, off the event loop.

        If the file cannot be written (disk full, file too large, I/O error), the writer keeps
        taking records but drops them, never marks one durable — so no DELETE waits on a line
        that is not on disk — and calls ``on_error`` once, for the run to stop.
        """
        while True:
            if not self._queued:
                if self._closed:
                    break
                self._wake = anyio.Event()
                await self._wake.wait()
                continue
            batch, self._queued = self._queued, []
            done, self._on_disk = self._on_disk, anyio.Event()
            if self.error is not None:
                continue
            lines = group_records(batch)
            try:
                handle.write(b"".join(_encode(r) for r in lines))
                handle.flush()
                await anyio.to_thread.run_sync(os.fsync, handle.fileno())
            except OSError as exc:
                self.error = exc
                self.on_error(exc)
                continue
            self.lines_written += len(lines)
            self.records_written += len(batch)
            self.syncs += 1
            done.set()
        if self.error is None:
            handle.flush()
            os.fsync(handle.fileno())


def group_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fold plain records that differ only in ``id`` into one line with ``ids``.

    A page of messages selected together, or the deletions finished in the same second, then
    cost one line and about 40 bytes per target instead of about 100. Records of one batch are
    written together, so a record may join a line that began earlier in the batch — unless a
    target appears twice in the batch, where moving its later line up could reorder its states.
    """
    keys = [_target_key(r) for r in records]
    named = [k for k in keys if k is not None]
    anywhere = len(set(named)) == len(named)
    lines: list[dict[str, Any]] = []
    open_groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for record in records:
        key = (
            (record["s"], record["k"], record.get("c"), record.get("ts"))
            if record.keys() <= GROUPABLE and "s" in record and "id" in record
            else None
        )
        line = open_groups.get(key) if key is not None else None
        if line is not None:
            if "ids" not in line:
                line["ids"] = [line.pop("id")]
            line["ids"].append(record["id"])
            continue
        line = dict(record)
        lines.append(line)
        if not anywhere:
            open_groups.clear()  # only the line just written may be extended
        if key is not None:
            open_groups[key] = line
    return lines


def _target_key(record: dict[str, Any]) -> tuple[Any, Any] | None:
    return (record["k"], record["id"]) if "s" in record and "id" in record else None


def _encode(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record) + b"\n"


def ensure_not_in_use(path: Path) -> None:
    """Refuse (exit 2) a log another process holds, or one that is not this user's own regular
    file (a link, a FIFO, another user's file), before anything else is tried."""
    try:
        fd = open_own(path, os.O_RDONLY)
    except UntrustedFile as exc:
        raise _untrusted(exc) from exc
    except OSError:
        return  # read_checkpoint reports what is wrong with the file
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        raise CheckpointError(_IN_USE.format(path=path)) from exc
    finally:
        os.close(fd)


_IN_USE = (
    "checkpoint {path} is in use by another bulkops process; "
    "wait for it to finish (two processes must never drive one checkpoint)"
)


def _untrusted(exc: UntrustedFile) -> CheckpointError:
    return CheckpointError(f"checkpoint {exc.path} {exc.reason}; {exc.fix}")


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
        return isinstance(orjson.loads(raw), dict)
    except ValueError:
        return False


class _Found(StrEnum):
    """What an existing file at a new log's path holds."""

    NOTHING = "nothing"  # no byte, or a header torn before its newline: a run died starting
    LOG = "log"  # a header line: a run to resume, never to overwrite
    FOREIGN = "foreign"  # anything else: not ours to touch


_HEADER_START = b'{"t":"H"'


def _headerless(fd: int) -> _Found:
    """What the file open at ``fd`` holds (read through the descriptor: a file swapped after
    the open is not the one judged)."""
    head = os.pread(fd, 1 << 20, 0)
    if not head:
        return _Found.NOTHING
    if not head.startswith(_HEADER_START[: len(head)]):
        return _Found.FOREIGN
    if b"\n" in head:
        return _Found.LOG if head.startswith(_HEADER_START) else _Found.FOREIGN
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
        raise _untrusted(exc) from exc
    except FileNotFoundError as exc:
        raise CheckpointError(f"checkpoint {path} does not exist") from exc
    except OSError as exc:
        raise CheckpointError(
            f"cannot write checkpoint {path}: {exc.strerror}; choose a writable checkpoint_dir"
        ) from exc
    handle = os.fdopen(fd, "ab")
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise CheckpointError(_IN_USE.format(path=path)) from exc
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
            handle.write(_encode(header.to_record()))
            handle.flush()
            os.fsync(fd)
        yield handle
    finally:
        # After a failed write the buffer still holds the lines that did not fit, and closing
        # would fail on them again; the writer has already reported that failure.
        with contextlib.suppress(OSError):
            handle.close()
