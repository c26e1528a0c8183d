"""What a job spec selects, checked against targets read from a file instead of listed.

A resume drives the targets its checkpoint left open, and ``apply`` deletes a plan's list; the
spec's queries are not run again for those, so the file alone would decide what is deleted.
Both files can be edited (by hand, by a tool, by someone who should not), so every target read
from one is checked here against the spec before anything is sent:

* its kind must be one the spec selects;
* an ``ids`` list admits only those ids, a manifest only its rows (read again, streamed), a
  ``conversations: [CH…]`` list only the children of those conversations;
* a ``where`` query admits its kind — and nothing finer offline: its filters (state, times) need
  the item's own fields, which only a listing gives (a resume after a changed spec lists again:
  :func:`confine_resume`);
* a sharded run admits only its own shard's targets.

The plan's SHA-256 and the checkpoint's line checks guard against accidents (a cut, a stray
edit); this check is what keeps an edited file from reaching beyond the spec.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial

import structlog

from runner.app import loop
from runner.app.replan import replan
from runner.clock import MONOTONIC
from runner.errors import CheckpointError, InputError
from runner.kinds.base import ResourceKind, Target
from runner.log.records import Header, State, TargetRecord, key_hash
from runner.log.replay import Replay, lines_naming
from runner.plan.planfile import PlanFile
from runner.plan.planner import JobPlan, ServiceSet, build_plan, describe_changes, shard_plan
from runner.plan.selection import Explicit, Manifest, Source, source_kind, source_kinds
from runner.plan.shard import Shard, shard_key, shard_of
from runner.spec.config import Config
from runner.spec.jobspec import JobSpec

__all__ = [
    "Outside",
    "Scope",
    "confine_plan",
    "confine_resume",
    "resume_plan",
]

log = structlog.get_logger("bulkops.scope")

SHOWN = 5  # offending targets named in a refusal; the rest are counted
CLOCK_SLACK = timedelta(minutes=5)  # clocks of two machines sharing a checkpoint directory


@dataclass(frozen=True, slots=True)
class Outside:
    """A target the spec does not select, and why."""

    target: Target
    reason: str


@dataclass
class _Kind:
    """What the spec's sources of one resource admit."""

    whole: bool = False  # a query (or a manifest not read): the whole kind, offline
    parents: set[str] = field(default_factory=set)  # children of these conversations
    ids: set[tuple[str, str | None]] = field(default_factory=set)  # (id, parent) listed
    manifests: list[Manifest] = field(default_factory=list)


def _listed(kind: _Kind, target: Target) -> bool:
    """Whether ``kind`` admits ``target`` without reading a manifest."""
    return kind.whole or target.parent in kind.parents or (target.id, target.parent) in kind.ids


class Scope:
    """The selection of a list of sources (a spec's, or an applied plan's), offline."""

    def __init__(
        self,
        sources: Sequence[Source],
        shard: Shard | None = None,
        *,
        read_manifests: bool = True,
        services: ServiceSet = None,
    ) -> None:
        self.shard = shard
        self.services = services
        self._kinds: dict[ResourceKind, _Kind] = {}
        for source in sources:
            kind = self._kinds.setdefault(source_kind(source), _Kind())
            if isinstance(source, Explicit):
                kind.ids.update((t.id, t.parent) for t in source.targets)
            elif isinstance(source, Manifest):
                if read_manifests:
                    kind.manifests.append(source)
                else:
                    kind.whole = True
            elif (parents := source.conversations()) is not None:
                kind.parents.update(parents)
            else:
                kind.whole = True
                for other in source_kinds(source)[1:]:  # a selector's listing: several kinds
                    self._kinds.setdefault(other, _Kind()).whole = True

    @property
    def resources(self) -> set[ResourceKind]:
        """The kinds the sources select."""
        return set(self._kinds)

    def reason(self, target: Target) -> str | None:
        """Why ``target`` is outside the selection, or None if it is inside (or could be only
        by a manifest's rows: see :meth:`outside`)."""
        if self.shard is not None and self.shard.count > 1:
            owner = shard_of(shard_key(target), self.shard.count)
            if owner != self.shard.index:
                return f"belongs to shard {owner}/{self.shard.count}, not to {self.shard}"
        kind = self._kinds.get(target.kind)
        if kind is None:
            selected = ", ".join(sorted(r.label for r in self._kinds)) or "nothing"
            return f"the job selects no {target.kind.label} (it selects {selected})"
        if target.kind.has_parent and target.parent is None:
            return "no conversation is named"
        service = self._service_reason(target)
        if service is not None:
            return service
        if _listed(kind, target):
            return None
        if kind.manifests:
            return None  # decided by the manifests' rows
        if kind.parents and not kind.ids:
            return f"its conversation {target.parent} is not one the job lists"
        return "not among the ids the job lists"

    def _service_reason(self, target: Target) -> str | None:
        """Why the Service ``target`` names (or does not name) is not the job's."""
        if target.service is None:
            if self.services is not None and target.kind.per_service:
                return "it names no Service, and the job has several"
            return None
        if self.services is None:
            return f"it names Service {target.service}, and the job has one Service"
        if isinstance(self.services, tuple) and target.service not in self.services:
            return f"its Service {target.service} is not one the job lists"
        return None

    def outside(self, targets: Iterable[Target]) -> list[Outside]:
        """Every target of ``targets`` the selection does not hold, with the reason.

        A target only a manifest could hold is looked up by reading the manifest once more,
        streamed: memory grows with the targets asked about, never with the manifest.
        """
        found: list[Outside] = []
        pending: dict[ResourceKind, dict[tuple[str, str | None], Target]] = {}
        for target in targets:
            why = self.reason(target)
            if why is not None:
                found.append(Outside(target, why))
                continue
            if not _listed(self._kinds[target.kind], target):
                pending.setdefault(target.kind, {})[(target.id, target.parent)] = target
        for resource, wanted in pending.items():
            for manifest in self._kinds[resource].manifests:
                for row in manifest.rows():
                    wanted.pop((row.id, row.parent), None)
                    if not wanted:
                        break
                if not wanted:
                    break
            found.extend(
                Outside(t, "not a row of the job's manifest (from_file) or plan")
                for t in wanted.values()
            )
        return found


def resume_plan(
    spec: JobSpec, header: Header, shard: Shard | None, *, force: bool
) -> tuple[JobPlan, bool]:
    """The plan a resume runs, and whether the spec changed since the run began.

    An unchanged spec runs with the times frozen in the log. A changed one (``--force``) runs
    with its own bounds, resolved at the moment the run began: the frozen times belong to the
    old bounds, so keeping them would keep the old filters (a 90d → 120d change would go on
    deleting what 120d spares).
    """
    began = datetime.fromisoformat(header.frozen_now)
    if began.tzinfo is None or began > datetime.now(UTC) + CLOCK_SLACK:
        # A relative bound counts back from this moment: a later one would select more.
        raise CheckpointError(
            f"the checkpoint of run {header.run_id}: its run began at {header.frozen_now!r}, which "
            "is not a past moment with a time zone; an edited log is not resumed"
        )
    plan, changes = replan(
        spec,
        began,
        header.times,
        shard,
        fingerprint=header.fingerprint,
        canonical=header.canonical_spec,
    )
    if changes is None:
        if plan.times_json != build_plan(spec, began).times_json:
            # The frozen times are the spec's bounds at that moment, nothing else: any other
            # value was written by hand, and could move a cutoff to select more.
            raise CheckpointError(
                f"the checkpoint of run {header.run_id}: its frozen times are not the spec's "
                f"bounds at the moment the run began ({header.frozen_now}); an edited log is "
                "not resumed"
            )
        return plan, False
    if not force:
        raise CheckpointError(
            [
                f"the job spec changed since run {header.run_id} started:",
                *changes,
                "resume with the original spec, or pass --force to resume with this one",
            ]
        )
    return shard_plan(build_plan(spec, began), shard), True


def _selection(canonical: dict[str, object], times: dict[str, str]) -> tuple[object, ...]:
    return canonical.get("targets"), canonical.get("service"), times


def confine_resume(
    replay: Replay,
    plan: JobPlan,
    spec_sources: Sequence[Source],
    config: Config,
    *,
    changed: bool,
    retry_failed: bool,
    plan_file: PlanFile | None = None,
) -> None:
    """Keep a resume to what the spec selects; ``plan`` is what the resume will run (an applied
    plan's sources, or the spec's), ``spec_sources`` the current spec's own.

    With the selection unchanged (the spec, or only its limits with ``--force``), a target the
    log would have the resume drive that the spec does not select is refused (CheckpointError
    naming its line): only an edited or foreign log holds one, and an operator should see it
    rather than have it quietly skipped. With a changed selection (``--force``) such targets
    are dropped — narrowing the spec is what --force is for — and the new spec is listed again
    (GETs only): only the open targets that listing finds are driven, as a time filter needs
    each item's own timestamp, which only a listing gives. Operations already accepted are
    still followed (polling deletes nothing).
    """
    header = replay.header
    if plan_file is not None:
        # The plan named in the log's header is driven in full: every entry is the spec's too.
        confine_plan(plan_file, spec_sources, plan.shard, plan.services)
    records = list(replay.open.values())
    if retry_failed:
        records += replay.failed.values()
    if not records and not changed:
        return
    # `all` is, for a resume, the Services the run found when it began.
    services = replay.services if plan.services == "all" and replay.services else plan.services
    scopes = [Scope(plan.sources, plan.shard, services=services)]
    if header.plan is not None:
        # An applied plan is the list, checked by kind against the spec that made it.
        scopes.append(Scope(spec_sources, plan.shard, read_manifests=False, services=services))
    targets = [r.target for r in records]
    outside: dict[str, Outside] = {}
    for scope in scopes:
        for one in scope.outside(targets):
            outside.setdefault(one.target.key, one)
    selection_changed = changed and _selection(header.canonical_spec, header.times) != _selection(
        plan.canonical, plan.times_json
    )
    if outside and not selection_changed:
        # The selection is the one the run began with (a --force for limits alone changes
        # nothing here): a line outside it was not written by this job.
        raise CheckpointError(_refusal(replay, list(outside.values())))
    if selection_changed and header.plan is not None:
        raise CheckpointError(
            [
                f"run {header.run_id} applies plan {header.plan}, and the job spec's selection "
                "changed since:",
                *describe_changes(header.canonical_spec, plan.canonical),
                "a reviewed plan is resumed only with the selection it was made from: restore "
                "the spec, or plan again",
            ]
        )
    drop = {key_hash(key) for key in outside}
    if selection_changed:
        # What the old spec's discovery recorded as listed does not hold for the new filters.
        replay.children_listed.clear()
        wanted = {
            key_hash(r.target.key)
            for r in records
            if key_hash(r.target.key) not in drop and not _polled(r)
        }
        found = _listed_again(plan, config, wanted)
        drop |= wanted - found
    if drop:
        _drop(replay, drop)
        log.warning(
            "resume_narrowed",
            not_driven=len(drop),
            detail="targets the log left open that the changed spec does not select are not "
            "sent; the report lists them as pending",
        )


def _polled(record: TargetRecord) -> bool:
    """An accepted target: its delete was sent, only its Operation is followed."""
    return record.state is State.ACCEPTED and record.operation is not None


def _drop(replay: Replay, digests: set[int]) -> None:
    for digest in digests:
        record = replay.open.get(digest)
        if record is not None and not _polled(record):
            del replay.open[digest]
        replay.failed.pop(digest, None)


def _listed_again(plan: JobPlan, config: Config, wanted: set[int]) -> set[int]:
    """The digests of ``wanted`` that listing ``plan``'s sources now finds (GETs only)."""
    from runner.app.job import plan_targets  # the I/O shell; imported late, as it imports much

    found: set[int] = set()
    if not wanted:
        return found

    def sink(targets: Sequence[Target]) -> None:
        for target in targets:
            digest = key_hash(target.key)
            if digest in wanted:
                found.add(digest)

    loop.run(partial(plan_targets, plan, config, clock=MONOTONIC, sink=sink))
    return found


def _refusal(replay: Replay, outside: list[Outside]) -> list[str]:
    lines = lines_naming(replay.path, {o.target.key for o in outside[:SHOWN]})
    problems = [
        f"checkpoint {replay.path} names targets the job spec does not select; a log edited "
        "(or another job's) is not resumed:"
    ]
    for one in outside[:SHOWN]:
        where = f"line {lines[one.target.key]}" if one.target.key in lines else "a line"
        name = f"{one.target.parent}/{one.target.id}" if one.target.parent else one.target.id
        problems.append(f"{where}: {one.target.kind.name} {name}: {one.reason}")
    if len(outside) > SHOWN:
        problems.append(f"and {len(outside) - SHOWN} more")
    problems.append(
        "restore the log (or the spec it was written for), or start the job again with "
        "`bulkops run`"
    )
    return problems


def confine_plan(
    plan_file: PlanFile,
    sources: Sequence[Source],
    shard: Shard | None,
    services: ServiceSet = None,
) -> None:
    """Refuse (InputError naming the line) a plan entry the spec does not select: its kind, its
    id when the spec lists ids, its conversation when the spec lists conversations, its shard,
    its Service when the spec has several.

    A manifest job's plan is checked by kind: reading the manifest again for every entry would
    double apply's memory, and the plan was made from that manifest and is checked by digest.
    """
    scope = Scope(sources, shard, read_manifests=False, services=services)
    for number, target in plan_file.entries():
        why = scope.reason(target)
        if why is not None:
            name = f"{target.parent}/{target.id}" if target.parent else target.id
            raise InputError(
                [
                    f"plan {plan_file.path} line {number}: {target.kind.name} {name}: {why}; "
                    "nothing was sent",
                    "make the plan again from this spec with `bulkops plan --out` (its digest "
                    "catches accidents, not edits by someone who can write it)",
                ]
            )
