"""Compact tables keyed by target-key digests: a set and a map with nothing per entry that is a
Python object.

A million targets is an ordinary purge. Keyed by 90-bit digests (``checkpoint.key_hash``), a
Python ``set`` costs about 70 bytes per target (a 36-byte int and two 16-byte table slots) and
a ``dict`` about 90 — 70 and 90 MB at a million, most of a run's 150 MB budget. Here a digest's
low 64 bits and high 26 live in two flat arrays (open addressing, linear probing, at most 70 %
full): 12 bytes a slot for :class:`SeenSet`, the targets a run has admitted, and 20 with the
value beside it for :class:`DigestMap`, the final states a big run's report is made from. Both
are slower than the built-ins (about 2 µs an insert in pure Python), which is why a resume,
racing to its first request, keeps its dict.
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterator

_LOW64 = (1 << 64) - 1
_MAX_LOAD = 0.7


class _Table:
    """Slots of (low 64 bits, high bits), all-zero meaning empty, and optionally a value each."""

    def __init__(self, expected: int, *, with_values: bool) -> None:
        size = 8
        while size * _MAX_LOAD < expected:
            size <<= 1
        self._with_values = with_values
        self._allocate(size)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def _allocate(self, size: int) -> None:
        self._low = array("Q", bytes(8 * size))
        self._high = array("I", bytes(4 * size))
        self._values = array("Q", bytes(8 * size if self._with_values else 0))
        self._mask = size - 1
        self._limit = int(_MAX_LOAD * size)

    def _find(self, digest: int) -> tuple[int, int, int, bool]:
        """(slot, low, high, found): the digest's slot, or the empty one it would take."""
        low, high = digest & _LOW64, digest >> 64
        if not (low or high):
            low = 1  # all-zero marks an empty slot; 0 and 1 share one (a 2**-90 chance)
        lows, highs, mask = self._low, self._high, self._mask
        slot = low & mask
        while lows[slot] or highs[slot]:
            if lows[slot] == low and highs[slot] == high:
                return slot, low, high, True
            slot = (slot + 1) & mask
        return slot, low, high, False

    def _grow(self) -> None:
        old_low, old_high, old_values = self._low, self._high, self._values
        self._allocate(2 * (self._mask + 1))
        lows, highs, values, mask = self._low, self._high, self._values, self._mask
        carry = self._with_values
        for old_slot, (low, high) in enumerate(zip(old_low, old_high, strict=True)):
            if low or high:
                slot = low & mask
                while lows[slot] or highs[slot]:
                    slot = (slot + 1) & mask
                lows[slot], highs[slot] = low, high
                if carry:
                    values[slot] = old_values[old_slot]


class SeenSet(_Table):
    """The digests a run has admitted."""

    def __init__(self, expected: int = 0) -> None:
        super().__init__(expected, with_values=False)

    def add(self, digest: int) -> bool:
        """Add ``digest``; False if it was already there."""
        slot, low, high, found = self._find(digest)
        if found:
            return False
        self._low[slot], self._high[slot] = low, high
        self._count += 1
        if self._count > self._limit:
            self._grow()
        return True


class DigestMap(_Table):
    """Digests to non-negative ints below 2**64; only the calls a replay makes: ``get``, item
    assignment, ``values`` and ``len``."""

    def __init__(self, expected: int = 0) -> None:
        super().__init__(expected, with_values=True)

    def get(self, digest: int) -> int | None:
        """The value of ``digest``, or None."""
        slot, _, _, found = self._find(digest)
        return self._values[slot] if found else None

    def __setitem__(self, digest: int, value: int) -> None:
        slot, low, high, found = self._find(digest)
        self._values[slot] = value
        if not found:
            self._low[slot], self._high[slot] = low, high
            self._count += 1
            if self._count > self._limit:
                self._grow()

    def values(self) -> Iterator[int]:
        """Every value (in no particular order)."""
        for low, high, value in zip(self._low, self._high, self._values, strict=True):
            if low or high:
                yield value

    def items(self) -> Iterator[tuple[int, int]]:
        """Every (digest, value) (in no particular order)."""
        for low, high, value in zip(self._low, self._high, self._values, strict=True):
            if low or high:
                yield (high << 64) | low, value


_LOW26 = (1 << 26) - 1
# Each byte's low six bits: a packed state's kind and state indexes (see records.pack).
_LOW6 = bytes(i & 63 for i in range(256))


class SortedDigests:
    """Digests to values, as a snapshot of a replay holds them (:mod:`runner.log.snapshot`):
    sorted flat arrays, 16 bytes a target (the top 64 bits of a digest, its low 26 bits, a
    32-bit value; 20 when a value needs 64), and a dict beside them for digests the snapshot
    does not have (the log's tail, and what the run adds). Ten million targets take 160 MB,
    where a :class:`DigestMap` takes 335 and a dict over a gigabyte.

    Only the calls a replay makes: ``get``, item assignment, ``values``, ``len``, and
    :meth:`low_counts` (which a replay's ``counts`` asks for, without a Python loop over the
    arrays).
    """

    def __init__(
        self, tops: array[int], bottoms: array[int], values: array[int], counts: dict[int, int]
    ) -> None:
        """``counts``: :func:`low6_counts` of ``values`` (the loader has it, checking them)."""
        self._tops, self._bottoms, self._values = tops, bottoms, values
        self._extra: dict[int, int] = {}
        self._base_counts = dict(counts)

    def __len__(self) -> int:
        return len(self._tops) + len(self._extra)

    def _slot(self, digest: int) -> int:
        """The index of ``digest`` in the arrays, or -1."""
        top, bottom = digest >> 26, digest & _LOW26
        tops = self._tops
        index = bisect_left(tops, top)
        end = len(tops)
        while index < end and tops[index] == top:
            if self._bottoms[index] == bottom:
                return index
            index += 1
        return -1

    def get(self, digest: int) -> int | None:
        """The value of ``digest``, or None."""
        value = self._extra.get(digest)
        if value is not None:
            return value
        index = self._slot(digest)
        return None if index < 0 else self._values[index]

    def __setitem__(self, digest: int, value: int) -> None:
        index = self._slot(digest)
        if index < 0:
            self._extra[digest] = value
            return
        values = self._values
        old, new = values[index] & 63, value & 63
        self._base_counts[old] -= 1
        self._base_counts[new] = self._base_counts.get(new, 0) + 1
        try:
            values[index] = value
        except OverflowError:  # a ts past 2**26 s: the values widen to 64 bits
            self._values = array("Q", values)
            self._values[index] = value

    def values(self) -> Iterator[int]:
        """Every value (the arrays' in digest order, then the others)."""
        yield from self._values
        yield from self._extra.values()

    def items(self) -> Iterator[tuple[int, int]]:
        """Every (digest, value): the arrays' in digest order, then the others."""
        for top, bottom, value in zip(self._tops, self._bottoms, self._values, strict=True):
            yield (top << 26) | bottom, value
        yield from self._extra.items()

    def extra_items(self) -> Iterator[tuple[int, int]]:
        """Every (digest, value) beside the arrays."""
        yield from self._extra.items()

    @property
    def extra(self) -> int:
        """How many digests are beside the arrays (not in the snapshot it was loaded from)."""
        return len(self._extra)

    def tables(self) -> tuple[array[int], array[int], array[int]]:
        """The sorted arrays (tops, bottoms, values), the digests beside them left out."""
        return self._tops, self._bottoms, self._values

    def low_counts(self) -> Counter[int]:
        """How many values have each low six bits (kind and state index of a packed state)."""
        counts = Counter({k: n for k, n in self._base_counts.items() if n})
        counts.update(value & 63 for value in self._extra.values())
        return counts


def low6_counts(values: array[int], codes: Iterator[int] | range | list[int]) -> dict[int, int]:
    """How many of ``values`` have each of ``codes`` as their low six bits, in C loops: their
    lowest bytes (every ``itemsize``-th byte, little-endian), masked, counted code by code. A
    value whose code is not among ``codes`` is not counted (the caller compares the total)."""
    if sys.byteorder == "little":
        low = bytes(memoryview(values).cast("B")[:: values.itemsize])
    else:
        low = bytes(v & 0xFF for v in values)
    low = low.translate(_LOW6)
    return {code: n for code in codes if (n := low.count(code))}


def sort_in_place(table: DigestMap) -> tuple[array[int], array[int], array[int]]:
    """``table``'s digests and values as a snapshot's three sorted arrays (tops, bottoms,
    values: see :class:`SortedDigests`), built in ``table``'s own arrays, which it takes (the
    map is left empty). The end of a big run writes its snapshot from the compact replay of
    its report: sorting a copy of the states (:func:`runner.log.snapshot.sorted_tables`) put
    16 more bytes a target on top of the map's 40 at the run's memory peak; this needs only the
    buckets' offsets (a few bytes a target) and, when every value fits in 32 bits, their narrow
    copy (4).

    The occupied slots are packed to the front (each digest split into its top 64 bits and low
    26 as it moves), the arrays cut to the count, then an in-place counting sort on the tops'
    leading bits (uniform, being hashes) puts each digest in its bucket of a few — every
    element moved once, along the permutation's cycles — and each bucket is sorted on its own.
    """
    lows, highs, values = table._low, table._high, table._values
    count, wide = 0, False
    for slot in range(len(lows)):
        low, high = lows[slot], highs[slot]
        if low or high:
            digest = (high << 64) | low
            value = values[slot]
            # count <= slot: this overwrites only slots already read.
            lows[count], highs[count], values[count] = digest >> 26, digest & _LOW26, value
            wide = wide or value >> 32 != 0
            count += 1
    del lows[count:], highs[count:], values[count:]
    table._allocate(8)
    table._count = 0
    if not wide:
        narrow = array("I", values)
        del values[:]
        values = narrow
    _bucket_sort(lows, highs, values)
    return lows, highs, values


def _bucket_sort(tops: array[int], bottoms: array[int], values: array[int]) -> None:
    """Sort the three parallel arrays by (top, bottom), in place (American flag sort)."""
    count = len(tops)
    bits = max(count.bit_length() - 2, 0)  # a bucket per 2 to 4 digests
    shift = 64 - bits
    starts = array("Q", bytes(8 * ((1 << bits) + 1)))
    for top in tops:
        starts[(top >> shift) + 1] += 1
    for bucket in range(1, len(starts)):
        starts[bucket] += starts[bucket - 1]
    fill = array("Q", starts)
    for bucket in range(len(starts) - 1):
        end = starts[bucket + 1]
        at = fill[bucket]
        while at < end:
            # The element at ``at`` goes to its bucket's next free place, whose element goes to
            # its own, and so on until one belongs here, at ``at``.
            top, bottom, value = tops[at], bottoms[at], values[at]
            home = top >> shift
            while home != bucket:
                to = fill[home]
                fill[home] = to + 1
                top, tops[to] = tops[to], top
                bottom, bottoms[to] = bottoms[to], bottom
                value, values[to] = values[to], value
                home = top >> shift
            tops[at], bottoms[at], values[at] = top, bottom, value
            at += 1
        fill[bucket] = end
        low = starts[bucket]
        if end - low > 1:
            rows = sorted(zip(tops[low:end], bottoms[low:end], values[low:end], strict=True))
            for index, (top, bottom, value) in enumerate(rows, start=low):
                tops[index], bottoms[index], values[index] = top, bottom, value
