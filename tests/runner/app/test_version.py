"""`bulkops --version` answers before the engine is imported."""

from __future__ import annotations

import subprocess
import sys

from runner import __version__
from tests.runner.conftest import REPO

# Printed by the child after `--version` has run in it: which heavy modules it had loaded.
_PROBE = """
import sys
from runner.cli import main
code = main(["--version"])
heavy = ("runner.engine", "runner.app", "runner.wire", "aiohttp", "rich", "pydantic")
print(sorted(m for m in sys.modules if m.split(".")[0] in heavy or m.startswith(heavy)))
sys.exit(code)
"""


def test_version_loads_neither_the_engine_nor_aiohttp() -> None:
    """`--version` prints the version and loads no engine, app, wire, aiohttp, rich or pydantic
    module (they cost seconds on a cold start); checked through sys.modules, not a timer."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, cwd=REPO, check=True
    )
    version, loaded = done.stdout.splitlines()
    assert version == f"bulkops {__version__}"
    assert loaded == "[]"


def test_python_dash_m_runner_version() -> None:
    """`python -m runner --version` is the same answer, through runner/__main__."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "runner", "--version"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    assert done.stdout == f"bulkops {__version__}\n"
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert not {m for m in imported if m.startswith(("runner.engine", "aiohttp"))}
