"""The nightly CronJob's own container command, run for real: tini in front of bulkops against
the emulator, with the time budget shortened so that it ends the run part-way. The pod would
exit 0 (a completed Job) while the log and the metrics still say 7."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import anyio
import pytest
import yaml

from runner.emulator import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    EmulatorSettings,
    generate,
    running_emulator,
)
from runner.errors import ExitCode
from runner.log.replay import read_checkpoint

REPO = Path(__file__).resolve().parents[2]
CRONJOB = REPO / "deploy" / "kubernetes" / "cronjob.yaml"
SUPPORT_SERVICE = "IS40744b2de48602dc47560213196a8f46"  # the demo dataset's first Service
# Slow enough (two requests in flight, each answered in about 0.2 s) that a 1 s budget ends it
# part-way, and requests in flight that end soon, so that the stop is quick.
SLOW_JOB = f"""version: 1
name: retention-90d-messages
service: {SUPPORT_SERVICE}
targets:
  - kind: messages
    where: {{conversations: all}}
limits: {{concurrency: 2}}
"""


def pod_command(tmp_path: Path) -> list[str]:
    """The CronJob container's command, its paths moved under ``tmp_path``, bulkops this tree's
    and its budget 1 s; nothing else changed."""
    doc = yaml.safe_load(CRONJOB.read_text())
    (container,) = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    bulkops = tmp_path / "bulkops"
    bulkops.write_text(f'#!/bin/sh\nexec {sys.executable} -m runner "$@"\n')
    bulkops.chmod(0o755)
    moved = {
        "bulkops": str(bulkops),
        "/etc/bulkops/job.yaml": str(tmp_path / "job.yaml"),
        "/var/lib/bulkops": str(tmp_path / "checkpoints"),
    }
    command = [
        moved.get(word, word.replace("/var/lib/bulkops/", f"{tmp_path}/checkpoints/"))
        for word in container["command"]
    ]
    command[command.index("--max-duration") + 1] = "1s"
    return command


@pytest.mark.skipif(
    shutil.which("tini") is None, reason="tini is not installed (Debian: apt-get install tini)"
)
async def test_a_night_cut_by_its_budget_completes_the_job(tmp_path: Path) -> None:
    """The container's command ends with 0 when the budget stops the run; the checkpoint's
    footer and the metrics file record 7, and the run is resumable."""
    (tmp_path / "job.yaml").write_text(SLOW_JOB)
    settings = EmulatorSettings(latency_median_s=0.2, latency_p99_s=0.3)
    async with running_emulator(settings, generate("demo", seed=0)) as url:
        env = {
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(REPO),
            "TWILIO_ACCOUNT_SID": DEFAULT_ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": DEFAULT_AUTH_TOKEN,
            "BULKOPS_CONVERSATIONS_URL": url,
            "BULKOPS_MEMORY_URL": url,
        }
        command = pod_command(tmp_path)
        assert command[:4] == ["tini", "-e", str(int(ExitCode.OUT_OF_TIME)), "--"]
        done = await anyio.run_process(command, env=env, check=False)
    assert done.returncode == ExitCode.OK, done.stderr.decode()
    (log,) = (tmp_path / "checkpoints").glob("*.jsonl")
    replay = read_checkpoint(log)
    assert replay.exit_code == ExitCode.OUT_OF_TIME
    metrics = (tmp_path / "checkpoints" / "metrics" / "retention-90d-messages.prom").read_text()
    assert (
        f'bulkops_exit_code{{bulkops_job="retention-90d-messages"}} {int(ExitCode.OUT_OF_TIME)}'
        in metrics
    )
