"""The compact set of admitted targets and map of final states behave as a set and a dict."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from runner.log.digests import DigestMap, SeenSet
from runner.log.records import key_hash

DIGESTS = st.integers(min_value=0, max_value=(1 << 90) - 1)


@settings(max_examples=200)
@given(st.lists(st.one_of(DIGESTS, st.sampled_from([0, 1, 1 << 64, (1 << 64) + 5, 7, 7 << 64]))))
def test_add_answers_as_a_set_would(digests: list[int]) -> None:
    """add() is True exactly for a digest not added before (from 8 slots: many resizes)."""
    seen, reference = SeenSet(), set()
    for digest in digests:
        # 0 and 1 share the empty-slot stand-in: the one deliberate exception.
        key = 1 if digest == 0 else digest
        assert seen.add(digest) is (key not in reference)
        reference.add(key)
    assert len(seen) == len(reference)


def test_digests_equal_in_their_low_64_bits_are_told_apart() -> None:
    """Two digests that collide in the probe index and the low word are still two targets."""
    seen = SeenSet()
    assert seen.add(5) and seen.add(5 | (1 << 64)) and seen.add(5 | (2 << 64))
    assert not seen.add(5 | (1 << 64))
    assert len(seen) == 3


def test_a_hundred_thousand_target_keys_all_recognised_after_growing() -> None:
    """Real key digests, grown from the default size, are each admitted once."""
    seen = SeenSet()
    digests = [key_hash(f"im:IM{n:032x}") for n in range(100_000)]
    assert all(seen.add(d) for d in digests)
    assert not any(seen.add(d) for d in digests)
    assert len(seen) == 100_000


@settings(max_examples=200)
@given(st.lists(st.tuples(
    st.one_of(DIGESTS, st.sampled_from([0, 1, 1 << 64, 9, 9 | (3 << 64)])),
    st.integers(min_value=0, max_value=(1 << 64) - 1),
)), st.integers(min_value=0, max_value=50))
def test_digest_map_answers_as_a_dict_would(pairs: list[tuple[int, int]], expected: int) -> None:
    """get, assignment, values and len agree with a dict through resizes (0 stands for 1)."""
    mapping, reference = DigestMap(expected), {}
    for digest, value in pairs:
        key = 1 if digest == 0 else digest
        mapping[digest] = value
        reference[key] = value
        assert mapping.get(digest) == value
    assert len(mapping) == len(reference)
    assert sorted(mapping.values()) == sorted(reference.values())
    assert all(mapping.get(k) == v for k, v in reference.items())
    assert mapping.get(12345 << 70) is None or (12345 << 70) in reference
