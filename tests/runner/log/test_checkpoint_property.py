"""Property-based tests of the checkpoint log: any interleaving replays to each target's last state.

The example counts keep this file near 10 s. For a longer search run::

    HYPOTHESIS_PROFILE=long /work/venv/bin/pytest tests/runner/log/test_checkpoint_property.py

(``long`` multiplies every example count by 50; the settings are built here, not loaded as a
global hypothesis profile, so other test modules are unaffected.)
"""

from __future__ import annotations

import csv
import io
import itertools
import os
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import anyio
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.errors import CheckpointError
from runner.kinds.base import ResourceKind, Target
from runner.kinds.registry import BY_CODE, by_name
from runner.log.records import State, group_records, key_hash, target_record
from runner.log.replay import Replay, read_checkpoint
from runner.report.completion import outcome_name, render_csv
from tests.runner.log.test_checkpoint import HEADER, line, write_through_writer

_SCALE = 50 if os.environ.get("HYPOTHESIS_PROFILE") == "long" else 1


def examples(n: int) -> settings:
    """Settings for a property run of ``n`` examples (times the ``long`` scale)."""
    return settings(
        max_examples=n * _SCALE,
        deadline=None,  # each example writes and fsyncs a file: timing varies with the disk
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


HEX = "0123456789abcdef"
BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"
OPEN_STATES = (State.REQUESTED, State.ACCEPTED)


def sids(prefix: str) -> st.SearchStrategy[str]:
    """Twilio SIDs: ``prefix`` and 32 hex digits."""
    return st.text(HEX, min_size=32, max_size=32).map(lambda h: prefix + h)


def ttids(prefix: str) -> st.SearchStrategy[str]:
    """v2-style IDs: ``prefix``, a digit 0-7 and 25 lower-case base-36 characters."""
    return st.builds(
        lambda first, rest: prefix + first + rest,
        st.sampled_from("01234567"),
        st.text(BASE36, min_size=25, max_size=25),
    )


# A small pool of parents, so that several messages share a conversation as in a real purge.
PARENTS = st.sampled_from([f"CH{n:032x}" for n in range(4)])

TARGETS: dict[ResourceKind, st.SearchStrategy[Target]] = {
    by_name("message"): st.builds(Target, st.just(by_name("message")), sids("IM"), PARENTS),
    by_name("participant"): st.builds(Target, st.just(by_name("participant")), sids("MB"), PARENTS),
    by_name("conversation_v1"): st.builds(
        Target, st.just(by_name("conversation_v1")), st.one_of(sids("CH"), PARENTS)
    ),
    by_name("conversation_v2"): st.builds(
        Target, st.just(by_name("conversation_v2")), ttids("conv_conversation_")
    ),
    by_name("configuration"): st.builds(
        Target, st.just(by_name("configuration")), ttids("conv_configuration_")
    ),
    by_name("memory_store"): st.builds(
        Target, st.just(by_name("memory_store")), ttids("mem_store_")
    ),
    by_name("user"): st.builds(Target, st.just(by_name("user")), sids("US")),
}
ANY_TARGET = st.sampled_from(list(TARGETS)).flatmap(lambda r: TARGETS[r])
OPERATIONS = st.one_of(ttids("proc_job_"), ttids("mem_op_"))


@dataclass(frozen=True)
class Step:
    """One state change of one target, before it gets its ``ts``."""

    state: State
    operation: str | None = None
    code: int | None = None
    message: str | None = None
    generation: int = 0  # on a requested line: deliberate retries of a failure so far


FAILURE = st.builds(
    lambda code, message: Step(State.FAILED, code=code, message=message),
    st.one_of(st.none(), st.integers(400, 99_999)),
    # No bare CR (the report's CSV mishandles it) and no lone surrogate (the writer cannot encode
    # it): both are shown by xfail tests in test_checkpoint.py.
    st.one_of(
        st.none(), st.text(st.characters(codec="utf-8", exclude_characters="\r"), max_size=40)
    ),
)


@st.composite
def attempt(draw: st.DrawFn, target: Target, generation: int = 0) -> list[Step]:
    """One attempt at deleting ``target``, as the scheduler logs it (maybe cut short by a crash).

    Each attempt starts with a requested line; then async kinds go A(op) and D, F or G, and v1
    kinds go to one of D, G or F. A v1 target its conversation took along is just C.
    """
    start = Step(State.REQUESTED, generation=generation)
    if not target.kind.is_async:
        if generation == 0 and draw(st.integers(0, 4)) == 0:
            return [Step(State.COVERED)]
        end = draw(st.sampled_from([State.DELETED, State.GONE]) | FAILURE)
        steps = [start, end if isinstance(end, Step) else Step(end)]
    else:
        op = draw(OPERATIONS)
        outcome = draw(st.sampled_from([State.DELETED, State.GONE]) | FAILURE)
        final = (
            Step(outcome, operation=op)
            if isinstance(outcome, State)
            else Step(State.FAILED, op, outcome.code, outcome.message)
        )
        steps = [start, Step(State.ACCEPTED, operation=op), final]
    return steps[: draw(st.integers(1, len(steps)))]


@st.composite
def history(draw: st.DrawFn, target: Target) -> list[Step]:
    """A legal sequence of states for ``target``: an attempt, and after a failure maybe a retry
    (``--retry-failed``, the next generation) that ends deleted or gone."""
    steps = draw(attempt(target))
    if steps[-1].state is State.FAILED and draw(st.booleans()):
        retry = draw(attempt(target, 1).filter(lambda s: s[-1].state is not State.FAILED))
        steps += retry
    return steps


@dataclass
class Scenario:
    """Targets with their histories, discovery progress, and one interleaving of all of it."""

    histories: dict[Target, list[Step]]
    records: list[dict[str, Any]]
    footer: int | None
    batches: list[int] | None = None


@st.composite
def scenarios(draw: st.DrawFn, max_targets: int = 25, pages: bool = False) -> Scenario:
    """Targets of every kind, a legal history each, and any order that keeps each one's own.

    With ``pages``, as discovery admits them: targets of one or two kinds, whose first lines
    come first in a block, so the writer can group them."""
    pool = ANY_TARGET
    if pages:
        kinds = draw(st.lists(st.sampled_from(list(TARGETS)), min_size=1, max_size=2))
        pool = st.sampled_from(kinds).flatmap(lambda r: TARGETS[r])
    targets = draw(st.lists(pool, max_size=max_targets, unique_by=lambda t: t.key))
    histories = {t: draw(history(t)) for t in targets}
    progress = [
        [{"t": "P", "src": src, "n": n} for n in range(1, draw(st.integers(1, 3)) + 1)]
        for src in range(draw(st.integers(0, 3)))
    ]
    for src_records in progress:
        if draw(st.booleans()):
            src_records[-1]["done"] = True
    streams: list[list[dict[str, Any]] | list[Step]] = [*histories.values(), *progress]
    owners: list[Target | None] = [*histories, *(None for _ in progress)]
    order = draw(st.permutations([i for i, s in enumerate(streams) for _ in s]))
    if pages:
        # Each stream's first item where the stream first appears, the rest after all of those.
        first_of = {i: n for n, i in reversed(list(enumerate(order)))}
        order = sorted(first_of, key=first_of.__getitem__) + [
            i for n, i in enumerate(order) if first_of[i] != n
        ]
    cursors = [0] * len(streams)
    records: list[dict[str, Any]] = []
    for position, i in enumerate(order):
        ts = 1 + position // 4  # whole seconds: neighbours often share one, as in a real run
        item = streams[i][cursors[i]]
        cursors[i] += 1
        owner = owners[i]
        if owner is None:
            assert isinstance(item, dict)
            records.append(item)
            continue
        assert isinstance(item, Step)
        record = target_record(
            owner,
            item.state,
            ts=None if item.state is State.REQUESTED else ts,
            operation=item.operation,
            code=item.code,
            message=item.message,
            # As the scheduler writes them: only the first line of an attempt names the parent.
            with_parent=item.state in (State.REQUESTED, State.COVERED),
        )
        if item.generation:
            record["g"] = item.generation
        records.append(record)
    footer = draw(st.none() | st.integers(0, 130))
    if footer is not None:
        records.append({"t": "E", "exit": footer, "ts": 2 + len(order) // 4})
    # Where the writer's batches end (None: leave it to the real writer's timing). Grouping
    # within a batch is what the replay's quick path for grouped lines reads.
    batches = draw(
        st.none() | st.lists(st.integers(1, max(1, len(records))), max_size=8).map(sorted)
    )
    return Scenario(histories, records, footer, batches)


@dataclass
class Model:
    """What the log means, worked out naively from the records in order."""

    last: dict[str, tuple[Target, State]] = field(default_factory=dict)
    operation: dict[str, str | None] = field(default_factory=dict)
    failure: dict[str, tuple[int | None, str | None]] = field(default_factory=dict)
    discovered: dict[int, int] = field(default_factory=dict)
    done: set[int] = field(default_factory=set)
    exit_code: int | None = None
    last_ts: int = 0

    @classmethod
    def of(cls, records: Sequence[dict[str, Any]]) -> Model:
        """The model of a log holding ``records`` after its header."""
        model = cls()
        for rec in records:
            if rec.get("t") == "P":
                model.discovered[rec["src"]] = rec["n"]
                if rec.get("done"):
                    model.done.add(rec["src"])
            elif rec.get("t") == "E":
                model.exit_code = rec["exit"]
            else:
                for one in rec.get("ids") or [rec["id"]]:  # the writer may group a run of ids
                    model._apply_target({**rec, "id": one})
        return model

    def _apply_target(self, rec: dict[str, Any]) -> None:
        key = Target(BY_CODE[rec["k"]], rec["id"]).key
        previous = self.last.get(key)
        # A line without the parent is about the target an earlier line named.
        parent = rec.get("c") or (previous[0].parent if previous is not None else None)
        target = Target(BY_CODE[rec["k"]], rec["id"], parent)
        # Within one attempt an Operation id, once known, stays known.
        carried = previous is not None and previous[1] in OPEN_STATES
        self.operation[target.key] = rec.get("op") or (
            self.operation.get(target.key) if carried else None
        )
        self.last_ts = max(self.last_ts, rec.get("ts", 0))  # target lines only
        self.last[target.key] = (target, State(rec["s"]))
        self.failure[target.key] = (rec.get("e"), rec.get("m"))

    def counts(self) -> Counter[tuple[ResourceKind, State]]:
        """Targets by resource and latest state."""
        return Counter((t.kind, s) for t, s in self.last.values())

    def check(self, replay: Replay) -> None:
        """Assert that ``replay`` says what this model says."""
        for target, state in self.last.values():
            assert replay.state_of(target) is state, target
        assert replay.counts() == self.counts()
        open_ = {
            key_hash(k): (t, s, self.operation[k])
            for k, (t, s) in self.last.items()
            if s in OPEN_STATES
        }
        assert {h: (r.target, r.state, r.operation) for h, r in replay.open.items()} == open_
        failed = {
            key_hash(k): (t, self.operation[k], *self.failure[k])
            for k, (t, s) in self.last.items()
            if s is State.FAILED
        }
        assert {
            h: (r.target, r.operation, r.code, r.message) for h, r in replay.failed.items()
        } == failed
        assert replay.deleted_conversations == {
            t.id
            for t, s in self.last.values()
            if t.kind is by_name("conversation_v1") and s in (State.DELETED, State.GONE)
        }
        assert replay.discovered == self.discovered
        assert replay.discovery_done == self.done
        assert replay.exit_code == self.exit_code
        assert replay.last_ts == self.last_ts


def write_scenario(directory: Path, scenario: Scenario) -> Path:
    """Write the scenario's records through the real CheckpointWriter, or grouped in the
    scenario's batches as the writer groups them; return the log's path."""
    path = directory / "run.jsonl"
    if scenario.batches is None:
        anyio.run(write_through_writer, path, scenario.records, HEADER, backend="asyncio")
        return path
    bounds = [0, *scenario.batches, len(scenario.records)]
    grouped = [
        rec
        for start, stop in itertools.pairwise(bounds)
        for rec in group_records(scenario.records[start:stop])
    ]
    path.write_bytes(line(HEADER.to_record()) + b"".join(line(r) for r in grouped))
    return path


@examples(120)
@given(scenario=scenarios())
def test_any_interleaving_replays_to_each_targets_last_state(scenario: Scenario) -> None:
    """Whatever the interleaving, replay (and the report) give each target its last state."""
    with tempfile.TemporaryDirectory() as tmp:
        replay = read_checkpoint(write_scenario(Path(tmp), scenario))
        report = list(csv.DictReader(io.StringIO(render_csv(replay))))

    model = Model.of(scenario.records)
    assert {k: s for k, (_, s) in model.last.items()} == {
        t.key: steps[-1].state for t, steps in scenario.histories.items()
    }
    model.check(replay)
    assert replay.warnings == []
    # The completion report: every target once, with the outcome of its last state.
    listed = Counter((r["kind"], r["id"], r["conversation_sid"]) for r in report)
    assert set(listed.values()) <= {1}
    assert {(r["kind"], r["id"], r["conversation_sid"]): r["outcome"] for r in report} == {
        (t.kind.name, t.id, t.parent or ""): outcome_name(s) for t, s in model.last.values()
    }


@examples(120)
@given(scenario=scenarios(max_targets=12), data=st.data())
def test_log_cut_anywhere_after_its_header_replays_the_whole_lines(
    scenario: Scenario, data: st.DataObject
) -> None:
    """A log cut at any byte after its header replays every whole line, warning about a torn one."""
    with tempfile.TemporaryDirectory() as tmp:
        path = write_scenario(Path(tmp), scenario)
        content = path.read_bytes()
        header_len = len(line(HEADER.to_record())) - 1
        cut = data.draw(st.integers(header_len, len(content)), label="cut")
        path.write_bytes(content[:cut])
        try:
            replay = read_checkpoint(path)
        except CheckpointError as exc:  # allowed by the contract, but never seen: say so
            raise AssertionError(f"a log cut at byte {cut} was refused: {exc}") from exc

    whole = content[:cut].split(b"\n")
    torn = b""
    if whole[-1] and not _is_record(whole[-1]):
        torn = whole.pop()
    kept = [orjson.loads(raw) for raw in whole[1:] if raw]
    Model.of(kept).check(replay)
    if torn:
        assert len(replay.warnings) == 1
        assert replay.warnings[0].startswith(f"line {len(whole) + 1}: torn or partial last line")
    else:
        assert replay.warnings == []


def _is_record(raw: bytes) -> bool:
    try:
        return isinstance(orjson.loads(raw), dict)
    except orjson.JSONDecodeError:
        return False


def read_bytes(content: bytes) -> Replay | None:
    """Replay ``content`` as a log; None when it is refused with a CheckpointError."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run.jsonl"
        path.write_bytes(content)
        try:
            return read_checkpoint(path)
        except CheckpointError:
            return None


JSON_SCALARS = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text()
)
# One level of nesting is enough to reach every type check in the reader.
JSON_VALUES = (
    JSON_SCALARS
    | st.lists(JSON_SCALARS, max_size=3)
    | st.dictionaries(st.text(max_size=4), JSON_SCALARS, max_size=3)
)
RECORD_KEYS = st.sampled_from(
    ["t", "s", "k", "id", "c", "ts", "op", "e", "m", "src", "n", "done", "exit", "v"]
)
FIELD_VALUES = st.one_of(
    st.sampled_from([*(s.value for s in State), *BY_CODE, "H", "P", "E", "Z"]),
    JSON_VALUES,
)
RECORD_LIKE = st.dictionaries(RECORD_KEYS, FIELD_VALUES, max_size=7)


@examples(300)
@given(content=st.binary(max_size=600))
def test_arbitrary_bytes_only_ever_raise_checkpoint_error(content: bytes) -> None:
    """Any bytes at all either replay or are refused with a CheckpointError, never a crash."""
    read_bytes(content)


@examples(300)
@given(tail=st.binary(max_size=600))
def test_header_then_arbitrary_bytes_only_ever_raise_checkpoint_error(tail: bytes) -> None:
    """A valid header followed by any bytes replays or is refused with a CheckpointError."""
    replay = read_bytes(line(HEADER.to_record()) + tail)
    if replay is not None:
        assert replay.header == HEADER


@examples(150)
@given(
    records=st.lists(RECORD_LIKE, max_size=6),
    header_changes=st.dictionaries(st.sampled_from(list(HEADER.to_record())), JSON_VALUES),
    tail=st.binary(max_size=40),
)
def test_record_like_lines_only_ever_raise_checkpoint_error(
    records: list[dict[str, Any]], header_changes: dict[str, Any], tail: bytes
) -> None:
    """Lines that look like records, with any field values, replay or raise CheckpointError."""
    header = {**HEADER.to_record(), **header_changes}
    read_bytes(line(header) + b"".join(line(r) for r in records) + tail)


def _replayed(replay: Replay) -> tuple[Any, ...]:
    """Everything a replay says, in comparable form."""
    return (
        replay.states,
        {h: (r.target, r.state, r.operation, r.generation) for h, r in replay.open.items()},
        {
            h: (r.target, r.operation, r.code, r.message, r.generation)
            for h, r in replay.failed.items()
        },
        replay.operations,
        replay.deleted_conversations,
        replay.discovered,
        replay.discovery_done,
        replay.exit_code,
        replay.last_ts,
    )


@examples(120)
@given(scenario=scenarios(pages=True), size=st.integers(1, 12))
def test_grouped_lines_replay_as_one_line_per_record(scenario: Scenario, size: int) -> None:
    """However the writer's batches fall, the grouped log (read by the replay's quick path for
    grouped lines) says exactly what one line per record says, and so does one line per record
    read by the quick path for single lines — both judged by the general path's reading."""
    records = scenario.records
    grouped = [
        rec
        for start in range(0, len(records), size)
        for rec in group_records(records[start : start + size])
    ]
    logs = {"plain": records, "grouped": grouped}
    with tempfile.TemporaryDirectory() as tmp:
        read = {}
        for name, lines in logs.items():
            path = Path(tmp) / f"{name}.jsonl"
            path.write_bytes(line(HEADER.to_record()) + b"".join(line(r) for r in lines))
            read[name] = read_checkpoint(path)
        # The reference: one line per record, every line read by the general path.
        with (
            mock.patch.object(Replay, "_apply_single", lambda _self, _rec: False),
            mock.patch.object(Replay, "_apply_group", lambda _self, _rec: False),
        ):
            read["general"] = read_checkpoint(Path(tmp) / "plain.jsonl")
    assert _replayed(read["grouped"]) == _replayed(read["general"])
    assert _replayed(read["plain"]) == _replayed(read["general"])
    Model.of(records).check(read["grouped"])
    Model.of(records).check(read["plain"])
