"""rate-known, rate-unknown, rate-shift: bulkops against a product rate limit of 200/s.

The emulator allows 200 requests/s (burst 20) on the Conversations host and answers the rest
429 with ``Retry-After: 1``; its 30/s per conversation stays on. bulkops deletes messages from a
shuffled manifest (no list requests, so every request is a delete and the ratio is the
deletes'). ``known`` tells bulkops the rate; ``unknown`` tells it nothing; ``shift`` tells it
nothing and changes the limit 200 → 100 → 200/s mid-run through the admin API.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from bench import harness
from bench.goals import Figures
from bench.timeline import Schedule, count_between, deletes_ok, plot, recovery, throttled_times

FIGURES = Path(__file__).resolve().parent / "figures"
# A --quick run draws its timelines here (ignored by git), so the full run's stay as committed.
QUICK_FIGURES = Path(__file__).resolve().parent / "out" / "figures"


def figures_dir(quick: bool) -> Path:
    """Where this run's timelines go."""
    return QUICK_FIGURES if quick else FIGURES
LIMIT = 200.0
BURST = 20


def _service(url: str) -> str:
    services = harness.get_json(f"{url}/_emulator/resources?kind=service")["items"]
    return str(next(s["sid"] for s in services if not s["default"]))


def _run(name: str, conversations: int, per: int, limits: str,
         shifts: tuple[tuple[float, float], ...] = ()) -> tuple[Figures, list[dict[str, Any]],
                                                                 float, list[float]]:
    args = ["--generate", "scale", "--conversations", str(conversations),
            "--messages-per-conversation", str(per),
            "--product-rate", f"conversations:{LIMIT:g}:{BURST}"]
    with harness.emulator(*args) as url, tempfile.TemporaryDirectory(prefix=name) as tmp:
        directory = Path(tmp)
        count = harness.message_manifest(url, directory / "manifest.csv")
        spec = harness.write_spec(directory, name, (
            f"service: {_service(url)}\n"
            "targets:\n  - {kind: messages, from_file: manifest.csv}\n" + limits))
        pending = list(shifts)
        changed: list[float] = []

        def shift(elapsed: float) -> None:
            if pending and elapsed >= pending[0][0]:
                _, rate = pending.pop(0)
                before = time.time()
                harness.post_json(f"{url}/_emulator/settings",
                                  {"product_rate": {"conversations": [rate, BURST]}})
                changed.append((before + time.time()) / 2)

        child = harness.bulkops(spec, url, while_running=shift)
        ledger = harness.get_json(f"{url}/_emulator/ledger")
    requests: list[dict[str, Any]] = ledger["requests"]
    ok = deletes_ok(requests)
    origin = min(r["time"] for r in requests)
    throttled = len(throttled_times(requests))
    figures: Figures = {
        "targets": count,
        "exit_code": child.exit_code,
        "remaining": ledger["remaining"]["messages"],
        "requests": len(requests),
        "throttled": throttled,
        "throttled_share": throttled / len(requests),
        "deletes_per_s": len(ok) / (ok[-1] - origin),
        "wall_s": child.wall_s,
    }
    return figures, requests, origin, changed


def rate_known(quick: bool) -> Figures:
    """bulkops told the limit (``limits.conversations.rate: 200``)."""
    conversations, per = (150, 20) if quick else (300, 20)
    figures, requests, origin, _ = _run(
        "rate-known", conversations, per, f"limits: {{conversations: {{rate: {LIMIT:g}}}}}\n")
    figures["ratio"] = figures["deletes_per_s"] / LIMIT
    plot(figures_dir(quick) / "rate-known.png", "rate-known: 200/s told to bulkops", requests,
         origin, Schedule(((0.0, LIMIT),)))
    return figures


def rate_unknown(quick: bool) -> Figures:
    """bulkops told nothing about the rate: the adaptive controller finds it."""
    conversations, per = (150, 20) if quick else (300, 20)
    figures, requests, origin, _ = _run("rate-unknown", conversations, per, "")
    figures["ratio"] = figures["deletes_per_s"] / LIMIT
    plot(figures_dir(quick) / "rate-unknown.png", "rate-unknown: 200/s, bulkops told nothing",
         requests, origin, Schedule(((0.0, LIMIT),)))
    return figures


def rate_shift(quick: bool) -> Figures:
    """The limit drops to 100/s and comes back to 200/s mid-run."""
    phase = 6.0 if quick else 10.0
    conversations = 200 if quick else 400
    shifts = ((1.0 + phase, LIMIT / 2), (1.0 + 2 * phase, LIMIT))
    figures, requests, origin, changed = _run("rate-shift", conversations, 20, "", shifts)
    ok = deletes_ok(requests)
    drop, rise = changed
    figures["recover_after_drop_s"] = recovery(ok, drop, LIMIT / 2)
    figures["recover_after_raise_s"] = recovery(ok, rise, LIMIT)
    figures["rate_during_low"] = count_between(ok, drop + 1, rise) / (rise - drop - 1)
    figures["ratio_during_low"] = figures["rate_during_low"] / (LIMIT / 2)
    figures["drop_at_s"] = drop - origin
    figures["raise_at_s"] = rise - origin
    plot(figures_dir(quick) / "rate-shift.png",
         "rate-shift: 200 → 100 → 200/s, bulkops told nothing", requests, origin,
         Schedule(((0.0, LIMIT), (drop - origin, LIMIT / 2), (rise - origin, LIMIT))),
         marks=(drop - origin, rise - origin))
    return figures
