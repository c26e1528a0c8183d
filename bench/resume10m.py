"""resume-10m (issue 16 §3): resuming a synthetic 10,000,000-target log from its snapshot.

:mod:`bench.resume_scale` writes the log and its resume snapshot (as the run's exit would have
left it) and times ``bulkops resume`` from process start to its first request
(``--end-to-end``), with the process's peak RSS at that moment and over the whole resume (which
also writes the completion report of every target and a new snapshot). ``--quick``: 1,000,000
targets (the figures are then the 1M ones, held to the same bounds).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from bench import harness
from bench.goals import Figures


def resume_10m(quick: bool) -> Figures:
    """Time and peak memory of a resume of a 10M-target log (1M with ``quick``)."""
    targets = 1_000_000 if quick else 10_000_000
    with tempfile.TemporaryDirectory(prefix="resume10m") as tmp:
        directory = Path(tmp)
        out = directory / "resume.json"
        harness.run_child(
            [sys.executable, str(Path(__file__).with_name("resume_scale.py")), "--targets",
             str(targets), "--end-to-end", "--json", str(out), "--dir", str(directory / "log")],
            cwd=directory, env=harness.clean_env())
        resume = json.loads(out.read_text())
    return {
        "targets": targets,
        "from_snapshot": resume["from_snapshot"],
        "snapshot_bytes_per_target": resume["snapshot_bytes_per_target"],
        "checkpoint_bytes_per_target": resume["checkpoint_bytes_per_target"],
        "read_s": resume["read_checkpoint_s"],
        "first_request_s": resume["first_request_s"],
        "peak_rss_mb": resume["first_request_peak_rss_mb"],
        "whole_resume_peak_rss_mb": resume["whole_resume_peak_rss_mb"],
        "whole_resume_s": resume["whole_resume_s"],
        "resume_exit_code": resume["resume_exit_code"],
    }
