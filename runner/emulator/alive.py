"""Which items of a fixed-size sequence are still alive, with O(log n) delete and next-alive.

A Fenwick tree over 0/1 flags answers "first alive position >= i" and "last alive position <= i"
by prefix counts, so a keyset page skips any number of deleted messages in O(page * log n). The tree
is only built on the first delete: an untouched conversation costs nothing but its length.
"""

from __future__ import annotations

from array import array


class AliveSet:
    """Positions ``0..n-1``, all alive at first."""

    __slots__ = ("_flags", "_high_bit", "_tree", "alive", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.alive = size
        self._flags: bytearray | None = None
        self._tree: array[int] | None = None
        self._high_bit = 1 << max(size.bit_length() - 1, 0)

    def __contains__(self, position: int) -> bool:
        if not 0 <= position < self.size:
            return False
        return self._flags is None or bool(self._flags[position])

    def _build(self) -> tuple[bytearray, array[int]]:
        if self._flags is None or self._tree is None:
            self._flags = bytearray(b"\x01") * self.size
            # With every flag at 1, node i of a Fenwick tree covers exactly lowbit(i) positions.
            self._tree = array("i", (i & -i for i in range(self.size + 1)))
        return self._flags, self._tree

    def remove(self, position: int) -> bool:
        """Mark ``position`` deleted; ``False`` if it already was (or is out of range)."""
        if position not in self:
            return False
        flags, tree = self._build()
        flags[position] = 0
        self.alive -= 1
        i = position + 1
        while i <= self.size:
            tree[i] -= 1
            i += i & -i
        return True

    def _prefix(self, count: int) -> int:
        """Alive positions among the first ``count``."""
        if self._tree is None:
            return max(0, min(count, self.size))
        tree, total, i = self._tree, 0, min(count, self.size)
        while i > 0:
            total += tree[i]
            i -= i & -i
        return total

    def _kth(self, k: int) -> int:
        """Position of the k-th alive item (1-based k)."""
        if self._tree is None:
            return k - 1
        tree, pos, step = self._tree, 0, self._high_bit
        while step:
            nxt = pos + step
            if nxt <= self.size and tree[nxt] < k:
                pos = nxt
                k -= tree[nxt]
            step >>= 1
        return pos

    def next_at_or_after(self, position: int) -> int | None:
        """First alive position >= ``position``."""
        before = self._prefix(max(position, 0))
        return None if before >= self.alive else self._kth(before + 1)

    def prev_at_or_before(self, position: int) -> int | None:
        """Last alive position <= ``position``."""
        upto = self._prefix(position + 1) if position >= 0 else 0
        return None if upto == 0 else self._kth(upto)

    def clear(self) -> None:
        """Delete everything (a cascade) without touching the tree."""
        self.alive = 0
        self._flags = bytearray(self.size)
        self._tree = array("i", bytes(4 * (self.size + 1)))
