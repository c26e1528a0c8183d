"""Resume snapshots during a run (issue 16 §3): every so often, a snapshot of the durable
prefix of the log, written by another process (``python -m runner.log.snapshot``) so that the
run's memory and event loop are untouched, and a resume after a crash reads the snapshot and
the lines after it instead of every line.

A snapshot is housekeeping, not part of what the run does: it waits on wall time (anyio's), not
on the run's clock, and a snapshot that cannot be written is a warning (the log stays the truth).
Tuning (and tests): ``BULKOPS_SNAPSHOT_SECONDS`` between looks at the log (default 60) and
``BULKOPS_SNAPSHOT_BYTES`` the log must have grown by since the last snapshot (default 32 MiB,
about 400,000 targets: a smaller log replays in well under a second anyway).
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio
import structlog

from runner.log.writer import CheckpointWriter

__all__ = ["SnapshotSettings", "snapshot_periodically"]

log = structlog.get_logger("bulkops.snapshots")


@dataclass(frozen=True, slots=True)
class SnapshotSettings:
    """How often a run snapshots its log."""

    seconds: float = 60.0
    min_bytes: int = 32 << 20

    @classmethod
    def of(cls, environ: Mapping[str, str]) -> SnapshotSettings:
        """The settings the environment asks for; a value that is not a number is warned about
        and the default kept (a snapshot is never worth stopping a run for)."""
        default = cls()
        seconds, min_bytes = default.seconds, default.min_bytes
        try:
            asked = float(environ.get("BULKOPS_SNAPSHOT_SECONDS", seconds))
            if math.isnan(asked):  # float() reads "nan", and no sleep takes it
                raise ValueError("not a number")
            seconds = asked
            min_bytes = int(environ.get("BULKOPS_SNAPSHOT_BYTES", min_bytes))
        except ValueError:
            log.warning(
                "snapshot_settings_ignored",
                fix="BULKOPS_SNAPSHOT_SECONDS is seconds, BULKOPS_SNAPSHOT_BYTES whole bytes",
            )
        return cls(max(seconds, 0.01), max(min_bytes, 0))


async def snapshot_periodically(
    log_path: Path, writer: CheckpointWriter, settings: SnapshotSettings
) -> None:
    """Snapshot the durable prefix of the log whenever it has grown enough; until cancelled
    (which kills a snapshot process at work: it leaves only its aside, never half a snapshot)."""
    last = 0
    while True:
        await anyio.sleep(settings.seconds)
        size = writer.synced
        if writer.error is not None or size - last < max(settings.min_bytes, 1):
            continue
        code = await _snapshot_process(log_path, size)
        if code == 0:
            last = size
        else:
            log.warning("snapshot_not_written", exit_code=code)


async def _snapshot_process(log_path: Path, offset: int) -> int:
    process = await anyio.open_process(
        [sys.executable, "-m", "runner.log.snapshot", str(log_path), str(offset)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        return await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            with anyio.CancelScope(shield=True):
                await process.wait()
