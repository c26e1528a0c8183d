"""The checkpoint log's former single module, kept so that imports written against it still
work while branches made before the split are merged. New code imports from the modules
themselves: ``records`` (the line codec), ``replay``, ``writer`` and ``lock``.
"""

from __future__ import annotations

from runner.log.lock import ensure_not_in_use, open_log
from runner.log.records import (
    FINAL_STATES,
    GROUPABLE,
    RECORD_VERSION,
    TRAFFIC,
    Header,
    State,
    TargetRecord,
    decode_target,
    decode_targets,
    group_records,
    key_hash,
    target_record,
)
from runner.log.replay import (
    Replay,
    iter_target_lines,
    iter_target_objects,
    lines_naming,
    read_checkpoint,
)
from runner.log.writer import CheckpointWriter

__all__ = [
    "FINAL_STATES",
    "GROUPABLE",
    "RECORD_VERSION",
    "TRAFFIC",
    "CheckpointWriter",
    "Header",
    "Replay",
    "State",
    "TargetRecord",
    "decode_target",
    "decode_targets",
    "ensure_not_in_use",
    "group_records",
    "iter_target_lines",
    "iter_target_objects",
    "key_hash",
    "lines_naming",
    "open_log",
    "read_checkpoint",
    "target_record",
]
