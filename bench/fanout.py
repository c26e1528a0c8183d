"""fanout: a message purge over many conversations, bounded by concurrency and latency.

The emulator holds C conversations x 20 messages, allows 30 actions/s per conversation and 100
requests in flight per account, and answers every request after 50 ms. bulkops (told
``concurrency: 100``) lists and deletes them all. The bound is 100 / 50 ms = 2,000 requests/s;
the ratio counts every accepted request (the message lists share the in-flight cap with the
deletes) from the first request to the last delete. ``delete_ratio`` counts deletes only.

``raw_ratio`` is the same bound for ``raw_loop.py`` deleting the same messages from a manifest
(no listing, no pacing, no checkpoint): what a client can reach on this machine at all, where
the emulator takes one of the two cores.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from bench import harness
from bench.goals import Figures
from bench.rate import _service
from bench.timeline import deletes_ok

LATENCY = 0.05
IN_FLIGHT = 100
# Both clients run on the same loop (asyncio's own), so their CPU per request compares like with
# like; `overhead` measures both loops.
LOOP = "asyncio"
# The emulator's loop (`bulkops emulator --loop`). On uvloop it answers the bare loop ~0.5 ms
# sooner (raw ratio 0.91-0.92 against 0.89-0.91) but bulkops no sooner (0.853-0.866 against
# 0.862-0.885 on asyncio's, 3,000 conversations, session 16): asyncio's it stays.
SERVER_LOOP = "asyncio"


def fanout(quick: bool) -> Figures:
    """Accepted requests/s ÷ (in-flight cap / latency)."""
    conversations = 1_000 if quick else 10_000
    args = ["--generate", "scale", "--conversations", str(conversations),
            "--messages-per-conversation", "20", "--account-concurrency", str(IN_FLIGHT),
            "--latency-median", str(LATENCY), "--latency-p99", str(LATENCY), "--loop", SERVER_LOOP]
    with harness.emulator(*args) as url, tempfile.TemporaryDirectory(prefix="fanout") as tmp:
        spec = harness.write_spec(Path(tmp), "fanout", (
            f"service: {_service(url)}\n"
            "targets:\n  - {kind: messages, where: {conversations: all}}\n"
            f"limits: {{concurrency: {IN_FLIGHT}}}\n"))
        child = harness.bulkops(spec, url, "--loop", LOOP)
        ledger = harness.get_json(f"{url}/_emulator/ledger")
        server_loop = harness.get_json(f"{url}/_emulator/ledger/summary")["loop"]
    requests = ledger["requests"]
    if not requests:
        return {"exit_code": child.exit_code, "requests": 0, "ratio": 0.0}
    raw = _raw_reference(args)
    ok = deletes_ok(requests)
    origin = min(r["time"] for r in requests)
    span = ok[-1] - origin
    accepted = sum(1 for r in requests if r["status"] not in (0, 429) and r["time"] <= ok[-1])
    bound = IN_FLIGHT / LATENCY
    return {
        "targets": len(ok),
        "exit_code": child.exit_code,
        "remaining": ledger["remaining"]["messages"],
        "requests": len(requests),
        "throttled": sum(ledger["throttled"].values()),
        "requests_per_s": accepted / span,
        "deletes_per_s": len(ok) / span,
        "ratio": accepted / span / bound,
        "delete_ratio": len(ok) / span / bound,
        "client_cpu_s": child.cpu_s,
        "client_cpu_ms_per_request": child.cpu_s / len(requests) * 1000,
        "wall_s": child.wall_s,
        "loop": LOOP,
        "server_loop": server_loop,  # as the emulator reports it
        **raw,
        "client_cpu_ratio": (
            child.cpu_s / len(requests) * 1000 / raw["raw_cpu_ms_per_request"]
            if raw.get("raw_cpu_ms_per_request") else 0.0
        ),
    }


def _raw_reference(args: list[str]) -> Figures:
    """What this machine allows a client at all: ``raw_loop.py`` deleting the same messages
    from a manifest (no listing, no pacing, no checkpoint) on a fresh emulator of the same
    settings, its deletes/s ÷ the bound."""
    with harness.emulator(*args) as url, tempfile.TemporaryDirectory(prefix="fanraw") as tmp:
        manifest = Path(tmp) / "manifest.csv"
        harness.message_manifest(url, manifest)
        prefix = f"/v1/Services/{_service(url)}/Conversations"
        child = harness.run_child(
            [sys.executable, "-m", "bench.raw_loop", url, str(manifest), str(IN_FLIGHT), prefix,
             "--loop", LOOP],
            cwd=Path(tmp), env=harness.clean_env(url))
        ok = deletes_ok(harness.get_json(f"{url}/_emulator/ledger")["requests"])
    if not ok:
        return {"raw_ratio": 0.0}
    span = ok[-1] - ok[0]
    return {
        "raw_ratio": len(ok) / span / (IN_FLIGHT / LATENCY) if span > 0 else 0.0,
        "raw_cpu_ms_per_request": child.cpu_s / len(ok) * 1000,
    }
