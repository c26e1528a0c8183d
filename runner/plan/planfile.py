"""Plan files: the exact list of targets a job selects, written for review and applied later.

``bulkops plan JOB --out PLAN`` lists what the job selects (GET requests only) into a file of
IDs — no content, so it can be reviewed, attached to a change ticket or diffed — and
``bulkops apply PLAN`` deletes exactly that list: its sources are the plan's lines, never the
spec's queries, so nothing found since the review is touched. Layout (JSON lines)::

    {"t":"plan", "v":1, "job":…, "fp":…, "now":…, "times":{…}, "spec":…, "created":…}
    {"k":"m", "c":"CH…", "ids":["IM…", …]}        targets, grouped by kind and conversation
    {"k":"c1", "sv":"IS…", "ids":["CH…", …]}      … and Service, in a job of several Services
    {"t":"end", "targets":N, "counts":{kind: n}, "sha256":…}

The footer's count and digest (of every target line's bytes) make a truncated or edited plan
detectable; every ID is checked against its pattern again when the plan is read, so no plan can
steer a request to another path.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from runner.errors import InputError, UntrustedFile
from runner.files import create_aside, open_regular_stream
from runner.kinds.base import ResourceKind, Target
from runner.kinds.ids import CONVERSATION_SID, SERVICE_SID, validate_id
from runner.kinds.registry import BY_CODE
from runner.plan.planner import JobPlan
from runner.plan.selection import Manifest, Source

PLAN_VERSION = 1


@dataclass(frozen=True, slots=True)
class PlanHeader:
    """Where a plan came from: the job, its fingerprint and frozen times, and when it was made."""

    job: str
    fingerprint: str
    frozen_now: str
    times: dict[str, str]
    spec_path: str  # relative to the plan file's directory
    created: str
    shard: str | None = None
    canonical_spec: dict[str, Any] | None = None

    def to_record(self) -> dict[str, Any]:
        """The first line's JSON object."""
        return {
            "t": "plan",
            "v": PLAN_VERSION,
            "job": self.job,
            "fp": self.fingerprint,
            "now": self.frozen_now,
            "times": self.times,
            "spec": self.spec_path,
            "created": self.created,
            "shard": self.shard,
            "canon": self.canonical_spec,
        }

    @property
    def created_at(self) -> datetime:
        """When the plan was made (UTC)."""
        return datetime.fromisoformat(self.created)


class PlanWriter:
    """Writes a plan aside and renames it into place once complete, so an interrupted listing
    never leaves a plan that looks whole."""

    def __init__(self, path: Path, header: PlanHeader) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # A new file, mode 0600, never through a link planted at the aside's name.
            self._partial, fd = create_aside(path)
        except OSError as exc:
            raise InputError(
                f"cannot write plan {path}: {exc.strerror}; choose another --out path"
            ) from exc
        self._out: BinaryIO = os.fdopen(fd, "wb")
        self._out.write(orjson.dumps(header.to_record()) + b"\n")
        self._digest = hashlib.sha256()
        self.counts: Counter[ResourceKind] = Counter()

    def add(self, targets: Sequence[Target]) -> None:
        """Append targets (a page of them: grouped by kind, conversation and Service)."""
        groups: dict[tuple[ResourceKind, str | None, str | None], list[str]] = {}
        for target in targets:
            groups.setdefault((target.kind, target.parent, target.service), []).append(target.id)
            self.counts[target.kind] += 1
        for (resource, parent, service), ids in groups.items():
            line: dict[str, Any] = {"k": resource.code}
            if parent is not None:
                line["c"] = parent
            if service is not None:
                line["sv"] = service  # a job of several Services: the delete path needs it
            line["ids"] = ids
            raw = orjson.dumps(line) + b"\n"
            self._digest.update(raw)
            self._out.write(raw)

    def commit(self) -> None:
        """Write the footer, sync, and move the plan into place."""
        footer = {
            "t": "end",
            "targets": sum(self.counts.values()),
            "counts": {k.name: n for k, n in self.counts.items()},
            "sha256": self._digest.hexdigest(),
        }
        self._out.write(orjson.dumps(footer) + b"\n")
        self._out.flush()
        os.fsync(self._out.fileno())
        self._out.close()
        os.replace(self._partial, self.path)

    def discard(self) -> None:
        """Drop an unfinished plan."""
        self._out.close()
        self._partial.unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class PlanFile:
    """A verified plan: its header, its counts and its SHA-256 (which a checkpoint records)."""

    path: Path
    header: PlanHeader
    counts: dict[ResourceKind, int]
    digest: str

    def targets(self, resource: ResourceKind) -> Iterator[Target]:
        """The plan's targets of ``resource``, streamed (re-checked as they are read)."""
        for _number, rec in _target_lines(self.path):
            if BY_CODE[rec["k"]] is resource:
                yield from _targets(rec)

    def entries(self) -> Iterator[tuple[int, Target]]:
        """Every target of the plan with the number of the line that lists it, streamed."""
        for number, rec in _target_lines(self.path):
            for target in _targets(rec):
                yield number, target

    def sources(self) -> list[Source]:
        """The plan as the runner's sources: one per kind, nothing else."""
        return [
            Manifest(resource, partial(self.targets, resource), count)
            for resource, count in self.counts.items()
            if count
        ]

    @property
    def total(self) -> int:
        """How many targets the plan lists."""
        return sum(self.counts.values())


def read_plan(path: Path) -> PlanFile:
    """Read and verify a plan: header, every line and ID, footer count and digest. Any damage
    is an InputError naming the line, so nothing is deleted from a plan that is not whole."""

    def refuse(problem: str) -> InputError:
        return InputError(f"plan {path}: {problem}; make a new one with `bulkops plan --out`")

    try:
        with open_regular_stream(path) as f:  # a FIFO or device is refused, not read forever
            first = f.readline()
    except UntrustedFile as exc:
        raise refuse(f"{exc.reason}") from exc
    except OSError as exc:
        raise InputError(f"plan {path} cannot be read: {exc.strerror}") from exc
    try:
        rec = orjson.loads(first)
        if rec.get("t") != "plan" or rec.get("v") != PLAN_VERSION:
            raise ValueError("not a bulkops plan header")
        header = PlanHeader(
            job=str(rec["job"]),
            fingerprint=str(rec["fp"]),
            frozen_now=str(rec["now"]),
            times=dict(rec["times"]),
            spec_path=str(rec["spec"]),
            created=str(rec["created"]),
            shard=None if rec.get("shard") is None else str(rec["shard"]),
            canonical_spec=dict(rec.get("canon") or {}),
        )
        header.created_at  # noqa: B018 (a bad timestamp raises here)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise refuse(f"line 1 is not a plan header ({exc})") from exc
    digest = hashlib.sha256()
    counts: Counter[ResourceKind] = Counter()
    footer: dict[str, Any] | None = None
    for number, raw in _raw_lines(path):
        if footer is not None:
            raise refuse(f"line {number} follows the end line")
        try:
            rec = orjson.loads(raw)
            if isinstance(rec, dict) and rec.get("t") == "end":
                footer = rec
                continue
            if not isinstance(rec, dict):
                raise ValueError("not a JSON object")
            for target in _targets(rec):
                counts[target.kind] += 1
        except (ValueError, KeyError, TypeError) as exc:
            raise refuse(f"line {number} is damaged ({exc})") from exc
        digest.update(raw)
    if footer is None:
        raise refuse("the end line is missing (the plan is incomplete)")
    if footer.get("targets") != sum(counts.values()) or footer.get("sha256") != digest.hexdigest():
        raise refuse("its lines do not match its end line (the plan was cut or edited)")
    return PlanFile(path, header, dict(counts), digest.hexdigest())


def _raw_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with open_regular_stream(path) as f:
        f.readline()
        for number, raw in enumerate(f, start=2):
            if raw.strip():
                yield number, raw


def _target_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    # read_plan verified every line; one that no longer parses means the file changed since.
    for number, raw in _raw_lines(path):
        try:
            rec = orjson.loads(raw)
        except ValueError:
            rec = None
        if not isinstance(rec, dict):
            raise InputError(
                f"plan {path} line {number} changed after the plan was verified; "
                "nothing more is taken from it"
            )
        if rec.get("t") != "end":
            yield number, rec


def _targets(rec: dict[str, Any]) -> Iterator[Target]:
    resource = BY_CODE[rec["k"]]
    parent = rec.get("c")
    if not resource.has_parent:
        if parent is not None:
            # No plan writes one; it would move the target to another shard.
            raise ValueError(f"{resource.name} lines name no conversation ('c')")
    elif parent is None:
        raise ValueError(f"{resource.name} lines need their conversation ('c')")
    else:
        validate_id(CONVERSATION_SID.key, parent)
    service = rec.get("sv")
    if service is not None:
        validate_id(SERVICE_SID.key, service)
    ids = rec["ids"]
    if not isinstance(ids, list) or not ids:
        raise ValueError("'ids' is not a non-empty list")
    for one in ids:
        yield Target(resource, resource.validate(one), parent, service)


def new_header(plan: JobPlan, spec_path: Path, plan_path: Path) -> PlanHeader:
    """The header of a plan of ``plan`` about to be written at ``plan_path``."""
    return PlanHeader(
        job=plan.name,
        fingerprint=plan.fingerprint,
        frozen_now=plan.frozen_now,
        times=plan.times_json,
        spec_path=os.path.relpath(spec_path.resolve(), plan_path.parent.resolve()),
        created=datetime.now(UTC).isoformat(),
        shard=None if plan.shard is None else str(plan.shard),
        canonical_spec=plan.canonical,
    )
