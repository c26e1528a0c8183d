"""The checkpoint log: its records (the one line codec), replay, the single writer, the lock and
the seen-target digests."""

from __future__ import annotations

from runner.log.digests import DigestMap, SeenSet
from runner.log.lock import open_log
from runner.log.records import Header, State, key_hash
from runner.log.replay import Replay, read_checkpoint
from runner.log.writer import CheckpointWriter

__all__ = [
    "CheckpointWriter",
    "DigestMap",
    "Header",
    "Replay",
    "SeenSet",
    "State",
    "key_hash",
    "open_log",
    "read_checkpoint",
]
