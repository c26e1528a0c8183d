"""Splitting one job across ``n`` processes: ``--shard i/n``, or ``--shards n`` in an Indexed Job.

Every process lists the same top-level lists and keeps the targets whose *grouping key* hashes to
its index. The key is the conversation SID for messages, participants and v1 conversations, so a
conversation and everything in it land on the same shard: "covered" (a message removed with its
conversation) and Twilio's per-conversation limit both stay decisions of one process, and a
shard lists the messages and participants of its own conversations only (:meth:`Shard.owns_key`).
Other resources are keyed by their own id.

The hash is blake2b of the key's bytes, never Python's ``hash()``: that one is salted per process,
and shards in different pods (or a resume a day later) must agree on every target's owner.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from runner.errors import InputError
from runner.kinds.base import Target
from runner.plan.selection import Explicit, Manifest, Source
from runner.values import ProductLimit

__all__ = [
    "INDEX_ENV",
    "Shard",
    "own_part",
    "parse_shard",
    "resolve_shard",
    "shard_key",
    "shard_of",
    "share_deletions",
    "share_product",
    "share_rate",
    "share_slots",
]

INDEX_ENV = "JOB_COMPLETION_INDEX"  # set by Kubernetes in each pod of an Indexed Job

_SHAPE = re.compile(r"\s*(-?\d+)\s*/\s*(-?\d+)\s*")


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based): owns the targets whose key hashes to ``index``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count} is out of range")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def suffix(self) -> str:
        """A file-name part naming this shard (``shard-0-of-4``), for per-shard checkpoints."""
        return f"shard-{self.index}-of-{self.count}"

    def owns(self, target: Target) -> bool:
        """Whether ``target`` is this shard's to delete."""
        return self.owns_key(shard_key(target))

    def owns_key(self, key: str) -> bool:
        """Whether targets sharded by ``key`` are this shard's: for a v1 conversation's SID,
        the conversation and every message and participant in it (:func:`shard_key`)."""
        return shard_of(key, self.count) == self.index


def shard_key(target: Target) -> str:
    """The key a target is sharded by: its conversation's SID when it has one, else its own id.

    A v1 conversation's own id *is* the SID its messages and participants carry as ``parent``,
    so all three meet on one shard.
    """
    return target.parent or target.id


def shard_of(key: str, count: int) -> int:
    """The shard (0..count-1) that owns ``key``; the same on every machine and Python version."""
    if count < 1:
        raise ValueError(f"shard count must be at least 1, not {count}")
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def parse_shard(text: str) -> Shard:
    """``"i/n"`` (0-based ``i``) as a Shard; InputError says what is wrong and what would do."""
    match = _SHAPE.fullmatch(text)
    if match is None:
        raise InputError(
            f"--shard: {text!r} is not of the form i/n: give this process's 0-based index and "
            "the number of shards, e.g. --shard 0/4 … --shard 3/4"
        )
    index, count = int(match[1]), int(match[2])
    if count < 1:
        raise InputError(
            f"--shard: {text!r} has {count} shards: the count after the slash must be at least 1"
        )
    if not 0 <= index < count:
        raise InputError(
            f"--shard: {text!r} has index {index}, but with {count} shards the index is "
            f"0-based and goes from 0 to {count - 1}, e.g. --shard {count - 1}/{count}"
        )
    return Shard(index, count)


def resolve_shard(shard: str | None, shards: int | None, env: Mapping[str, str]) -> Shard | None:
    """The shard of this process from ``--shard``, ``--shards`` and ``JOB_COMPLETION_INDEX``.

    ``--shard i/n`` wins (``--shards``, if also given, must be ``n``). ``--shards n`` alone takes
    the index from ``JOB_COMPLETION_INDEX``, which Kubernetes sets in each pod of an Indexed Job.
    Neither: None, the whole job. The index variable alone does not shard: an Indexed Job with
    one completion sets it too, and guessing a count would silently skip targets.
    """
    if shard is not None:
        parsed = parse_shard(shard)
        if shards is not None and shards != parsed.count:
            raise InputError(
                f"--shard {shard} and --shards {shards} disagree on the number of shards: "
                "give one of them, or the same count in both"
            )
        return parsed
    if shards is None:
        return None
    if shards < 1:
        raise InputError(f"--shards: {shards} is not a shard count: give 1 or more")
    raw = env.get(INDEX_ENV)
    if raw is None or not raw.strip():
        raise InputError(
            f"--shards {shards} needs this process's index: pass --shard i/{shards}, or run it "
            f"as a Kubernetes Indexed Job, which sets {INDEX_ENV}"
        )
    try:
        index = int(raw)
    except ValueError:
        raise InputError(
            f"{INDEX_ENV}={raw!r} is not a whole number: it should be the pod's completion "
            f"index (0..{shards - 1}); pass --shard i/{shards} instead"
        ) from None
    if not 0 <= index < shards:
        raise InputError(
            f"{INDEX_ENV}={index} is outside 0..{shards - 1}: the Indexed Job's completions "
            f"must equal --shards {shards}"
        )
    return Shard(index, shards)


def share_rate(rate: float, count: int) -> float:
    """One shard's part of a rate that all ``count`` shards spend together."""
    return rate / count


def share_slots(slots: int, count: int) -> int:
    """One shard's part of an in-flight cap: rounded down, so the shards together never exceed
    it, but at least 1, or a shard could never send anything."""
    return max(1, slots // count)


def share_product(limit: ProductLimit, count: int) -> ProductLimit:
    """One shard's part of a product's rate, burst and in-flight cap."""
    return ProductLimit(
        rate=None if limit.rate is None else share_rate(limit.rate, count),
        burst=None if limit.burst is None else max(1, math.floor(limit.burst / count)),
        concurrency=None if limit.concurrency is None else share_slots(limit.concurrency, count),
    )


def share_deletions(limit: int | None, shard: Shard) -> int | None:
    """One shard's part of ``safety.max_deletions``: the shards' parts add up to the limit
    exactly (the first ``limit % n`` shards take one more), so the job as a whole never
    deletes more than it; with fewer deletions allowed than shards, some shards get none."""
    if limit is None:
        return None
    return limit // shard.count + (1 if shard.index < limit % shard.count else 0)


def own_part(source: Source, shard: Shard, count_rows: bool) -> Source:
    """``source`` as far as it is this shard's: listed ids and (when the count matters, for
    the max_deletions check before the run) manifest rows of other shards are left out."""
    if isinstance(source, Explicit):
        return Explicit(source.kind, tuple(t for t in source.targets if shard.owns(t)))
    if isinstance(source, Manifest) and count_rows:
        everything = source.rows

        def rows() -> Iterator[Target]:
            return (t for t in everything() if shard.owns(t))

        return Manifest(source.kind, rows, sum(1 for _ in rows()))
    return source
