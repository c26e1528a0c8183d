"""The exit codes the README documents are exactly :class:`runner.errors.ExitCode`."""

from __future__ import annotations

import re
from pathlib import Path

from runner.errors import ExitCode

README = Path(__file__).resolve().parents[3] / "README.md"


def readme_exit_codes() -> list[int]:
    """The codes of the README's "Exit codes" table, in its order."""
    text = README.read_text(encoding="utf-8")
    section = text.split("### Exit codes", 1)[1]
    table = section.split("\n\n", 2)[1]  # the first paragraph after the heading
    return [int(m[1]) for m in re.finditer(r"^\| (\d+) \|", table, flags=re.MULTILINE)]


def test_readme_table_matches_the_enum() -> None:
    assert readme_exit_codes() == sorted(ExitCode)


def test_every_code_is_an_int() -> None:
    # A process exit status and a checkpoint footer both need the plain number.
    assert [int(code) for code in ExitCode] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 130]
