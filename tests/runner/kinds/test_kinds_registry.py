"""The kind registry: every kind module found, their facts consistent, the log's numbers kept."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.kinds.base import ResourceKind, Target
from runner.kinds.registry import (
    KINDS,
    MAX_KINDS,
    KindRegistryError,
    by_code,
    by_name,
    by_spec,
    check_kinds,
    spec_words,
)

CH = "CH" + "0123456789abcdef" * 2
IS = "IS" + "fedcba9876543210" * 2

# The checkpoint format depends on these: a log written today is read by every later bulkops.
LOG_FACTS = {
    "message": ("m", 0),
    "participant": ("p", 1),
    "conversation_v1": ("c1", 2),
    "conversation_v2": ("c2", 3),
    "configuration": ("cf", 4),
    "memory_store": ("ms", 5),
}


def test_log_codes_and_indexes_never_change() -> None:
    """Each kind that existed when logs were first written keeps its log code and 3-bit index."""
    for name, (code, index) in LOG_FACTS.items():
        kind = by_name(name)
        assert (kind.code, kind.log_index) == (code, index)
        assert by_code(code) is kind


def test_registry_invariants() -> None:
    """Names, codes, indexes and spec words are unique, indexes fit in 3 bits, order is by index."""
    assert len({k.name for k in KINDS}) == len(KINDS)
    assert len({k.code for k in KINDS}) == len(KINDS)
    assert len({(k.word, k.api) for k in KINDS}) == len(KINDS)
    assert [k.log_index for k in KINDS] == sorted({k.log_index for k in KINDS})
    assert all(0 <= k.log_index < MAX_KINDS for k in KINDS)
    assert all(k.pattern.key == k.name for k in KINDS)
    assert [k for k in KINDS if k.covers_children] == [by_name("conversation_v1")]


def test_spec_lookups() -> None:
    """A spec word (and api) names one kind; conversations default to v1."""
    assert by_spec("conversations") is by_name("conversation_v1")
    assert by_spec("conversations", "v2") is by_name("conversation_v2")
    assert by_spec("messages") is by_name("message")
    assert spec_words()[:5] == [
        "messages",
        "participants",
        "conversations",
        "configurations",
        "memory_stores",
    ]
    with pytest.raises(KeyError):
        by_spec("mesages")


def _target(kind: ResourceKind, value: str) -> Target:
    return Target(kind, value, CH if kind.has_parent else None)


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
@pytest.mark.parametrize("service", [None, IS])
def test_delete_paths_hold_the_id_as_one_segment(kind: ResourceKind, service: str | None) -> None:
    """Each kind's delete path ends with its ID as the last path segment."""
    sample = next(s for s in _samples() if kind.pattern.matches(s))
    path = kind.delete_path(_target(kind, sample), service)
    assert path.startswith("/") and path.rsplit("/", 1)[1] == sample
    assert "//" not in path
    if service is not None and kind.product.value == "conversations" and path.startswith("/v1/"):
        assert f"/Services/{service}/" in path


def _samples() -> list[str]:
    ttid = "01h9d8r0vte3hz8tykdj329t7r"
    hexes = "0123456789abcdef" * 2
    return [
        *(prefix + hexes for prefix in ("IM", "MB", "CH", "US")),
        *(p + ttid for p in ("conv_conversation_", "conv_configuration_", "mem_store_")),
    ]


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
@pytest.mark.parametrize(
    "value",
    ["../../v1/Accounts", "CH0/../x", "a?b", "a#b", "%2e%2e", " CH", "x\n", ""],
)
def test_every_kind_refuses_a_path_changing_id(kind: ResourceKind, value: str) -> None:
    """No kind's pattern admits a value that could change the delete path."""
    with pytest.raises(ValueError):
        kind.validate(value)


@given(st.text(max_size=60))
def test_an_id_any_kind_accepts_is_one_path_segment(value: str) -> None:
    """Whatever the text, an ID a kind accepts holds only letters, digits and underscores."""
    for kind in KINDS:
        if kind.pattern.matches(value):
            assert value.isascii() and all(c.isalnum() or c == "_" for c in value)


def test_a_ninth_kind_is_refused() -> None:
    """The log keeps a kind in 3 bits: a kind with log_index 8 is refused by name."""
    extra = dataclasses.replace(KINDS[0], name="ninth", word="ninths", code="n9", log_index=8)
    with pytest.raises(KindRegistryError, match=r"ninth has log_index 8.*at most 8 kinds"):
        check_kinds([*KINDS, extra])


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        pytest.param({"name": "other", "word": "others", "log_index": 7}, "log code", id="code"),
        pytest.param({"code": "zz", "word": "others", "log_index": 7}, "name", id="name"),
        pytest.param({"name": "other", "code": "zz", "word": "others"}, "log_index", id="index"),
        pytest.param({"name": "other", "code": "zz", "log_index": 7}, "spec word", id="word"),
    ],
)
def test_a_clashing_kind_is_refused(change: dict[str, object], fragment: str) -> None:
    """Two kinds with the same name, log code, index or spec word cannot both be registered."""
    clash = dataclasses.replace(KINDS[0], **change)  # type: ignore[arg-type]
    with pytest.raises(KindRegistryError, match=fragment):
        check_kinds([*KINDS, clash])


def test_kinds_of_one_word_share_their_spec_model() -> None:
    """Two kinds of one spec word (conversations v1/v2) must have one target model and apis."""
    v2 = by_name("conversation_v2")
    other_model = dataclasses.replace(v2, target_model=by_name("message").target_model)
    v1 = by_name("conversation_v1")
    with pytest.raises(KindRegistryError, match="different spec models"):
        check_kinds([k for k in KINDS if k is not v2] + [other_model])
    no_api = dataclasses.replace(v2, api=None)
    with pytest.raises(KindRegistryError, match="not all with an api"):
        check_kinds([k for k in KINDS if k is not v2] + [no_api])
    assert v1.target_model is v2.target_model


def test_users_are_a_kind_of_their_own() -> None:
    """Users: log code u and index 6, listed last, deleted in the job's Service at 30/s."""
    user = by_spec("users")
    assert (user.name, user.code, user.log_index) == ("user", "u", 6)
    assert user.phase == max(k.phase for k in KINDS)
    sid = "US" + "0123456789abcdef" * 2
    assert user.delete_path(Target(user, sid), None) == f"/v1/Users/{sid}"
    assert user.delete_path(Target(user, sid), IS) == f"/v1/Services/{IS}/Users/{sid}"
    assert str(user.limit_scope(Target(user, sid), IS)) == f"service {IS}"
    assert not user.is_async and not user.covers_children and not user.has_parent
