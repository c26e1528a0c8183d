"""runner.app.scope: what a spec's sources select, checked offline against recorded targets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from runner.app.scope import Scope
from runner.kinds.base import Target
from runner.kinds.configurations import ListConfigurations
from runner.kinds.conversations import ListConversations
from runner.kinds.registry import by_name
from runner.kinds.v1 import ConversationQuery, ListChildren
from runner.plan.selection import Explicit, Manifest, Source
from runner.plan.shard import Shard, shard_of


def sid(prefix: str, n: int) -> str:
    """A valid SID numbered ``n``."""
    return f"{prefix}{n:032x}"


MESSAGE = by_name("message")
CH1, CH2 = sid("CH", 1), sid("CH", 2)
M1 = Target(MESSAGE, sid("IM", 1), CH1)
M2_ELSEWHERE = Target(MESSAGE, sid("IM", 2), CH2)
CONFIG = Target(by_name("configuration"), "conv_configuration_0" + "a" * 25)


def reason(sources: list[Source], target: Target, shard: Shard | None = None) -> str | None:
    """The single reason ``target`` is outside ``sources`` (None: inside)."""
    found = Scope(sources, shard).outside([target])
    assert len(found) <= 1
    return found[0].reason if found else None


@pytest.mark.parametrize(
    ("sources", "target", "expected"),
    [
        pytest.param([ListChildren(MESSAGE, None)], M1, None, id="all-messages"),
        pytest.param(
            [ListChildren(MESSAGE, None)], CONFIG, "selects no configurations",
            id="other-kind",
        ),
        pytest.param(
            [ListChildren(MESSAGE, (CH1,))], M2_ELSEWHERE, "is not one the job lists",
            id="conversation-not-listed",
        ),
        pytest.param([ListChildren(MESSAGE, (CH1,))], M1, None, id="listed-conversation"),
        pytest.param(
            [ListChildren(MESSAGE, ConversationQuery("v1", ("closed",)))], M1, None,
            id="a-conversation-query-admits-the-kind",
        ),
        pytest.param([Explicit(MESSAGE, (M1,))], M1, None, id="listed-id"),
        pytest.param(
            [Explicit(MESSAGE, (M1,))],
            Target(MESSAGE, M1.id, CH2),
            "not among the ids",
            id="listed-id-other-conversation",
        ),
        pytest.param([ListConfigurations()], CONFIG, None, id="configurations-where"),
        pytest.param(
            [ListConversations(ConversationQuery("v2"))],
            Target(by_name("conversation_v1"), CH1),
            "selects no conversations (v1)",
            id="v1-in-a-v2-job",
        ),
        pytest.param(
            [ListChildren(MESSAGE, None)],
            Target(MESSAGE, M1.id),
            "no conversation is named",
            id="child-without-conversation",
        ),
    ],
)
def test_reasons(sources: list[Source], target: Target, expected: str | None) -> None:
    """Each source admits exactly its kind, ids and conversations, and says why it does not."""
    got = reason(sources, target)
    assert (got is None) if expected is None else (got is not None and expected in got), got


def test_a_manifest_admits_only_its_rows_read_again() -> None:
    """A manifest's rows are streamed once for all the targets asked about: only rows pass."""
    reads = 0

    def rows() -> Iterator[Target]:
        nonlocal reads
        reads += 1
        yield from (M1, Target(MESSAGE, sid("IM", 3), CH1))

    scope = Scope([Manifest(MESSAGE, rows, 2)])
    outside = scope.outside([M1, M2_ELSEWHERE, CONFIG])
    assert {o.target for o in outside} == {M2_ELSEWHERE, CONFIG}
    assert reads == 1
    assert Scope([Manifest(MESSAGE, rows, 2)], read_manifests=False).outside(
        [M2_ELSEWHERE]
    ) == []


def test_a_shard_admits_only_its_own_targets() -> None:
    """Another shard's target is outside, whatever the sources say."""
    owner = shard_of(CH1, 2)
    sources: list[Source] = [ListChildren(MESSAGE, None)]
    assert reason(sources, M1, shard=Shard(owner, 2)) is None
    assert "not to " in (reason(sources, M1, shard=Shard(1 - owner, 2)) or "")
