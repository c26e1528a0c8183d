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

from array import array
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
