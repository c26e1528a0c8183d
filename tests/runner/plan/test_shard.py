"""Sharding a job: parsing --shard/--shards, the stable partition, and each shard's budget."""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.errors import InputError
from runner.kinds.base import Product, Target
from runner.kinds.registry import by_name
from runner.plan.planner import build_plan, shard_plan
from runner.plan.shard import (
    INDEX_ENV,
    Shard,
    parse_shard,
    resolve_shard,
    shard_key,
    shard_of,
    share_rate,
    share_slots,
)
from runner.spec.jobspec import parse_spec
from runner.values import ProductLimit

HEX = "0123456789abcdef"


def sid(prefix: str, rng: random.Random) -> str:
    """A random SID-shaped id (two letters and 32 hex digits)."""
    return prefix + "".join(rng.choice(HEX) for _ in range(32))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("0/1", Shard(0, 1), id="single"),
        pytest.param("3/4", Shard(3, 4), id="last"),
        pytest.param(" 1 / 2 ", Shard(1, 2), id="spaces"),
    ],
)
def test_parse_good_shards(text: str, expected: Shard) -> None:
    """i/n with 0 <= i < n parses to that shard."""
    assert parse_shard(text) == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [
        pytest.param("4/4", ["index 4", "0 to 3", "--shard 3/4"], id="index-equals-count"),
        pytest.param("-1/2", ["index -1", "0-based", "0 to 1"], id="negative-index"),
        pytest.param("a/b", ["not of the form i/n", "--shard 0/4"], id="letters"),
        pytest.param("0/0", ["0 shards", "at least 1"], id="zero-count"),
        pytest.param("2", ["not of the form i/n"], id="no-slash"),
        pytest.param("1/-3", ["-3 shards", "at least 1"], id="negative-count"),
        pytest.param("", ["not of the form i/n"], id="empty"),
    ],
)
def test_bad_shards_name_the_flag_and_the_fix(text: str, words: list[str]) -> None:
    """Every bad --shard value is an input error that names the flag and what would be valid."""
    with pytest.raises(InputError) as info:
        parse_shard(text)
    message = str(info.value)
    assert message.startswith("--shard:")
    for word in words:
        assert word in message


def test_resolve_from_the_indexed_job_environment() -> None:
    """--shards N takes the index from JOB_COMPLETION_INDEX, as a Kubernetes Indexed Job sets it."""
    assert resolve_shard(None, 4, {INDEX_ENV: "2"}) == Shard(2, 4)
    assert resolve_shard("1/4", None, {INDEX_ENV: "3"}) == Shard(1, 4)  # explicit wins
    assert resolve_shard("1/4", 4, {}) == Shard(1, 4)
    assert resolve_shard(None, None, {INDEX_ENV: "2"}) is None  # the index alone does not shard
    assert resolve_shard(None, None, {}) is None


@pytest.mark.parametrize(
    ("shard", "shards", "env", "words"),
    [
        pytest.param(None, 4, {}, ["--shard i/4", INDEX_ENV], id="no-index"),
        pytest.param(None, 4, {INDEX_ENV: "4"}, ["outside 0..3", "completions"], id="index-high"),
        pytest.param(None, 4, {INDEX_ENV: "x"}, ["not a whole number"], id="index-garbled"),
        pytest.param(None, 0, {INDEX_ENV: "0"}, ["--shards: 0"], id="zero-shards"),
        pytest.param("1/4", 2, {}, ["disagree"], id="counts-disagree"),
    ],
)
def test_resolve_refuses_what_does_not_add_up(
    shard: str | None, shards: int | None, env: dict[str, str], words: list[str]
) -> None:
    """A count without an index, an index out of range, or two counts are input errors."""
    with pytest.raises(InputError) as info:
        resolve_shard(shard, shards, env)
    for word in words:
        assert word in str(info.value)


@given(key=st.text(min_size=1, max_size=60), count=st.integers(min_value=1, max_value=64))
def test_every_key_lands_in_exactly_one_shard(key: str, count: int) -> None:
    """For any n in 1..64, exactly one of the n shards owns a given key."""
    target = Target(by_name("conversation_v2"), key)
    owners = [i for i in range(count) if Shard(i, count).owns(target)]
    assert owners == [shard_of(key, count)]


@pytest.mark.parametrize("count", range(1, 9))
def test_ten_thousand_sids_split_evenly(count: int) -> None:
    """10,000 random SIDs give every shard within 20 % of its fair share."""
    rng = random.Random(count)
    sizes = Counter(shard_of(sid("CH", rng), count) for _ in range(10_000))
    fair = 10_000 / count
    assert set(sizes) == set(range(count))
    assert all(0.8 * fair <= n <= 1.2 * fair for n in sizes.values()), sizes


@given(
    conversation=st.text(alphabet=HEX, min_size=32, max_size=32).map(lambda h: "CH" + h),
    child=st.text(alphabet=HEX, min_size=32, max_size=32),
    count=st.integers(min_value=1, max_value=64),
)
def test_children_follow_their_conversation(conversation: str, child: str, count: int) -> None:
    """A v1 conversation, its messages and its participants always share one shard."""
    family = [
        Target(by_name("conversation_v1"), conversation),
        Target(by_name("message"), "IM" + child, conversation),
        Target(by_name("participant"), "MB" + child, conversation),
    ]
    assert {shard_key(t) for t in family} == {conversation}
    assert len({shard_of(shard_key(t), count) for t in family}) == 1


def test_the_partition_is_the_same_in_every_process() -> None:
    """A fresh interpreter (another hash seed) puts the same ids on the same shards; Python's
    salted hash() would not."""
    rng = random.Random(0)
    ids = [sid("CH", rng) for _ in range(50)]
    here = [shard_of(i, 7) for i in ids]
    code = f"from runner.plan.shard import shard_of; print([shard_of(i, 7) for i in {ids!r}])"
    there = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    ).stdout
    assert there.strip() == repr(here)


@pytest.mark.parametrize(
    ("key", "owners"),
    [
        pytest.param("CH00000000000000000000000000000000", [0, 1, 2, 6, 495017], id="v1-zeros"),
        pytest.param("CHffffffffffffffffffffffffffffffff", [0, 2, 2, 6, 343133], id="v1-fs"),
        pytest.param("conv_conversation_01", [1, 2, 3, 3, 272635], id="v2"),
        pytest.param("mem_store_01", [0, 0, 0, 4, 449120], id="memory"),
    ],
)
def test_known_assignments_never_change(key: str, owners: list[int]) -> None:
    """Pinned owners for n = 2, 3, 4, 8 and a large prime: a different hash would move targets
    between shards, and a resumed shard would no longer see the targets it had started."""
    assert [shard_of(key, n) for n in (2, 3, 4, 8, 1_000_003)] == owners


def test_share_of_a_budget() -> None:
    """Each shard gets 1/n of a rate, and 1/n of an in-flight cap rounded down but never 0."""
    assert share_rate(30.0, 4) == 7.5
    assert share_slots(64, 4) == 16
    assert share_slots(10, 4) == 2  # 4 x 2 <= 10: the shards together stay under the cap
    assert share_slots(3, 8) == 1


def test_shard_plan_divides_shared_budgets_but_not_the_conversation_rate() -> None:
    """Account and Service budgets are split; a conversation's 30/s stays whole (one owner)."""
    spec = parse_spec(
        "version: 1\nname: j\ntargets:\n  - {kind: conversations, where: {state: closed}}\n"
        "limits:\n  concurrency: 64\n  per_conversation_rate: 30\n  per_service_rate: 30\n"
        "  conversations: {rate: 100, burst: 10, concurrency: 20}\n",
        base_dir=Path("."),
    )
    plan = build_plan(spec, datetime(2026, 1, 1, tzinfo=UTC))

    part = shard_plan(plan, Shard(1, 4))

    assert part.concurrency == 16
    assert part.per_service_rate == 7.5
    assert part.per_conversation_rate == 30
    assert part.products[Product.CONVERSATIONS] == ProductLimit(rate=25.0, burst=2, concurrency=5)
    assert part.products[Product.MEMORY] == plan.products[Product.MEMORY]  # unset stays unset
    assert part.fanout == max(8, part.concurrency)
    assert shard_plan(plan, None) is plan
    assert shard_plan(plan, Shard(0, 1)) is plan
