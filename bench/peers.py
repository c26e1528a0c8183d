"""peers: bulkops vs the same purge written with the twilio SDK, same emulator, same limits.

The emulator holds C conversations x 20 messages with Twilio's documented limits (30 actions/s
per conversation, 100 requests in flight) and 50 ms median latency (p99 100 ms). Each program
gets a fresh emulator with the same dataset; they alternate, round after round. Figure: deletes
that acted per second, from the program's first request to its last successful delete (process
start-up excluded for all). The sequential loop is stopped after a time box: at ~15/s it would
need many minutes. Lost = messages the program gave up on (a 429 the SDK does not retry).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path

from bench import harness
from bench.goals import Figures
from bench.rate import _service
from bench.timeline import deletes_ok


def _emulator_args(conversations: int) -> list[str]:
    return ["--generate", "scale", "--conversations", str(conversations),
            "--messages-per-conversation", "20", "--latency-median", "0.05",
            "--latency-p99", "0.1"]


def _one(program: str, conversations: int, time_box: float, tmp: Path) -> tuple[float, int]:
    with harness.emulator(*_emulator_args(conversations)) as url:
        service = _service(url)
        out = tmp / f"{program}.json"
        if program == "bulkops":
            for old in tmp.glob("checkpoints/*"):
                old.unlink()
            spec = harness.write_spec(tmp, "peers", (
                f"service: {service}\n"
                "targets:\n  - {kind: messages, where: {conversations: all}}\n"))
            child = harness.bulkops(spec, url)
        else:
            child = harness.run_child(
                [sys.executable, "-m", "bench.sdk_purge", url, service, program, str(out)],
                cwd=tmp, env=harness.clean_env(url),
                time_box=time_box if program == "sequential" else None)
        ledger = harness.get_json(f"{url}/_emulator/ledger")
    requests = ledger["requests"]
    ok = deletes_ok(requests)
    origin = min(r["time"] for r in requests)
    rate = len(ok) / (ok[-1] - origin)
    if program == "bulkops":
        lost = ledger["remaining"]["messages"] + (child.exit_code != 0)
    else:
        lost = int(json.loads(out.read_text())["lost_429"])
    return rate, lost


def peers(quick: bool) -> Figures:
    """Speed-ups of bulkops over the SDK loops, and deletions each lost."""
    conversations = 100 if quick else 300
    rounds = 1 if quick else 3
    time_box = 8.0 if quick else 20.0
    rates: dict[str, list[float]] = {"sequential": [], "gather": [], "bulkops": []}
    lost: dict[str, list[int]] = {k: [] for k in rates}
    with tempfile.TemporaryDirectory(prefix="peers") as tmp:
        for _ in range(rounds):
            for program in rates:
                rate, gone = _one(program, conversations, time_box, Path(tmp))
                rates[program].append(rate)
                lost[program].append(gone)
    median = {k: statistics.median(v) for k, v in rates.items()}
    return {
        "targets": conversations * 20,
        "sdk_sequential_deletes_per_s": median["sequential"],
        "sdk_gather_deletes_per_s": median["gather"],
        "bulkops_deletes_per_s": median["bulkops"],
        "speedup_vs_sdk_sequential": median["bulkops"] / median["sequential"],
        "speedup_vs_sdk_gather": median["bulkops"] / median["gather"],
        "lost_sdk_gather": max(lost["gather"]),
        "lost_bulkops": max(lost["bulkops"]),
    }
