"""The compact set of admitted targets and map of final states behave as a set and a dict."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from runner.log.digests import DigestMap, SeenSet, sort_in_place
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


def sorted_rows(reference: dict[int, int]) -> list[tuple[int, int, int]]:
    """What a snapshot's arrays hold: (top 64 bits, low 26, value), in digest order."""
    return sorted((d >> 26, d & ((1 << 26) - 1), v) for d, v in reference.items())


# Digests sharing their top bits, told apart only by their low 26, sort within a bucket.
SAME_TOP = st.sampled_from([0, 1, 5 << 26, (5 << 26) | 3, (5 << 26) | 1 << 25])
VALUES = st.one_of(st.integers(0, (1 << 32) - 1), st.integers(0, (1 << 64) - 1))


@settings(max_examples=200)
@given(st.lists(st.tuples(st.one_of(DIGESTS, SAME_TOP), VALUES)), st.integers(0, 50))
def test_sort_in_place_gives_the_snapshot_arrays(
    pairs: list[tuple[int, int]], expected: int
) -> None:
    """The map's own arrays, sorted as a snapshot writes them: every digest once, in order,
    with its value; 32-bit values when every value fits; the map left empty."""
    mapping, reference = DigestMap(expected), {}
    for digest, value in pairs:
        mapping[digest] = value
        reference[1 if digest == 0 else digest] = value
    tops, bottoms, values = sort_in_place(mapping)
    assert list(zip(tops, bottoms, values, strict=True)) == sorted_rows(reference)
    narrow = all(v < 1 << 32 for v in reference.values())
    assert values.typecode == ("I" if narrow else "Q")
    assert len(mapping) == 0 and list(mapping.items()) == []


def test_sort_in_place_of_many_real_digests() -> None:
    """A hundred thousand key digests, in buckets of a few (the permutation's long cycles)."""
    mapping = DigestMap(100_000)
    reference = {key_hash(f"im:IM{n:032x}"): n % 300 for n in range(100_000)}
    for digest, value in reference.items():
        mapping[digest] = value
    tops, bottoms, values = sort_in_place(mapping)
    assert list(zip(tops, bottoms, values, strict=True)) == sorted_rows(reference)
