"""docs/operations.md tells schedulers about every exit code, and counts as a success for the
scheduler exactly what the recipes in deploy/ do."""

from __future__ import annotations

import re
from pathlib import Path

from runner.errors import ExitCode

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def scheduler_table() -> dict[int, str]:
    """The "Exit codes for schedulers" table: code → what the scheduler should make of it."""
    section = DOC.read_text(encoding="utf-8").split("## Exit codes for schedulers", 1)[1]
    rows = re.finditer(r"^\| (\d+) \| [^|]+ \| ([^|]+) \|", section, flags=re.MULTILINE)
    return {int(row[1]): row[2].strip() for row in rows}


def test_every_exit_code_is_in_the_schedulers_table() -> None:
    """One row per ExitCode, in order."""
    assert list(scheduler_table()) == sorted(ExitCode)


def test_the_successes_are_the_recipes_successes() -> None:
    """0 and the time budget's 7 are successes, as systemd's SuccessExitStatus and the
    CronJob's `tini -e` make them; every other code is a failure."""
    successes = {code for code, verdict in scheduler_table().items() if "success" in verdict}
    assert successes == {ExitCode.OK, ExitCode.OUT_OF_TIME}
