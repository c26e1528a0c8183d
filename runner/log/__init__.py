"""The checkpoint log: its format and replay, the single writer and the seen-target digests."""

from __future__ import annotations

from runner.log.checkpoint import (
    CheckpointWriter,
    Header,
    Replay,
    State,
    key_hash,
    open_log,
    read_checkpoint,
)
from runner.log.digests import DigestMap, SeenSet

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
