"""The admission that `run`, `resume`, `apply` and `plan` share, over real objects: targets,
shards, a real checkpoint log replayed as a resume reads it, and the phase loop."""

from __future__ import annotations

from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from runner.engine.admission import Admission, Verdict, in_phases
from runner.kinds.base import Target
from runner.kinds.conversations import ListConversations
from runner.kinds.memory_stores import ListStores
from runner.kinds.registry import by_name
from runner.kinds.v1 import ConversationQuery, ListChildren
from runner.log.records import State, target_record
from runner.log.replay import read_checkpoint
from runner.plan.selection import Explicit, Source
from runner.plan.shard import Shard
from tests.runner.log.test_checkpoint import sid, ttid, write_through_writer

MESSAGE = by_name("message")
PARTICIPANT = by_name("participant")
CONVERSATION_V1 = by_name("conversation_v1")
CONVERSATION_V2 = by_name("conversation_v2")

CH = Target(CONVERSATION_V1, sid("CH", 1))
CH_OTHER = Target(CONVERSATION_V1, sid("CH", 2))
IN_CH = [Target(MESSAGE, sid("IM", n), CH.id) for n in range(3)]
IN_OTHER = Target(PARTICIPANT, sid("MB", 9), CH_OTHER.id)


def test_a_target_found_twice_is_admitted_once() -> None:
    admission = Admission()

    first = [admission.admit(t) for t in IN_CH]
    again = [admission.admit(Target(t.kind, t.id, t.parent)) for t in IN_CH]

    assert first == [Verdict.ADMITTED] * 3
    assert again == [Verdict.PASSED] * 3
    assert admission.admitted == {MESSAGE: 3}


def test_each_shard_admits_its_own_part_and_children_follow_their_conversation() -> None:
    targets = [Target(CONVERSATION_V1, sid("CH", n)) for n in range(40)]
    children = [Target(MESSAGE, sid("IM", n), t.id) for n, t in enumerate(targets)]
    shards = [Admission(shard=Shard(i, 3)) for i in range(3)]

    owners = {
        t.id: [i for i, a in enumerate(shards) if a.admit(t) is Verdict.ADMITTED] for t in targets
    }
    child_owners = {
        c.parent: [i for i, a in enumerate(shards) if a.admit(c) is Verdict.ADMITTED]
        for c in children
    }

    assert all(len(found) == 1 for found in owners.values())
    assert child_owners == owners
    assert sum(sum(a.admitted.values()) for a in shards) == 80


def test_a_plan_takes_what_it_selects_as_deleted() -> None:
    admission = Admission(planning=True)

    assert admission.admit(CH) is Verdict.ADMITTED
    assert admission.conversation_deleted(CH.id)
    assert [admission.admit(t) for t in IN_CH] == [Verdict.COVERED] * 3
    assert admission.admit(IN_OTHER) is Verdict.ADMITTED
    assert admission.covered == {MESSAGE: 3}
    assert admission.admitted == {CONVERSATION_V1: 1, PARTICIPANT: 1}


@pytest.mark.parametrize(
    ("deleted", "verdict"), [(True, Verdict.COVERED), (False, Verdict.ADMITTED)]
)
def test_a_run_covers_children_only_once_their_conversation_is_deleted(
    deleted: bool, verdict: Verdict
) -> None:
    admission = Admission()
    assert admission.admit(CH) is Verdict.ADMITTED
    assert not admission.conversation_deleted(CH.id)  # held: its outcome is not known yet

    admission.settle(CH.id, deleted)

    assert admission.conversation_deleted(CH.id) is deleted
    assert admission.admit(IN_CH[0]) is verdict


async def test_settled_waits_for_every_held_conversation() -> None:
    admission = Admission()
    admission.admit(CH)
    admission.admit(CH_OTHER)
    done = anyio.Event()

    async def wait() -> None:
        await admission.settled()
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        await anyio.wait_all_tasks_blocked()
        admission.settle(CH.id, True)
        await anyio.wait_all_tasks_blocked()
        assert not done.is_set()
        admission.settle(CH_OTHER.id, False)
        await done.wait()


def test_the_brake_stops_past_max_deletions_and_says_so() -> None:
    admission = Admission(max_deletions=2, planning=True)

    verdicts = [admission.admit(t) for t in [*IN_CH, CH]]

    assert verdicts == [Verdict.ADMITTED, Verdict.ADMITTED, Verdict.BRAKED, Verdict.BRAKED]
    assert admission.admitted == {MESSAGE: 2}
    assert "safety.max_deletions = 2" in str(admission.brake())
    assert "before this resume" not in str(admission.brake())


async def test_a_resume_skips_what_is_final_and_counts_what_was_spent(tmp_path: Path) -> None:
    """What the log has final is not driven again; what it left open is taken in first; its
    deleted conversations still cover; and the brake counts the earlier process's admissions."""
    log = tmp_path / "run.jsonl"
    await write_through_writer(
        log,
        [
            target_record(CH, State.REQUESTED),
            target_record(CH, State.DELETED),
            target_record(IN_OTHER, State.REQUESTED),
            target_record(IN_OTHER, State.DELETED),
            target_record(CH_OTHER, State.REQUESTED),
        ],
    )
    prior = read_checkpoint(log)
    admission = Admission(prior=prior, max_deletions=4)
    for record in prior.open.values():
        admission.readmit(record.target)

    assert admission.admit(CH_OTHER) is Verdict.PASSED  # taken in from the log already
    assert admission.admit(IN_OTHER) is Verdict.FINAL
    assert admission.admit(IN_CH[0]) is Verdict.COVERED  # CH was deleted by the first process
    fresh = Target(CONVERSATION_V2, ttid("conv_conversation_", 1))
    assert admission.admit(fresh) is Verdict.ADMITTED  # 3 spent before, this is the 4th
    other = Target(CONVERSATION_V2, ttid("conv_conversation_", 2))
    assert admission.admit(other) is Verdict.BRAKED
    assert "(3 of them before this resume)" in str(admission.brake())
    assert admission.admitted == {CONVERSATION_V1: 1, CONVERSATION_V2: 1}


async def test_phases_go_in_order_and_wait_for_the_conversations_to_settle() -> None:
    sources: list[Source] = [
        ListStores(),
        ListChildren(MESSAGE, None),
        ListConversations(ConversationQuery("v1")),
        Explicit(CONVERSATION_V1, (CH,)),
    ]
    admission = Admission()
    order: list[int] = []

    async def discover(index: int, source: Source) -> None:
        order.append(index)
        if isinstance(source, Explicit):
            admission.admit(CH)  # held open until settled

    async with anyio.create_task_group() as tg:
        tg.start_soon(in_phases, sources, discover, admission.settled)
        await anyio.wait_all_tasks_blocked()
        assert sorted(order) == [2, 3]  # v1 conversations first, then waiting for CH
        admission.settle(CH.id, True)
    assert order[2:] == [1, 0]


async def test_a_plan_lists_the_sources_of_a_phase_one_after_another() -> None:
    sources: list[Source] = [Explicit(MESSAGE, ()), Explicit(PARTICIPANT, ())]
    events: list[str] = []

    async def discover(index: int, _source: Source) -> None:
        events.append(f"start {index}")
        await anyio.lowlevel.checkpoint()
        events.append(f"end {index}")

    async def nothing() -> None:
        pass

    await in_phases(sources, discover, nothing, together=False)

    assert events == ["start 0", "end 0", "start 1", "end 1"]
