"""The set of targets a run has admitted, at 12 bytes a slot instead of about 70 per entry.

A run must recognise a target it has already taken (two sources selecting it, a list page
repeated while items are deleted under it), and a million targets is an ordinary purge. A
Python ``set`` of the 90-bit key digests costs about 70 bytes per target (a 36-byte int and
two 16-byte table slots) — 70 MB at a million, most of the issue's 150 MB budget. Here the
digest's low 64 bits and high 26 live in two flat arrays (open addressing, linear probing,
at most 70 % full), and nothing per target is a Python object.
"""

from __future__ import annotations

from array import array

_LOW64 = (1 << 64) - 1
_MAX_LOAD = 0.7


class SeenSet:
    """Digests (non-negative ints below 2**96) seen so far."""

    def __init__(self, capacity: int = 1 << 12) -> None:
        size = 1
        while size < capacity:
            size <<= 1
        self._low = array("Q", bytes(8 * size))
        self._high = array("I", bytes(4 * size))
        self._mask = size - 1
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, digest: int) -> bool:
        """Add ``digest``; False if it was already there."""
        low, high = digest & _LOW64, digest >> 64
        if not (low or high):
            low = 1  # all-zero marks an empty slot; 0 and 1 share one (a 2**-90 chance)
        lows, highs, mask = self._low, self._high, self._mask
        slot = low & mask
        while lows[slot] or highs[slot]:
            if lows[slot] == low and highs[slot] == high:
                return False
            slot = (slot + 1) & mask
        lows[slot], highs[slot] = low, high
        self._count += 1
        if self._count > _MAX_LOAD * (mask + 1):
            self._grow()
        return True

    def _grow(self) -> None:
        old = zip(self._low, self._high, strict=True)
        size = 2 * (self._mask + 1)
        self._low = array("Q", bytes(8 * size))
        self._high = array("I", bytes(4 * size))
        self._mask = size - 1
        lows, highs, mask = self._low, self._high, self._mask
        for low, high in old:
            if low or high:
                slot = low & mask
                while lows[slot] or highs[slot]:
                    slot = (slot + 1) & mask
                lows[slot], highs[slot] = low, high
