"""resume-pacing (issue 14 §6): does a resumed run pace as well as a fresh one?

As ``rate-unknown`` (an emulator at 200 requests/s, burst 20, bulkops told nothing, message
deletes from a shuffled manifest): a fresh run deletes everything; then, on a fresh emulator, a
run is stopped half way (SIGTERM after half the fresh run's time: it stops as on Ctrl-C) and
resumed. The resume's 429 share is read from the ledger (its requests only) and compared with
the fresh run's. The same again with ``pacing.resume_half_life_s: 0`` gives a resume that
learns its pace from scratch, as every resume did before the log kept the pace.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import harness
from bench.goals import Figures
from bench.rate import BURST, LIMIT
from bench.timeline import deletes_ok, throttled_times


def _service(url: str) -> str:
    services = harness.get_json(f"{url}/_emulator/resources?kind=service")["items"]
    return str(next(s["sid"] for s in services if not s["default"]))


def _emulator(conversations: int) -> Any:
    return harness.emulator(
        "--generate", "scale", "--conversations", str(conversations),
        "--messages-per-conversation", "20",
        "--product-rate", f"conversations:{LIMIT:g}:{BURST}",
    )


def _spec(url: str, directory: Path) -> Path:
    harness.message_manifest(url, directory / "manifest.csv")
    return harness.write_spec(directory, "resume-pacing", (
        f"service: {_service(url)}\n"
        "targets:\n  - {kind: messages, from_file: manifest.csv}\n"))


def _share(requests: list[dict[str, Any]]) -> float:
    return len(throttled_times(requests)) / max(1, len(requests))


def _fresh(conversations: int) -> tuple[float, float]:
    """(429 share, wall seconds) of a fresh run."""
    with _emulator(conversations) as url, tempfile.TemporaryDirectory() as tmp:
        child = harness.bulkops(_spec(url, Path(tmp)), url)
        requests = harness.get_json(f"{url}/_emulator/ledger")["requests"]
    if child.exit_code != 0:
        raise SystemExit(f"the fresh run exited {child.exit_code}")
    return _share(requests), child.wall_s


def _stopped_and_resumed(conversations: int, stop_after: float, half_life: float) -> Figures:
    """Stop a run after ``stop_after`` s, resume it under ``half_life``; the resume's figures."""
    with _emulator(conversations) as url, tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        spec = _spec(url, directory)
        config = directory / "config.yaml"
        config.write_text(f"pacing: {{resume_half_life_s: {half_life:g}}}\n")
        first = harness.bulkops(spec, url, time_box=stop_after)
        (log,) = sorted((directory / "checkpoints").glob("*.jsonl"))
        paced = sum(1 for line in log.read_text().splitlines() if line.startswith('{"t":"L"'))
        argv = [sys.executable, "-m", "runner", "resume", str(log), "--config", str(config),
                "--log-format", "json", "--log-level", "warning"]
        resumed = harness.run_child(argv, cwd=directory, env=harness.clean_env(url))
        ledger = harness.get_json(f"{url}/_emulator/ledger")
    requests = [r for r in ledger["requests"] if r["time"] >= resumed.started]
    ok = deletes_ok(requests)
    return {
        "first_exit_code": first.exit_code,
        "exit_code": resumed.exit_code,
        "remaining": ledger["remaining"]["messages"],
        "pace_lines": paced,
        "requests": len(requests),
        "throttled_share": _share(requests),
        "ratio": len(ok) / max(1e-9, ok[-1] - min(r["time"] for r in requests)) / LIMIT
        if ok else 0.0,
    }


def resume_pacing(quick: bool) -> Figures:
    """A resume's 429 share against a fresh run's, with the learned pace and without it."""
    conversations = 150 if quick else 300
    fresh_share, wall = _fresh(conversations)
    seeded = _stopped_and_resumed(conversations, wall / 2, 300.0)
    cold = _stopped_and_resumed(conversations, wall / 2, 0.0)
    figures: Figures = {"fresh_throttled_share": fresh_share}
    figures |= seeded
    figures["gap_points"] = 100 * (seeded["throttled_share"] - fresh_share)
    figures["cold_throttled_share"] = cold["throttled_share"]
    figures["cold_ratio"] = cold["ratio"]
    figures["cold_gap_points"] = 100 * (cold["throttled_share"] - fresh_share)
    return figures
