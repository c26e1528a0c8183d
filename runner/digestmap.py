"""A map from target key digests to small ints, at 20 bytes a slot instead of about 90 per entry.

The completion report at the end of a run replays the log into every target's final state. For
a million targets a ``dict`` of 90-bit int keys costs about 90 MB on top of the run's own heap
— the largest part of a 1M-target run's peak memory. Here the digest's low 64 bits, its high 26
and the value live in three flat arrays (open addressing, linear probing, at most 70 % full,
sized up front when the caller knows how many targets to expect). Only the calls the replay
makes are offered: ``get``, item assignment, ``values`` and ``len``.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator

_LOW64 = (1 << 64) - 1
_MAX_LOAD = 0.7


class DigestMap:
    """Digests (non-negative ints below 2**96) to non-negative ints below 2**64."""

    def __init__(self, expected: int = 0) -> None:
        size = 1 << 10
        while size * _MAX_LOAD < expected:
            size <<= 1
        self._allocate(size)
        self._count = 0

    def _allocate(self, size: int) -> None:
        self._low = array("Q", bytes(8 * size))
        self._high = array("I", bytes(4 * size))
        self._values = array("Q", bytes(8 * size))
        self._mask = size - 1

    def __len__(self) -> int:
        return self._count

    def _slot(self, digest: int) -> tuple[int, int, int]:
        low, high = digest & _LOW64, digest >> 64
        if not (low or high):
            low = 1  # all-zero marks an empty slot; 0 and 1 share one (a 2**-90 chance)
        lows, highs, mask = self._low, self._high, self._mask
        slot = low & mask
        while lows[slot] or highs[slot]:
            if lows[slot] == low and highs[slot] == high:
                break
            slot = (slot + 1) & mask
        return slot, low, high

    def get(self, digest: int) -> int | None:
        """The value of ``digest``, or None."""
        slot, _, _ = self._slot(digest)
        if not (self._low[slot] or self._high[slot]):
            return None
        return self._values[slot]

    def __setitem__(self, digest: int, value: int) -> None:
        slot, low, high = self._slot(digest)
        if not (self._low[slot] or self._high[slot]):
            self._low[slot], self._high[slot] = low, high
            self._count += 1
        self._values[slot] = value
        if self._count > _MAX_LOAD * (self._mask + 1):
            self._grow()

    def values(self) -> Iterator[int]:
        """Every value (in no particular order)."""
        for low, high, value in zip(self._low, self._high, self._values, strict=True):
            if low or high:
                yield value

    def _grow(self) -> None:
        old = zip(self._low, self._high, self._values, strict=True)
        self._allocate(2 * (self._mask + 1))
        lows, highs, values, mask = self._low, self._high, self._values, self._mask
        for low, high, value in old:
            if low or high:
                slot = low & mask
                while lows[slot] or highs[slot]:
                    slot = (slot + 1) & mask
                lows[slot], highs[slot], values[slot] = low, high, value
