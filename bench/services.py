"""services: a closed-conversation purge across 4 Services in one job (`service: all`).

The emulator holds C conversations spread over 4 named Services (a third of them closed) and
allows 30 conversation deletes/s per Service (Twilio's figure). One bulkops job names
``service: all``: it lists /v1/Services and drives every Service's selection at once, each under
its own 30/s budget, so the bound is 4 x 30 = 120 deletes/s. The ratio counts the conversation
deletes that acted from the first request (the Services' listing included) to the last
delete. A driver script running one job per Service after another reaches 22-27/s in all
(issue 13), a ratio of about 0.2.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench import harness
from bench.goals import Figures
from bench.timeline import deletes_ok

SERVICES = 4
PER_SERVICE = 30.0  # Twilio's conversation deletes per Service per second


def services(quick: bool) -> Figures:
    """Achieved conversation deletes/s ÷ (4 Services x 30/s)."""
    conversations = 1_800 if quick else 7_200  # a third closed: 600 or 2,400 in all
    args = ["--generate", "scale", "--conversations", str(conversations),
            "--messages-per-conversation", "2", "--services", str(SERVICES),
            "--service-aps", str(PER_SERVICE)]
    with harness.emulator(*args) as url, tempfile.TemporaryDirectory(prefix="services") as tmp:
        spec = harness.write_spec(Path(tmp), "services", (
            "service: all\n"
            "targets:\n  - {kind: conversations, where: {state: closed}}\n"))
        child = harness.bulkops(spec, url)
        ledger = harness.get_json(f"{url}/_emulator/ledger")
    requests = ledger["requests"]
    ok = deletes_ok(requests)
    if not ok:
        return {"exit_code": child.exit_code, "targets": 0, "ratio": 0.0}
    span = ok[-1] - min(r["time"] for r in requests)
    bound = SERVICES * PER_SERVICE
    return {
        "targets": len(ok),
        "exit_code": child.exit_code,
        "requests": len(requests),
        "throttled": sum(ledger["throttled"].values()),
        "deletes_per_s": len(ok) / span,
        "ratio": len(ok) / span / bound,
        "wall_s": child.wall_s,
    }
