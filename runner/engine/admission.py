"""Admission: which of the targets discovery finds a job drives, decided in one place.

``run``, ``resume`` and ``apply`` (through the scheduler) and ``plan`` (with no workers and no log)
ask the same :class:`Admission` about every target found, in the order it was found:

* a target of another shard is passed over (the shard is the only filter here: discovery lists
  what the spec selects, the admission keeps this process's part of it — and spares it the
  messages and participants of another shard's conversations, :meth:`Admission.skips_children_of`);
* a target already seen — by key, listed twice or by two sources — is passed over;
* a target the log being resumed records as final is not driven again;
* a held target (a held conversation, or a message or participant of one) is not admitted, and
  "covered" never applies through a held conversation (:mod:`runner.engine.holds`); an admitted
  one is asked again at the last moment before its DELETE leaves (:meth:`Admission.held_now`);
* a message or participant whose conversation this job deletes is *covered*: it goes with it;
* past ``safety.max_deletions`` (counting what earlier processes of the run admitted) the brake
  stops the run;
* anything else is admitted, and counted by kind.

A run holds each v1 conversation it admits open until its outcome is known (:meth:`settle`),
and the next phase of discovery waits for all of them (:func:`in_phases`). A plan deletes
nothing and waits for nothing: it takes each conversation it selects as deleted, so what it
counts as covered is what a run that deletes them all would cover.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import anyio

from runner.engine.holds import HoldList
from runner.errors import SafetyAbort
from runner.kinds.base import ResourceKind, Target
from runner.log.digests import SeenSet
from runner.log.records import key_hash
from runner.log.replay import Replay
from runner.plan.selection import Source, phase
from runner.plan.shard import Shard

__all__ = ["Admission", "Verdict", "in_phases"]


class Verdict(enum.Enum):
    """What the admission decided about one found target."""

    ADMITTED = "admitted"  # to be driven (a run logs it as requested before sending anything)
    PASSED = "passed"  # another shard's, or already seen: nothing to do or record
    FINAL = "final"  # final in the log being resumed
    COVERED = "covered"  # its conversation is deleted by this job
    HELD = "held"  # under a legal hold: never touched
    BRAKED = "braked"  # beyond safety.max_deletions: the run stops


class Admission:
    """The admission of one run (or plan); see the module docstring for the rules."""

    def __init__(
        self,
        *,
        shard: Shard | None = None,
        prior: Replay | None = None,
        max_deletions: int | None = None,
        planning: bool = False,
        holds: HoldList | None = None,
        expected: int = 0,
    ) -> None:
        """``expected``: how many targets it will likely admit (the job's ids and manifests),
        to size the set of admitted targets once instead of growing it step by step."""
        self._holds = holds
        self._shard = shard
        self._prior = prior
        self._max_deletions = max_deletions
        self._planning = planning
        self._seen = SeenSet(expected)  # key hashes of admitted targets: 12 bytes a slot, not 70
        self._conversations: dict[str, bool] = {}  # v1 conversation SID → deleted by this job
        if prior is not None:
            self._conversations = dict.fromkeys(prior.deleted_conversations, True)
        self._open = 0  # v1 conversations admitted whose outcome is not known yet
        self._settled = anyio.Event()
        self._selected = 0  # admitted by this process, for the brake
        # safety.max_deletions holds for the run, not for each process that drives its log.
        self._spent = 0 if prior is None or max_deletions is None else prior.admitted()
        self.admitted: Counter[ResourceKind] = Counter()  # by kind, resumed open targets included
        self.covered: Counter[ResourceKind] = Counter()
        self.held: Counter[ResourceKind] = Counter()

    def admit(self, target: Target) -> Verdict:
        """Decide about a found target, and count it."""
        if self._shard is not None and not self._shard.owns(target):
            return Verdict.PASSED  # another shard's
        if not self._seen.add(key_hash(target.key)):
            return Verdict.PASSED
        prior = self._prior.state_of(target) if self._prior is not None else None
        if prior is not None and prior.is_final:
            # Final in the log being resumed (a run re-drives failed ones itself when asked to).
            return Verdict.FINAL
        if self._holds is not None and self._holds.holds(target):
            self.held[target.kind] += 1
            return Verdict.HELD
        if target.parent is not None and self._conversations.get(target.parent):
            self.covered[target.kind] += 1
            return Verdict.COVERED
        self._selected += 1
        # Targets an earlier process of this run admitted count too (the log's every target but
        # the covered ones: a DELETE was sent for each, or could have been); re-driving those
        # costs nothing more.
        limit = self._max_deletions
        if limit is not None and self._spent + self._selected > limit:
            return Verdict.BRAKED
        self._count(target)
        return Verdict.ADMITTED

    def held_now(self, target: Target) -> bool:
        """Whether ``target``, admitted earlier, is held now: asked again just before its DELETE
        is sent, so that a hold added mid-run takes effect before the next DELETE it covers."""
        if self._holds is None or not self._holds.holds(target, sending=True):
            return False
        self.held[target.kind] += 1
        self.admitted[target.kind] -= 1  # found, but held: what is shown as found is what is sent
        return True

    def readmit(self, target: Target) -> None:
        """Take in a target the resumed log left unfinished (it is driven before discovery)."""
        self._seen.add(key_hash(target.key))
        self._count(target)

    def _count(self, target: Target) -> None:
        self.admitted[target.kind] += 1
        if target.kind.covers_children:
            # A plan takes what it selects as deleted; a run holds the conversation's children
            # until it has an outcome.
            self._conversations[target.id] = self._planning
            if not self._planning:
                self._open += 1

    def brake(self) -> SafetyAbort:
        """The error that stops a run whose discovery went past safety.max_deletions."""
        earlier = f" ({self._spent} of them before this resume)" if self._spent else ""
        return SafetyAbort(
            f"discovery selected more than safety.max_deletions = {self._max_deletions} targets"
            f"{earlier}; stopped before deleting more. Raise the limit for this run "
            "(`bulkops resume --max-deletions N LOG`: no spec edit) or narrow the selection."
        )

    def settle(self, conversation: str, deleted: bool) -> None:
        """A v1 conversation this run admitted has an outcome: its children are covered when
        it was deleted (or was gone), and deleted on their own when not."""
        self._conversations[conversation] = deleted
        self._open -= 1
        if self._open == 0:
            self._settled.set()

    async def settled(self) -> None:
        """Wait until every v1 conversation admitted so far has an outcome."""
        while self._open:
            self._settled = anyio.Event()
            await self._settled.wait()

    def conversation_deleted(self, sid: str) -> bool:
        """Whether this job (or the run it resumes) deleted v1 conversation ``sid``."""
        return self._conversations.get(sid, False)

    def skips_children_of(self, sid: str) -> bool:
        """Whether discovery need not list the children of v1 conversation ``sid``: none of
        them would be admitted, as they are another shard's (a child is sharded by its
        conversation), or were deleted with it. The one hook through which the admission spares
        discovery work: n shards list each conversation's children once between them, not n
        times."""
        if self._shard is not None and not self._shard.owns_key(sid):
            return True
        return self.conversation_deleted(sid)

    def release(self) -> int:
        """Drop the set of admitted targets (it can be the size of the job); returns how many
        targets were admitted."""
        admitted = len(self._seen)
        self._seen = SeenSet()
        self._conversations.clear()
        return admitted


async def in_phases(
    sources: Sequence[Source],
    discover: Callable[[int, Source], Coroutine[Any, Any, None]],
    settled: Callable[[], Awaitable[None]],
    *,
    together: bool = True,
) -> None:
    """Discover ``sources`` phase by phase (v1 conversations first): each later phase starts
    once ``settled`` returns, so that what a deleted conversation covers is known. Within a
    phase the sources are listed ``together``, or one after another in the spec's order."""
    for number in sorted({phase(s) for s in sources}):
        if number > 0:
            await settled()
        if not together:
            for index, source in enumerate(sources):
                if phase(source) == number:
                    await discover(index, source)
            continue
        async with anyio.create_task_group() as tg:
            for index, source in enumerate(sources):
                if phase(source) == number:
                    tg.start_soon(discover, index, source)
