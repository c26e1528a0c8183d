"""overhead: bulkops vs a raw aiohttp loop against a no-op server, same concurrency.

Both delete the same manifest of messages (the no-op server answers every DELETE 204); bulkops
writes its checkpoint as always (write-ahead line + outcome line per target, group-committed).
Throughput is measured by the server (first to last DELETE); CPU is the client process's whole
user+system time, start-up included, per 1,000 deletes. The two alternate, best of the rounds.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from bench import harness
from bench.goals import Figures

CONCURRENCY = 64


def write_manifest(path: Path, count: int, per_conversation: int = 20) -> None:
    """``count`` synthetic message targets, ``per_conversation`` to a conversation."""
    rows = (f"IM{n:032x},CH{n // per_conversation:032x}" for n in range(count))
    path.write_text("id,conversation_sid\n" + "\n".join(rows) + "\n")


def _reset_stats(url: str) -> dict[str, float]:
    stats: dict[str, float] = harness.get_json(f"{url}/_stats")
    return stats


def overhead(quick: bool) -> Figures:
    """Throughput and CPU per 1,000 deletes, bulkops ÷ raw."""
    count = 20_000 if quick else 60_000
    rounds = 1 if quick else 2
    best: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="overhead") as tmp:
        directory = Path(tmp)
        manifest = directory / "manifest.csv"
        write_manifest(manifest, count)
        spec = harness.write_spec(directory, "overhead", (
            "targets:\n  - {kind: messages, from_file: manifest.csv}\n"
            f"limits: {{concurrency: {CONCURRENCY}, per_conversation_rate: 100000}}\n"))
        for _ in range(rounds):
            for program in ("raw", "bulkops"):
                with harness.noop_server() as url:
                    if program == "raw":
                        child = harness.run_child(
                            [sys.executable, "-m", "bench.raw_loop", url, str(manifest),
                             str(CONCURRENCY)], cwd=directory, env=harness.clean_env(url))
                    else:
                        for old in directory.glob("checkpoints/*"):
                            old.unlink()
                        child = harness.bulkops(spec, url)
                    stats = _reset_stats(url)
                assert stats["deletes"] == count, (program, stats, child)
                rate = count / (stats["last"] - stats["first"])
                cpu = child.cpu_s / count * 1000
                prior = best.get(program)
                if prior is None or rate > prior[0]:
                    best[program] = (rate, min(cpu, prior[1]) if prior else cpu)
    raw_rate, raw_cpu = best["raw"]
    ops_rate, ops_cpu = best["bulkops"]
    return {
        "targets": count,
        "raw_deletes_per_s": raw_rate,
        "bulkops_deletes_per_s": ops_rate,
        "raw_cpu_s_per_1000": raw_cpu,
        "bulkops_cpu_s_per_1000": ops_cpu,
        "throughput_ratio": ops_rate / raw_rate,
        "cpu_ratio": ops_cpu / raw_cpu,
    }
