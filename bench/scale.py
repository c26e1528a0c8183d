"""scale: memory and checkpoint size of big runs, and resuming a 1M-target log.

* ``manifest``: bulkops deletes N messages from a CSV manifest against the no-op server;
* ``discovery``: bulkops lists and deletes N messages (N/100 conversations x 100) from the
  emulator with its limits off;
* ``resume``: :mod:`bench.resume_scale` writes a 1M-target log and times ``bulkops resume`` to
  its first request (``--end-to-end``), reusing that script as it is.

Peak RSS is the kernel's high-water mark of the bulkops process (``VmHWM``, polled).
``checkpoint_bytes_per_target`` is the real log of the manifest run (write-ahead + outcome line
per target); ``synthetic_bytes_per_target`` is resume_scale's log (outcome lines only).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from bench import harness
from bench.goals import Figures
from bench.overhead import write_manifest
from bench.rate import _service


def scale(quick: bool) -> Figures:
    """Peak RSS, checkpoint bytes per target and resume time."""
    runs = 30_000 if quick else 1_000_000
    resume_targets = 100_000 if quick else 1_000_000
    figures: Figures = {"run_targets": runs, "resume_targets": resume_targets}
    with tempfile.TemporaryDirectory(prefix="scale") as tmp:
        directory = Path(tmp)
        write_manifest(directory / "manifest.csv", runs, per_conversation=100)
        spec = harness.write_spec(directory, "scale", (
            "targets:\n  - {kind: messages, from_file: manifest.csv}\n"
            "limits: {per_conversation_rate: 100000}\n"))
        with harness.noop_server() as url:
            manifest_run = harness.bulkops(spec, url)
        (log,) = directory.glob("checkpoints/*.jsonl")
        figures["manifest_exit_code"] = manifest_run.exit_code
        figures["manifest_peak_rss_mb"] = manifest_run.peak_rss_mb
        figures["manifest_wall_s"] = manifest_run.wall_s
        figures["checkpoint_bytes_per_target"] = log.stat().st_size / runs

        args = ["--generate", "scale", "--conversations", str(runs // 100),
                "--messages-per-conversation", "100", "--conversation-aps", "none",
                "--service-aps", "none", "--account-concurrency", "none", "--no-request-log"]
        with harness.emulator(*args) as url:
            discovery_dir = directory / "discovery"
            spec = harness.write_spec(discovery_dir, "scale", (
                f"service: {_service(url)}\n"
                "targets:\n  - {kind: messages, where: {conversations: all}}\n"
                "limits: {per_conversation_rate: 100000}\n"))
            discovery_run = harness.bulkops(spec, url)
            remaining = harness.get_json(f"{url}/_emulator/ledger/summary")["remaining"]
        figures["discovery_exit_code"] = discovery_run.exit_code
        figures["discovery_remaining"] = remaining["messages"]
        figures["discovery_peak_rss_mb"] = discovery_run.peak_rss_mb
        figures["discovery_wall_s"] = discovery_run.wall_s

        out = directory / "resume.json"
        harness.run_child(
            [sys.executable, str(Path(__file__).with_name("resume_scale.py")), "--targets",
             str(resume_targets), "--end-to-end", "--json", str(out),
             "--dir", str(directory / "resume")],
            cwd=directory, env=harness.clean_env())
        resume = json.loads(out.read_text())
    figures["synthetic_bytes_per_target"] = resume["checkpoint_bytes_per_target"]
    figures["resume_s"] = resume["first_request_s"]
    figures["resume_peak_rss_mb"] = resume["first_request_peak_rss_mb"]
    figures["peak_rss_mb"] = max(
        figures["manifest_peak_rss_mb"],
        figures["discovery_peak_rss_mb"],
        resume["whole_resume_peak_rss_mb"],
    )
    return figures
