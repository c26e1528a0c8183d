"""The engine: discovery producers → bounded work queue → deletion workers → Operation trackers.

One task group owns every task (STYLE habit 4). Discovery runs source by source in phases
(:func:`runner.engine.admission.in_phases`); v1 conversations go first and the next phase waits
until every one of them has an outcome, so a message or participant whose conversation this job
deleted is recorded as *covered* instead of being deleted one by one — and one whose conversation
could not be deleted is still deleted on its own. Nothing selected is lost to that shortcut. What
is found goes through the :class:`~runner.engine.admission.Admission` that ``plan`` uses too.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType
from typing import Any

import anyio
import anyio.lowlevel
import structlog

from runner.clock import Clock
from runner.engine.admission import Admission, Verdict, in_phases
from runner.engine.discovery import Discovery, ListedConversations, ListedServices
from runner.engine.hold_reads import AttributeReads
from runner.engine.holds import HoldList
from runner.engine.operations import Accepted, follow, operation_path, parse_accepted
from runner.engine.workqueue import WorkQueue
from runner.errors import (
    AuthError,
    OperationFailed,
    PausedTooLong,
    PermanentError,
    RateLimited,
    RemoteError,
    SafetyAbort,
    Stopped,
    TransientError,
    Withheld,
)
from runner.internal import InternalFault
from runner.kinds.base import ResourceKind, Target
from runner.log.records import (
    UNSENT_STATES,
    State,
    TargetRecord,
    children_listed_record,
    progress_record,
    request_found_record,
    service_listed_record,
    services_record,
    target_record,
)
from runner.log.replay import Replay
from runner.log.writer import CheckpointWriter, Durable
from runner.plan.planner import JobPlan, ServiceSet
from runner.plan.selection import Explicit, Manifest, Source, source_kinds
from runner.plan.shard import Shard
from runner.values import Progress
from runner.wire.requester import Requester

log = structlog.get_logger("bulkops.scheduler")

Work = tuple[Target, Durable | None]  # a target, and the promise of its request line on disk

# After a pause beyond retry.max_pause, what is in flight gets this long (as after Ctrl-C).
PAUSE_GRACE_SECONDS = 4.0

IDEMPOTENCY_NAMESPACE = uuid.UUID("4f1b3c2e-8d6a-5e7f-9a0b-1c2d3e4f5a6b")


def _first(group: BaseExceptionGroup[Any], *types: type[Any]) -> Any:
    """The first leaf exception of ``group`` that is one of ``types``."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found = _first(exc, *types)
            if found is not None:
                return found
        elif isinstance(exc, types):
            return exc
    return None


def _named(sources: Sequence[Source]) -> int:
    """How many targets the job's ids and manifests among ``sources`` name."""
    return sum(
        len(s.targets) if isinstance(s, Explicit) else s.count
        for s in sources
        if isinstance(s, Explicit | Manifest)
    )


def on_disk(work: Work) -> bool:
    """Whether a target's write-ahead line is on disk, so its DELETE may go without waiting;
    if not, the fsync is asked for now (the queue passes the page over, so no worker would)."""
    durable = work[1]
    if durable is None or durable.is_set():
        return True
    durable.ask()
    return False


def preflight(sources: list[Source], max_deletions: int | None) -> None:
    """Refuse before any request when the job's ids and manifests alone exceed max_deletions."""
    if max_deletions is None:
        return
    known = _named(sources)
    if known > max_deletions:
        raise SafetyAbort(
            f"the job's ids and manifests select {known} targets, more than "
            f"safety.max_deletions = {max_deletions}; nothing was deleted. Raise the limit "
            "(--max-deletions N, or in the spec) or narrow the selection."
        )


def idempotency_key(run_id: str, target: Target, generation: int = 0) -> str:
    """The key sent with a target's v2 DELETE: the same for every attempt and every resume, so
    a re-send returns the original Operation. ``generation`` counts deliberate retries of a
    failed target (``--retry-failed``): a failed Operation must not be replayed, so each retry
    gets a new key — recorded in the log before it is sent, so a crash mid-retry reuses it."""
    suffix = f"#{generation}" if generation else ""
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{run_id}:{target.key}{suffix}"))


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """The run-time knobs the engine needs from the spec."""

    run_id: str
    service: str | None
    webhooks: bool | None
    workers: int
    poll_interval: float
    operation_timeout: float
    max_deletions: int | None
    max_failure_rate: float
    failure_rate_min_count: int
    max_tracked_operations: int = 10_000
    retry_failed: bool = False
    shard: Shard | None = None  # a sharded run's part of what is found
    services: ServiceSet = None  # a job of several Services: `all` or their SIDs
    holds: HoldList | None = None  # legal holds, checked at admission and again at send time

    @classmethod
    def of(
        cls,
        plan: JobPlan,
        run_id: str,
        *,
        retry_failed: bool = False,
        holds: HoldList | None = None,
    ) -> EngineSettings:
        """The settings of a run of ``plan``: the one place a plan's values reach the engine."""
        return cls(
            run_id=run_id,
            service=plan.service,
            services=plan.services,
            webhooks=plan.webhooks,
            workers=plan.concurrency,
            poll_interval=plan.poll_interval,
            operation_timeout=plan.operation_timeout,
            max_deletions=plan.max_deletions,
            max_failure_rate=plan.max_failure_rate,
            failure_rate_min_count=plan.failure_rate_min_count,
            retry_failed=retry_failed,
            shard=plan.shard,
            holds=holds,
        )


class Engine:
    """Runs one job (or the rest of one) to the end."""

    def __init__(
        self,
        settings: EngineSettings,
        requester: Requester,
        sources: list[Source],
        writer: CheckpointWriter,
        *,
        clock: Clock,
        prior: Replay | None = None,
        fanout: int = 32,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._admission = Admission(
            shard=settings.shard,
            prior=prior,
            max_deletions=settings.max_deletions,
            holds=settings.holds,
            # A shard admits only its part: its set grows as it goes.
            expected=_named(sources) if settings.shard is None else 0,
        )
        # The admission counts what it admits by kind; the live display reads the same counter.
        self.progress: Progress[ResourceKind, State] = Progress(
            found=self._admission.admitted,
            earlier=_earlier(prior, settings.retry_failed),
            traffic=requester.tally,
        )
        for source in sources:
            for kind in source_kinds(source):
                self.progress.listing[kind] += 1
            if settings.shard is None and isinstance(source, Explicit | Manifest):
                self.progress.named[source.kind] += _named([source])
        self._req = requester
        self._discovery = Discovery(
            requester,
            settings.service,
            services=settings.services,
            frozen_services=None if prior is None else prior.services,
            frozen_rejected=0 if prior is None else prior.services_rejected,
            on_services=lambda sids, rejected: self._writer.put(services_record(sids, rejected)),
            fanout=fanout,
            skip_conversation=self._admission.skips_children_of,
            on_attributes=None if settings.holds is None else settings.holds.note_attributes,
        )
        self._reads = (
            None
            if settings.holds is None or not settings.holds.wheres
            else AttributeReads(settings.holds, requester, settings.service)
        )
        self._sources = sources
        self._writer = writer
        self._prior = prior
        self._stopping = False
        self._work_scope = anyio.CancelScope()
        self._timers: anyio.abc.TaskGroup  # what waits on the clock to stop the run, once it runs
        self._discovery_scope = anyio.CancelScope()
        self._tracking = anyio.Semaphore(settings.max_tracked_operations)
        # Room for many conversations' pages at once (each is paced at 30/s), while a manifest
        # chunk is topped up when the workers' next two rounds are all that is left of it.
        # A producer refills it once half of it is left, several pages at a time (see WorkQueue).
        capacity = max(1024, settings.workers * 16)
        self._queue: WorkQueue[Work] = WorkQueue(
            capacity=capacity, low=settings.workers * 2, room=capacity // 2, delay=self._delay
        )
        self._finished = 0  # outcomes of this run, for the failure-rate brake
        self._failed = 0
        # Bound once: the module's lazy proxy builds a logger on every call, which the
        # per-target debug line would pay even when debug is off.
        self._log = log.bind()
        # And asked once: with debug off the per-target line's fields are not even computed.
        self._debug: bool = self._log.is_enabled_for(logging.DEBUG)
        # The webhook header of a v1 DELETE, the same for every target: built once, not per
        # request (None: the spec leaves webhooks as the Service has them).
        self._webhook_headers: Mapping[str, str] | None = (
            None
            if settings.webhooks is None
            else MappingProxyType(
                {"X-Twilio-Webhook-Enabled": "true" if settings.webhooks else "false"}
            )
        )
        self.abort: SafetyAbort | None = None
        self.auth_error: AuthError | None = None
        self.paused: PausedTooLong | None = None
        self.discovery_errors = 0
        self.discovery_failures: list[tuple[int, RemoteError | OperationFailed]] = []
        self.last_failure: RemoteError | None = None  # of a DELETE, for the closing message
        # The first unexpected exception of the run (exit 8): set by whoever meets one at the top
        # of a task group, never by the code that raised it.
        self.internal_error: InternalFault | None = None

    def failures(self) -> int:
        """Targets failed in this run, plus those of the resumed log that were not retried."""
        carried = 0
        if self._prior is not None and not self.settings.retry_failed:
            carried = len(self._prior.failed)
        return self.progress.outcome(State.FAILED) + carried

    # -- control ---------------------------------------------------------------------------

    def release(self) -> int:
        """Drop what only a running engine needs (the set of admitted targets can be the size
        of the job), before the final replay of the log is built beside it; returns how many
        targets it had admitted, for sizing that replay."""
        return self._admission.release()

    @property
    def stopping(self) -> bool:
        """Whether the run is stopping (no new DELETE may be sent)."""
        return self._stopping

    def stop(self) -> None:
        """Stop taking new work; requests in flight may finish (see :meth:`hard_stop`)."""
        self._stopping = True
        self._req.stop_deletes()
        self._discovery_scope.cancel()

    def hard_stop(self) -> None:
        """Cancel everything still running; the checkpoint keeps what finished."""
        self._stopping = True
        self._req.stop_deletes()
        self._work_scope.cancel()

    def fail_internal(self, fault: InternalFault) -> None:
        """An unexpected exception stopped part of the run: record the first one and stop hard.
        The target in hand is left as the log last recorded it (requested or accepted), so a
        resume drives it again with the same Idempotency-Key; nothing is recorded as done."""
        if self.internal_error is None:
            self.internal_error = fault
        fault.log()
        self.hard_stop()

    # -- the run ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Discover, delete and track until done, stopped or aborted."""
        # The timers (a grace period on the run's clock) must not keep the run alive once its
        # work is over: they live in a task group of their own, cancelled when the work ends.
        async with anyio.create_task_group() as timers:
            self._timers = timers
            try:
                with self._work_scope:
                    async with anyio.create_task_group() as tg:
                        for _ in range(self.settings.workers):
                            tg.start_soon(self._worker, tg)
                        if self._prior is not None:
                            unfinished = list(self._prior.open.values())
                            if self.settings.retry_failed:
                                unfinished += list(self._prior.failed.values())
                            for rec in unfinished:
                                await self._resume_unfinished(rec, tg)
                        tg.start_soon(self._discover)
            finally:
                timers.cancel_scope.cancel()

    async def _resume_unfinished(self, rec: TargetRecord, tg: anyio.abc.TaskGroup) -> None:
        target = rec.target
        self._admission.readmit(target)
        if rec.state is State.ACCEPTED and rec.operation:
            product = target.kind.product
            accepted = Accepted(rec.operation, operation_path(product, rec.operation), 0.0)
            await self._start_tracking(target, accepted, tg)
        elif rec.state is State.FAILED:
            generation = rec.generation + 1
            durable = self._writer.put_durable(
                target_record(target, State.REQUESTED, generation=generation)
            )
            tg.start_soon(
                partial(self._drive, target, tg, generation, durable, requested_before=True)
            )
        else:
            # Requested: send again with the same Idempotency-Key, so Twilio answers with the
            # original Operation (v1 answers 404 if the first delete went through: gone after
            # request).
            tg.start_soon(partial(self._drive, target, tg, rec.generation, requested_before=True))

    async def _discover(self) -> None:
        try:
            with self._discovery_scope:
                await in_phases(self._sources, self._discover_source, self._admission.settled)
                self.progress.discovery_done = True
                # A line to wait for (an operator's log search, a test watching the process).
                log.info("listing_done", found=sum(self.progress.found.values()))
        finally:
            self._queue.close()

    async def _discover_source(self, index: int, source: Source) -> None:
        found = 0

        async def emit(targets: Sequence[Target]) -> None:
            nonlocal found
            # The whole page is admitted (its requested lines queued together, so they share a
            # checkpoint line) before any of it waits for a worker.
            admitted: list[Work] = []
            for target in targets:
                if self._stopping:
                    break
                durable = self._admit(target)
                if durable is not None:
                    admitted.append((target, durable))
            if self._stopping:
                await anyio.lowlevel.checkpoint()  # raises: discovery's scope is cancelled
                return
            found += len(admitted)
            await self._queue.put_many(admitted)

        failure: RemoteError | OperationFailed | None = None
        # Discovery runs task groups of its own, so its errors arrive as exception groups.
        try:
            await self._discovery.run(
                source, emit, self._listed(index), self._services_listed(index)
            )
        except* AuthError as group:
            self._fatal_auth(_first(group, AuthError))
            return_early = True
        except* PausedTooLong as group:
            self._paused_too_long(_first(group, PausedTooLong))
            return_early = True  # not done: a resume lists this source again
        except* (RemoteError, OperationFailed) as group:
            failure = _first(group, RemoteError, OperationFailed)
            return_early = False
        else:
            return_early = False
        if return_early:
            return
        for kind in source_kinds(source):  # listed to its end, or as far as it could be
            self.progress.listing[kind] -= 1
        if failure is not None:
            log.error(
                "discovery_failed",
                source=index,
                status=getattr(failure, "status", None),
                code=getattr(failure, "code", None),
                error=str(failure)[:200],
            )
            self._writer.put(progress_record(index, found, error=str(failure)))
            self.discovery_errors += 1
            self.discovery_failures.append((index, failure))
            return
        self._writer.put(progress_record(index, found, done=True))

    def _listed(self, index: int) -> ListedConversations:
        done = self._prior.children_listed.get(index, set()) if self._prior else set()

        async def record(sid: str) -> None:
            self._writer.put(children_listed_record(index, sid))

        async def settled(request: str, found: int) -> None:
            self._writer.put(children_listed_record(index, request, found=found))

        def found_in(request: str, service: str | None, count: int) -> None:
            # Queued before the request's targets' lines, so on disk before any is deleted.
            self._writer.put(request_found_record(index, request, count, service))

        before = self._prior.requests_found if self._prior else {}
        return ListedConversations(
            done.__contains__,
            record,
            settled,
            found_in,
            lambda request, service: before.get((request, service), 0),
        )

    def _services_listed(self, index: int) -> ListedServices:
        done = self._prior.services_listed.get(index, set()) if self._prior else set()
        return ListedServices(
            done.__contains__,
            lambda sid: self._writer.put(service_listed_record(index, sid)),
        )

    def _admit(self, target: Target) -> Durable | None:
        """Act on the admission's verdict about a found target; returns the promise of its
        *requested* line on disk, or None when it is not to be driven."""
        verdict = self._admission.admit(target)
        if verdict is Verdict.ADMITTED:
            # Write-ahead: the worker sends the DELETE only once this line is on disk, so after
            # any crash the log names every target that may have been deleted.
            return self._writer.put_durable(target_record(target, State.REQUESTED))
        if verdict is Verdict.FINAL:
            self.progress.skipped_done += 1
        elif verdict is Verdict.COVERED:
            self._finish(target, State.COVERED)
        elif verdict is Verdict.HELD:
            self._finish(target, State.HELD)  # counted in the report, never sent
        elif verdict is Verdict.BRAKED:
            self.abort = self._admission.brake()
            self.stop()
        return None

    def _delay(self, work: Work) -> float:
        """How long a worker taking ``work`` now would wait before its DELETE may leave: for
        its write-ahead line's fsync (not under way until asked: ``math.inf``), then for its
        scope's pace and pauses."""
        if not on_disk(work):
            return math.inf
        target = work[0]
        kind = target.kind
        return self._req.limits.delay(kind.product, kind.limit_scope(target, self._service(target)))

    def _service(self, target: Target) -> str | None:
        """The Service ``target`` was found in, in a job of several; else the job's one."""
        return target.service or self.settings.service

    async def _worker(self, tg: anyio.abc.TaskGroup) -> None:
        while not self._stopping:
            try:
                target, durable = await self._queue.get()
            except anyio.EndOfStream:
                return
            await self._drive(target, tg, 0, durable)

    async def _drive(
        self,
        target: Target,
        tg: anyio.abc.TaskGroup,
        generation: int = 0,
        durable: Durable | None = None,
        *,
        requested_before: bool = False,
    ) -> None:
        """Send ``target``'s DELETE and act on the answer. ``requested_before``: an earlier
        process of this run requested it (its answer was never logged, or was a failure), so a
        404 may well answer this run's own earlier delete (gone after request, not gone)."""
        if durable is not None and not durable.is_set():
            await durable.wait()
        if self._reads is not None:
            # The attributes of a conversation no listing of this run showed, read before any
            # DELETE in it (a failed read holds it).
            try:
                await self._reads.judge(target)
            except AuthError as exc:
                self._fatal_auth(exc)
                return
            except PausedTooLong as exc:
                self._paused_too_long(exc)
                return
        info = target.kind
        headers = None if info.is_async else self._webhook_headers
        if info.idempotent_header:
            key = {"Idempotency-Key": idempotency_key(self.settings.run_id, target, generation)}
            headers = key if headers is None else {**headers, **key}
        service = self._service(target)
        try:
            reply = await self._req.send(
                "DELETE",
                info.product,
                info.delete_path(target, service),
                key=info.limit_scope(target, service),
                headers=headers,
                # Asked once the limits let the DELETE go, just before it leaves: a hold added
                # mid-run (a hold file changed, attributes read) holds the very next DELETE.
                # Without holds nothing can hold it: nothing to ask.
                withhold=(
                    None
                    if self.settings.holds is None
                    else partial(self._admission.held_now, target)
                ),
            )
        except Withheld:
            # Held since it was admitted: never sent, final in the log as held, and its
            # children are not covered through it.
            self._finish(target, State.HELD)
            if target.kind.covers_children:
                self._admission.settle(target.id, False)
            return
        except AuthError as exc:
            self._fatal_auth(exc)
            return
        except Stopped:
            return  # never sent: the target stays requested, for a resume
        except PausedTooLong as exc:
            self._paused_too_long(exc)
            return  # not sent into the pause: the target stays requested, for a resume
        except PermanentError as exc:
            if exc.status == 404:
                # Absent: at the first DELETE this run sent, or after an earlier one (in a process
                # that stopped, or an attempt that met a fault) that may have deleted it.
                again = requested_before or exc.after_fault
                self._finish(target, State.GONE_AFTER_REQUEST if again else State.GONE)
            else:
                self.last_failure = exc
                self._finish(target, State.FAILED, code=exc.code or exc.status, message=exc.message)
            return
        except (TransientError, RateLimited) as exc:
            self.last_failure = exc
            self._finish(
                target, State.FAILED, code=exc.code or exc.status, message=f"gave up: {exc.message}"
            )
            return
        if not info.is_async:
            self._finish(target, State.DELETED)
            return
        try:
            accepted = parse_accepted(reply, info.product)
        except PermanentError as exc:
            self._finish(target, State.FAILED, message=exc.message)
            return
        self._writer.put(
            target_record(
                target,
                State.ACCEPTED,
                ts=self._writer.seconds(),
                operation=accepted.operation_id,
                with_parent=False,
            )
        )
        await self._start_tracking(target, accepted, tg)

    async def _start_tracking(
        self, target: Target, accepted: Accepted, tg: anyio.abc.TaskGroup
    ) -> None:
        await self._tracking.acquire()
        self.progress.pending_operations += 1
        tg.start_soon(self._track, target, accepted)

    async def _track(self, target: Target, accepted: Accepted) -> None:
        product = target.kind.product
        try:
            await follow(
                self._req,
                product,
                accepted,
                poll_interval=self.settings.poll_interval,
                give_up_after=self.settings.operation_timeout,
                clock=self._clock,
            )
        except OperationFailed as exc:
            self._finish(
                target,
                State.FAILED,
                code=exc.code,
                message=f"operation {exc.status}: {exc.detail}",
            )
        except AuthError as exc:
            self._fatal_auth(exc)
        except PausedTooLong as exc:
            self._paused_too_long(exc)  # the target stays accepted: a resume polls it again
        except RemoteError as exc:
            self._finish(
                target,
                State.FAILED,
                code=exc.code or exc.status,
                message=f"polling failed: {exc.message}",
            )
        else:
            self._finish(target, State.DELETED)
        finally:
            self.progress.pending_operations -= 1
            self._tracking.release()

    def _finish(
        self,
        target: Target,
        state: State,
        *,
        code: int | None = None,
        message: str | None = None,
    ) -> None:
        self.progress.outcomes[(target.kind, state)] += 1
        if state is not State.HELD:  # a held target is no outcome of a DELETE
            self._finished += 1
        if state is State.FAILED:
            self._failed += 1
        self._writer.put(
            target_record(
                target,
                state,
                ts=self._writer.seconds(),
                code=code,
                message=message,
                # Only a covered or held target may have no requested line naming its
                # conversation.
                with_parent=state in UNSENT_STATES,
            )
        )
        if self._debug:
            self._log.debug(
                "target_finished", kind=target.kind.name, id=target.id, outcome=state.name.lower()
            )
        if target.kind.covers_children and state not in UNSENT_STATES:
            self._admission.settle(target.id, state.is_absent)
        if self._failed:  # no failure, no rate above any max_failure_rate (never below 0)
            self._check_failure_rate()

    def _check_failure_rate(self) -> None:
        failed, finished = self._failed, self._finished
        if (
            self.abort is None
            and finished >= self.settings.failure_rate_min_count
            and failed / finished > self.settings.max_failure_rate
        ):
            self.abort = SafetyAbort(
                f"{failed} of {finished} targets failed, more than safety.max_failure_rate = "
                f"{self.settings.max_failure_rate:g}; stopped. See the report for the errors."
            )
            self.hard_stop()

    def _paused_too_long(self, exc: PausedTooLong) -> None:
        """Stop like --max-duration: no new work, what is in flight gets a grace period."""
        if self.paused is None:
            self.paused = exc
            log.error(
                "paused_too_long", scope=exc.scope, seconds=exc.seconds, max_pause=exc.max_pause
            )
            self.stop()
            self._timers.start_soon(self._hard_stop_after, PAUSE_GRACE_SECONDS)

    async def _hard_stop_after(self, seconds: float) -> None:
        await self._clock.sleep(seconds)
        self.hard_stop()

    def _fatal_auth(self, exc: AuthError) -> None:
        if self.auth_error is None:
            self.auth_error = exc
            log.error("credentials_refused", status=exc.status, code=exc.code)
        self.hard_stop()


def _earlier(prior: Replay | None, retry_failed: bool) -> Counter[tuple[ResourceKind, State]]:
    """The final outcomes a resumed log records that this run will not drive again (failed ones
    are driven again with ``--retry-failed``), for the live view's totals."""
    if prior is None:
        return Counter()
    return Counter(
        {
            (kind, state): n
            for (kind, state), n in prior.counts().items()
            if state.is_final and not (retry_failed and state is State.FAILED)
        }
    )


# Where an unexpected exception met in the engine happened, in words (runner.internal.diagnose
# names the innermost of these that its traceback passes through).
STAGES = {
    Engine.run.__code__: "the engine",
    Engine._resume_unfinished.__code__: "re-driving the targets a resumed run left open",
    Engine._discover.__code__: "discovery",
    Engine._discover_source.__code__: "discovery (listing a source)",
    Engine._admit.__code__: "admitting a found target",
    Admission.admit.__code__: "admitting a found target",
    Admission.readmit.__code__: "re-driving the targets a resumed run left open",
    Engine._worker.__code__: "a deletion worker",
    Engine._drive.__code__: "a deletion worker (sending a DELETE, reading its answer)",
    Engine._start_tracking.__code__: "an Operation tracker",
    Engine._track.__code__: "an Operation tracker (polling)",
    Engine._finish.__code__: "recording an outcome",
}
