"""The checks of ``bulkops verify`` (:mod:`runner.app.verify`): GETs only, through the run's own
limits and retry policy (:mod:`runner.wire`: the account's in-flight cap, 429 pauses and
``Retry-After``, backoff).

* Every target the log records as deleted, gone or covered — or a seeded random sample of
  them — is fetched at its kind's ``fetch_path``, in the Service its log line names (a job of
  several Services), and must answer 404.
* The job's selection is listed again, exactly as the run froze it, and must select nothing.
  Targets named by ``ids`` or ``from_file`` are all in the log, so only the ``where`` queries
  (and erasure requests) are listed, in every Service the run froze; what the job's legal holds
  keep is excepted (spec ``exclude``, config ``holds``: :class:`_Held`).

Nothing here writes but the verify's journal (:mod:`runner.log.verify_journal`): each fetch's
verdict and each source listed again to its end are queued with its writer, and a verification
that continues one skips what it records — the target's verdict, the source's finds — so that
its counts are the ones one uninterrupted verification would have. Its GETs change nothing.
"""

from __future__ import annotations

import random
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import anyio
import structlog

from runner.app.job import build_client, build_requester
from runner.clock import MONOTONIC
from runner.engine.discovery import Discovery
from runner.engine.hold_reads import AttributeReads
from runner.engine.holds import HoldList
from runner.errors import (
    AuthError,
    PausedTooLong,
    PermanentError,
    RemoteError,
)
from runner.kinds.base import ResourceKind, Target
from runner.kinds.listing import Listing
from runner.log.records import State, key_hash
from runner.log.replay import Replay, iter_target_lines
from runner.log.verify_journal import JournalWriter, ListedSource, Proven
from runner.plan.planner import JobPlan
from runner.plan.shard import Shard
from runner.spec.config import Config
from runner.wire.requester import Requester

__all__ = [
    "CheckError",
    "ListingError",
    "Prepared",
    "Remains",
    "Verification",
    "gone_targets",
    "run_verification",
]

log = structlog.get_logger("bulkops.verify")

# Every final state but a failure: the target is recorded as gone, one way or another.
_GONE = frozenset(
    state for state in State if state.is_final and state not in (State.FAILED, State.HELD)
)
PROGRESS_EVERY = 10.0  # seconds between verify_progress log lines


@dataclass(slots=True)
class Remains:
    """A target that is still there, and the checks that found it (``fetch``, ``listing``)."""

    target: Target
    found_by: set[str]


@dataclass(frozen=True, slots=True)
class CheckError:
    """A target whose GET ended neither 200 nor 404 (after retries): not proven gone."""

    target: Target
    status: int
    code: int | None


@dataclass(frozen=True, slots=True)
class ListingError:
    """A source that could not be listed again to its end: its selection is not proven empty."""

    source: int
    path: str
    status: int
    code: int | None


@dataclass
class Verification:
    """What one verification found; :mod:`runner.app.verify_output` writes and prints it."""

    replay: Replay
    plan: JobPlan
    started: datetime
    finished: datetime | None = None
    population: int = 0  # targets the log records as deleted, gone or covered
    sample_size: int | None = None
    seed: int | None = None
    checked: Counter[ResourceKind] = field(default_factory=Counter)
    gone: Counter[ResourceKind] = field(default_factory=Counter)
    remains: dict[str, Remains] = field(default_factory=dict)  # by target key
    errors: list[CheckError] = field(default_factory=list)
    listed_sources: int = 0
    listing_errors: list[ListingError] = field(default_factory=list)
    held: int = 0  # listed again, but held
    services: tuple[str, ...] | None = None  # a job of several: the Services listed again
    resumed: int = 0  # sessions that continued the verification after its first
    unfinished: Counter[str] = field(default_factory=Counter)  # failed / pending in the log

    @property
    def proven(self) -> bool:
        """Whether everything checked is gone, and nothing kept a check from its end."""
        return not (self.remains or self.errors or self.listing_errors or self.unfinished)

    def remained(self, target: Target, found_by: str) -> None:
        """Record that ``found_by`` (a check) found ``target`` still there."""
        self.remains.setdefault(target.key, Remains(target, set())).found_by.add(found_by)


@dataclass(frozen=True)
class Prepared:
    """A verification's inputs, all checked before its first request: the replayed log, the
    plan it froze, the config (credentials and hosts) and the shard."""

    path: Path
    replay: Replay
    plan: JobPlan
    config: Config
    shard: Shard | None


def gone_targets(replay: Replay) -> Iterator[Target]:
    """Every target the log records as deleted, gone or covered, once each, streamed from the
    log (a target's row is made where the report makes it: its first *requested* line, or its
    *covered* line)."""
    for record in iter_target_lines(replay.path):
        first = record.state is State.REQUESTED and record.generation == 0
        if first or record.state is State.COVERED:
            target = record.target
            if replay.state_of(target) in _GONE:
                yield target


def sample_of(targets: Iterator[Target], size: int, rng: random.Random) -> tuple[list[Target], int]:
    """A uniform random sample of ``size`` of ``targets`` (reservoir sampling: one pass, memory
    for the sample only), and how many there were."""
    chosen: list[Target] = []
    seen = 0
    for seen, target in enumerate(targets, start=1):
        if len(chosen) < size:
            chosen.append(target)
        else:
            slot = rng.randrange(seen)
            if slot < size:
                chosen[slot] = target
    return chosen, seen


def listing_sources(prepared: Prepared) -> list[tuple[int, Listing]]:
    """The sources listed again: the ``where`` queries (named targets are all in the log, and
    fetched). A run of a reviewed plan (``apply``) deleted a list, not a query: nothing."""
    if prepared.replay.header.plan is not None:
        return []
    return [
        (index, source)
        for index, source in enumerate(prepared.plan.sources)
        if isinstance(source, Listing)
    ]


async def run_verification(
    prepared: Prepared,
    *,
    sample: int | None = None,
    seed: int | None = None,
    holds: HoldList | None = None,
    proven: Proven | None = None,
    journal: JournalWriter | None = None,
    started: datetime | None = None,
) -> Verification:
    """Check every target (or a sample) and list the selection again; what was found.

    ``proven`` is what the journal of an interrupted verification of the same log, sample and
    seed records: those verdicts and listed sources are taken as they are, not asked again.
    ``journal`` is told every new one. ``started``: when the verification began (its first
    session), now by default.

    Raises AuthError when the credentials are refused and PausedTooLong when the server asks
    for a pause beyond ``retry.max_pause``: the caller turns them into exit codes 4 and 9.
    """
    replay, plan = prepared.replay, prepared.plan
    found = Verification(replay, plan, started=started or datetime.now(UTC))
    if proven is not None:
        found.resumed = proven.sessions + 1
    found.unfinished = _unfinished(replay)
    if sample is not None:
        found.sample_size = sample
        found.seed = secrets.randbits(32) if seed is None else seed
        targets, found.population = sample_of(
            gone_targets(replay), sample, random.Random(found.seed)
        )
        chosen: Iterator[Target] = iter(targets)
    else:
        chosen = _counting(gone_targets(replay), found)
    if proven is not None:
        chosen = _unproven(chosen, proven, found)
    sources = listing_sources(prepared)
    async with build_client(plan, prepared.config) as client:
        requester = build_requester(client, plan, random.Random(), MONOTONIC)
        checker = _Checker(requester, plan.service, found, journal)
        discovery = Discovery(
            requester,
            plan.service,
            # A job of several Services is listed again in each: its list, or the Services
            # `all` froze in the log (a Service created since was never the run's).
            services=plan.services,
            frozen_services=replay.services,
            fanout=plan.fanout,
            # A conversation the log records as deleted is fetched itself; listing its children
            # would only say 404 again.
            skip_conversation=replay.deleted_conversations.__contains__,
            on_attributes=None if holds is None else holds.note_attributes,
        )
        held = _Held(holds, requester, plan.service)
        listed = {} if proven is None else proven.sources
        try:
            async with anyio.create_task_group() as outer:
                outer.start_soon(_report_progress, found, PROGRESS_EVERY)
                if journal is not None:
                    outer.start_soon(journal.run)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(checker.check_all, chosen, plan.concurrency)
                    for index, source in sources:
                        if index in listed:
                            _listed_before(listed[index], found)
                            continue
                        tg.start_soon(
                            _list_again,
                            discovery,
                            index,
                            source,
                            prepared.shard,
                            held,
                            found,
                            journal,
                        )
                if journal is not None:
                    journal.close()
                outer.cancel_scope.cancel()
        except* AuthError as group:
            raise _first(group) from None
        except* PausedTooLong as group:
            raise _first(group) from None
    found.listed_sources = len(sources)
    if plan.services is not None:
        found.services = discovery.services_found or _services_listed(listed)
    found.finished = datetime.now(UTC)
    log.info(
        "verify_finished",
        population=found.population,
        checked=sum(found.checked.values()),
        gone=sum(found.gone.values()),
        remained=len(found.remains),
        errors=len(found.errors),
        listing_errors=len(found.listing_errors),
        requests=sum(requester.tally.requests.values()),
        retries=requester.tally.retries,
        throttled=requester.tally.throttled,
        resumed=found.resumed,
    )
    return found


async def _report_progress(found: Verification, interval: float) -> None:
    """Until cancelled: a ``verify_progress`` log line every ``interval`` seconds (a verify of
    millions of targets takes a while, and says nothing else until its end)."""
    while True:
        await MONOTONIC.sleep(interval)
        log.info(
            "verify_progress",
            checked=sum(found.checked.values()),
            gone=sum(found.gone.values()),
            remained=len(found.remains),
            errors=len(found.errors),
        )


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first leaf exception of ``group``."""
    leaf: BaseException = group
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    return leaf


def _unfinished(replay: Replay) -> Counter[str]:
    """Targets the log leaves failed or pending: not deleted, so nothing proves them gone."""
    counts: Counter[str] = Counter()
    for (_kind, state), count in replay.counts().items():
        if state is State.FAILED:
            counts["failed"] += count
        elif not state.is_final:
            counts["pending"] += count
    return counts


def _unproven(targets: Iterator[Target], proven: Proven, found: Verification) -> Iterator[Target]:
    """The targets of ``targets`` the journal has no verdict on; each it has is counted as the
    fetch that made it did (checked, and gone or remaining)."""
    for target in targets:
        gone = proven.gone(key_hash(target.key))
        if gone is None:
            yield target
            continue
        found.checked[target.kind] += 1
        if gone:
            found.gone[target.kind] += 1
        else:
            found.remained(target, "fetch")


def _listed_before(source: ListedSource, found: Verification) -> None:
    """What a source listed again in an earlier session found, counted as its listing did."""
    found.held += source.held
    for target in source.remains:
        found.remained(target, "listing")


def _services_listed(listed: dict[int, ListedSource]) -> tuple[str, ...] | None:
    """The Services an earlier session's listings knew (when none was listed in this one)."""
    return next((s.services for s in listed.values() if s.services is not None), None)


def _counting(targets: Iterator[Target], found: Verification) -> Iterator[Target]:
    for target in targets:
        found.population += 1
        yield target


class _Checker:
    """Fetches targets with a pool of workers fed through a bounded stream."""

    def __init__(
        self,
        requester: Requester,
        service: str | None,
        found: Verification,
        journal: JournalWriter | None,
    ) -> None:
        self._requester = requester
        self._service = service
        self._found = found
        self._journal = journal

    async def check_all(self, targets: Iterator[Target], workers: int) -> None:
        """Fetch every target of ``targets``, ``workers`` at a time (the limits decide how many
        are really in flight)."""
        send, receive = anyio.create_memory_object_stream[Target](workers)
        async with anyio.create_task_group() as tg:
            for _ in range(workers):
                tg.start_soon(self._work, receive.clone())
            receive.close()
            async with send:
                for target in targets:
                    await send.send(target)

    async def _work(self, targets: anyio.abc.ObjectReceiveStream[Target]) -> None:
        async with targets:
            async for target in targets:
                await self.check(target)

    async def check(self, target: Target) -> None:
        """GET ``target`` and record what the answer proves."""
        kind, found = target.kind, self._found
        if kind.fetch_path is None or (kind.has_parent and target.parent is None):
            found.errors.append(CheckError(target, 0, None))  # nothing to ask: not proven
            return
        found.checked[kind] += 1
        try:
            # In the Service the log says it was found in (a job of several), else the job's.
            path = kind.fetch_path(target, target.service or self._service)
            await self._requester.send("GET", kind.product, path)
        except AuthError:
            raise
        except PermanentError as exc:
            if exc.status == 404:
                found.gone[kind] += 1
                self._note(target, gone=True)
            else:
                found.errors.append(CheckError(target, exc.status, exc.code))
        except RemoteError as exc:  # 5xx, faults or 429s past the retry policy's bounds
            # Not proof either way: not journaled, so a verify that continues asks again.
            found.errors.append(CheckError(target, exc.status, exc.code))
        else:
            found.remained(target, "fetch")
            self._note(target, gone=False)

    def _note(self, target: Target, *, gone: bool) -> None:
        if self._journal is not None:
            self._journal.verdict(key_hash(target.key), gone=gone)


class _Held:
    """What the job's legal holds keep of what a listing selects again. A target whose v1
    conversation the listing did not show (``conversations: [CH…]``) has its conversation's
    attributes fetched once, as the run did before its DELETE."""

    def __init__(self, holds: HoldList | None, requester: Requester, service: str | None) -> None:
        self._holds = holds
        self._reads = (
            None if holds is None or not holds.wheres else AttributeReads(holds, requester, service)
        )

    async def __call__(self, target: Target) -> bool:
        if self._holds is None:
            return False
        if self._reads is not None:
            await self._reads.judge(target)
        return self._holds.holds(target)


async def _list_again(
    discovery: Discovery,
    index: int,
    source: Listing,
    shard: Shard | None,
    held: Callable[[Target], Awaitable[bool]],
    found: Verification,
    journal: JournalWriter | None = None,
) -> None:
    """List ``source`` as the run did; whatever it still selects remains (unless held). A
    listing that reached its end is journaled with its finds; one that failed is not."""
    remains: dict[str, Target] = {}
    held_here = 0

    async def emit(targets: Sequence[Target]) -> None:
        nonlocal held_here
        for target in targets:
            if shard is not None and not shard.owns(target):
                continue
            if await held(target):
                found.held += 1
                held_here += 1
                continue
            found.remained(target, "listing")
            remains[target.key] = target

    # Discovery runs task groups of its own, so its errors arrive as exception groups.
    try:
        await discovery.run(source, emit)
    except* AuthError:
        raise
    except* PausedTooLong:
        raise
    except* RemoteError as group:
        failure = _first(group)
        assert isinstance(failure, RemoteError)
        found.listing_errors.append(
            ListingError(index, source.path(discovery.service), failure.status, failure.code)
        )
        log.error("verify_listing_failed", source=index, status=failure.status, code=failure.code)
    else:
        if journal is not None:
            journal.listed(
                index,
                ListedSource(tuple(remains.values()), held_here, discovery.services_found),
            )
