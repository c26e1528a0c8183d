"""``bulkops demo``: a full purge of jobs/demo.yaml against the emulator, in one process.

The emulator is started in-process on a free loopback port with its "demo" dataset, and the job
then runs through the code path of ``bulkops run``: the same spec loading, config validation
(with credentials in an environment the demo builds), engine, checkpoint and report.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from runner.app import logs, loop
from runner.app.display import terminal_display
from runner.app.job import RunResult, start_run
from runner.app.outcome import finish
from runner.clock import MONOTONIC
from runner.emulator import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    Dataset,
    EmulatorSettings,
    generate,
    running_emulator,
)
from runner.engine.scheduler import preflight
from runner.plan.planner import build_plan
from runner.spec.config import load_config
from runner.spec.jobspec import load_spec

DEMO_JOB = Path(__file__).resolve().parents[2] / "jobs" / "demo.yaml"


def run_demo(job: Path | None, checkpoint_dir: Path | None, console: Console, err: Console) -> int:
    """Serve the demo dataset, run the job against it and print the report."""
    spec_path = job or DEMO_JOB
    load_spec(spec_path)  # bad input fails here, before the emulator starts
    logs.configure("auto", "info")
    settings = EmulatorSettings(operation_pending_s=0.5, operation_running_s=1.0)
    dataset = generate("demo", seed=0)
    result = loop.run(_demo, spec_path, checkpoint_dir, settings, dataset, console)
    return finish(result, console, err)


def demo_environment(url: str) -> dict[str, str]:
    """The environment a real run would have: credentials and base URLs, here the emulator's."""
    env = {
        **os.environ,
        "TWILIO_ACCOUNT_SID": DEFAULT_ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": DEFAULT_AUTH_TOKEN,
        "BULKOPS_CONVERSATIONS_URL": url,
        "BULKOPS_MEMORY_URL": url,
    }
    env.pop("TWILIO_API_KEY", None)
    env.pop("TWILIO_API_SECRET", None)
    return env


async def _demo(
    spec_path: Path,
    checkpoint_dir: Path | None,
    settings: EmulatorSettings,
    dataset: Dataset,
    console: Console,
) -> RunResult:
    async with running_emulator(settings, dataset) as url:
        console.print(f"emulator (demo dataset) serving at {url}", highlight=False)
        config = load_config(None, demo_environment(url), cwd=checkpoint_dir or Path.cwd())
        plan = build_plan(load_spec(spec_path), datetime.now(UTC).replace(microsecond=0))
        preflight(plan.sources, plan.max_deletions)
        return await start_run(
            plan,
            config,
            spec_path,
            None,
            None,
            terminal_display(console, MONOTONIC),
            clock=MONOTONIC,
        )
