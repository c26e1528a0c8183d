"""A run loads only what it uses (issue 16 §1: its start-up counts in its cost per request).

A real `bulkops run` in a process of its own, against the emulator, logging JSON: the modules it
had loaded by its end are written out, and none of those only other commands or options need
may be among them — the live view (rich.progress), the metrics exporter (prometheus_client,
aiohttp's server), the emulator, the other commands' modules. Judged through sys.modules, not a
timer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from runner.errors import ExitCode
from tests.runner.conftest import REPO, deleted, point_at
from tests.runner.test_run_faults import SUPPORT_SERVICE, job

# bulkops' command line, then the names of the modules loaded by its end, to the file named
# first.
_PROBE = """
import json, sys
from runner.cli import main
code = main(sys.argv[2:])
with open(sys.argv[1], "w") as out:
    json.dump(sorted(sys.modules), out)
sys.exit(code)
"""

NOT_FOR_A_RUN = (
    "rich.progress",
    "rich.live",
    "runner.app.liveview",
    "prometheus_client",
    "aiohttp.web",
    "runner.app.metrics",
    "runner.app.metrics_push",
    "runner.emulator",
    "runner.app.demo",
    "runner.app.verify",
    "runner.app.verification",
    "runner.app.prune",
)


async def test_a_run_logging_json_loads_no_live_view_metrics_or_emulator(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run without a terminal or metrics deletes what it should and never imports what only a
    live view, the metrics options or other commands use."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        chosen = [m for m in await emu.resources("message") if m["service_sid"] == SUPPORT_SERVICE]
        chosen = chosen[:3]
        ids = ", ".join(f'"{m["conversation_sid"]}/{m["sid"]}"' for m in chosen)
        spec = job(
            workdir,
            f"service: {SUPPORT_SERVICE}\ntargets:\n  - {{kind: messages, ids: [{ids}]}}\n",
        )
        loaded = workdir / "modules.json"
        done = await anyio.run_process(
            [sys.executable, "-c", _PROBE, str(loaded), "run", str(spec), "--log-format", "json"],
            env={**os.environ, "PYTHONPATH": str(REPO)},
            cwd=workdir,
            check=False,
        )
        assert done.returncode == ExitCode.OK, done.stderr.decode()
        assert deleted(await emu.ledger()) == {("message", m["sid"]) for m in chosen}
    modules = json.loads(loaded.read_text())
    assert "runner.engine.scheduler" in modules  # the probe saw the run's own modules
    assert [m for m in modules if m.startswith(NOT_FOR_A_RUN)] == []


# The process's own start (main() with no arguments, as the console script and `python -m
# runner` call it): whether the collector was on while the command ran, and after.
_GC_PROBE = """
import gc, json, sys
import runner.app.prune as prune_module
from runner.cli import main
seen = {}
real = prune_module.prune
def prune(*args, **kwargs):
    seen["during"] = gc.isenabled()
    seen["frozen"] = gc.get_freeze_count()
    return real(*args, **kwargs)
prune_module.prune = prune
sys.argv = ["bulkops", *sys.argv[1:]]
code = main()
seen["after"] = gc.isenabled()
print(json.dumps(seen))
sys.exit(code)
"""


def test_the_collector_rests_only_while_the_process_starts(tmp_path: Path) -> None:
    """`bulkops` started as a process loads its command's modules with the cyclic collector
    paused, then runs the command with it on, the start-up's objects frozen out of its scans."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _GC_PROBE,
            "prune",
            "--keep",
            "1",
            "--checkpoint-dir",
            str(tmp_path),
            "--dry-run",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert done.returncode == ExitCode.OK, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["during"] is True
    assert seen["frozen"] > 10_000  # the modules' objects, frozen once loaded
    assert seen["after"] is True


def test_a_caller_passing_arguments_keeps_its_collector() -> None:
    """main(argv), as tests and embedders call it, leaves the caller's collector alone."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import gc; from runner.cli import main; main(['--version']); "
            "print(gc.isenabled(), gc.get_freeze_count())",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
    )
    assert done.stdout.splitlines()[-1] == "True 0"


def test_the_emulator_serves_with_the_collector_on() -> None:
    """`bulkops emulator` (a server that runs until stopped) is not left without a collector."""
    probe = (
        "import gc, sys\n"
        "import runner.emulator as emulator\n"
        "emulator.main = lambda argv: print(gc.isenabled()) or 0\n"
        "sys.argv = ['bulkops', 'emulator']\n"
        "from runner.cli import main\n"
        "sys.exit(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
    )
    assert done.stdout.splitlines()[-1] == "True"
