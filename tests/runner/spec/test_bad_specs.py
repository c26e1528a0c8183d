"""The bad-input corpus: every file in tests/bad_specs is refused with its expected message.

Each corpus file starts with comment lines read here:

* ``# expect: <fragment>``: the SpecError/ConfigError must contain a problem with this text;
* ``# expect-warning: <fragment>``: the input loads, with this text among ``Config.warnings``;
* ``# check: config``: the file is a config file (default: a job spec);
* ``# env: NAME=value``: the environment for a config case (repeatable; nothing else is set);
* ``# generate: ids.csv ...``: the spec is copied to a temporary directory next to a generated
  5,001-line manifest whose last row is bad (too big to commit).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from runner.errors import ConfigError, InputError, SpecError
from runner.spec.config import load_config
from runner.spec.jobspec import load_spec

CORPUS = Path(__file__).resolve().parents[2] / "bad_specs"
HEX = "0123456789abcdef" * 2


@dataclass
class Case:
    path: Path
    expect: str | None = None
    expect_warning: str | None = None
    config: bool = False
    env: dict[str, str] = field(default_factory=dict)
    generate: str | None = None


def read_case(path: Path) -> Case:
    case = Case(path)
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("# "):
            break
        key, _, value = line[2:].partition(": ")
        if key == "expect":
            case.expect = value
        elif key == "expect-warning":
            case.expect_warning = value
        elif key == "check":
            case.config = value == "config"
        elif key == "env":
            name, _, env_value = value.partition("=")
            case.env[name] = env_value
        elif key == "generate":
            case.generate = value.split()[0]
    return case


CASES = sorted(CORPUS.glob("*.yaml"))


def generate_bad_row_manifest(path: Path) -> None:
    """A header, 4,999 good message rows, then 'IM12' on line 5,001."""
    conversation = "CH" + HEX
    with path.open("w", encoding="utf-8") as out:
        out.write("id,conversation_sid\n")
        for index in range(4999):
            out.write(f"IM{HEX[:-5]}{index:05x},{conversation}\n")
        out.write(f"IM12,{conversation}\n")


def load_case(case: Case, tmp_path: Path) -> object:
    path = case.path
    if case.generate is not None:
        path = tmp_path / case.path.name
        shutil.copy(case.path, path)
        generate_bad_row_manifest(tmp_path / case.generate)
    if case.config:
        return load_config(path, case.env)
    return load_spec(path)


def test_corpus_is_large_and_every_case_has_an_expectation() -> None:
    """The corpus holds at least 40 cases, each with one distinct expected message."""
    cases = [read_case(p) for p in CASES]
    assert len(cases) >= 40
    expectations = [c.expect or c.expect_warning for c in cases]
    assert all(expectations), [c.path.name for c in cases if not (c.expect or c.expect_warning)]
    assert len(set(expectations)) == len(expectations)


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in CASES])
def test_bad_input_is_refused_with_its_message(path: Path, tmp_path: Path) -> None:
    """The corpus file raises the right InputError with the expected fragment in a problem."""
    case = read_case(path)
    if case.expect_warning is not None:
        config = load_case(case, tmp_path)
        warnings: tuple[str, ...] = getattr(config, "warnings")  # noqa: B009 -- typed as object
        assert any(case.expect_warning in w for w in warnings), warnings
        return
    expected_error: type[InputError] = ConfigError if case.config else SpecError
    with pytest.raises(expected_error) as info:
        load_case(case, tmp_path)
    problems = info.value.problems
    assert case.expect is not None
    assert any(case.expect in p for p in problems), problems
    assert "Traceback" not in str(info.value)
    assert "pydantic" not in str(info.value)
