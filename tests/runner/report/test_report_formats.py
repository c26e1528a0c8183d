"""Report formats are found by name: CSV and JSON are two modules of runner/report/formats, and a
module added there is offered by ``bulkops report --format`` and written beside every run."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

import runner.report.formats
from runner.cli import build_parser
from runner.errors import ExitCode
from runner.log.replay import read_checkpoint
from runner.report.completion import REPORT_FIELDS, render
from runner.report.formats import report_formats
from tests.runner.conftest import checkpoints, point_at, run_cli
from tests.runner.test_run_faults import MESSAGE_PURGE, job

# A format of its own, as a newcomer would add one: one module in runner/report/formats.
LINES_FORMAT = '''
from runner.report.formats import ReportFormat


class LinesReport:
    def __init__(self, replay, out):
        self._out = out
        out.write(f"run {replay.header.run_id}\\n")

    def row(self, row):
        self._out.write(f"{row['id']} {row['outcome']}\\n")

    def close(self):
        self._out.write("end\\n")


FORMAT = ReportFormat("lines", ".report.lines", LinesReport)
'''


def format_choices() -> list[str]:
    """What ``bulkops report --format`` accepts."""
    parser = build_parser()
    (commands,) = (a for a in parser._actions if a.dest == "command")
    report = commands.choices["report"]  # type: ignore[index]
    (option,) = (a for a in report._actions if a.dest == "format")
    return list(option.choices or ())


async def purge(emu: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The log of a real run that deleted the demo dataset's messages."""
    point_at(monkeypatch, emu.url)
    assert await run_cli("run", job(workdir, MESSAGE_PURGE)) == ExitCode.OK
    (log,) = checkpoints(workdir)
    return log


def test_the_registry_lists_csv_and_json() -> None:
    forms = report_formats()
    assert {name: form.suffix for name, form in forms.items()} == {
        "csv": ".report.csv",
        "json": ".report.json",
    }
    assert format_choices() == ["csv", "json"]


async def test_each_format_writes_its_file_from_a_real_log(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with start_emulator() as emu:
        log = await purge(emu, workdir, monkeypatch)
    table = list(csv.DictReader(io.StringIO(log.with_suffix(".report.csv").read_text())))
    document = json.loads(log.with_suffix(".report.json").read_text())
    assert table and tuple(table[0]) == REPORT_FIELDS
    assert {r["outcome"] for r in table} == {"deleted"}
    assert [r["id"] for r in table] == [t["id"] for t in document["targets"]]
    assert document["exit_code"] == ExitCode.OK
    replay = read_checkpoint(log)
    for name, form in report_formats().items():
        written = log.with_suffix(form.suffix)
        assert written.stat().st_mode & 0o777 == 0o600
        assert written.read_bytes().decode() == render(name, replay)  # CSV rows end in \r\n
        out = workdir / f"out.{name}"
        assert await run_cli("report", log, "--format", name, "--out", out) == ExitCode.OK
        assert out.read_bytes() == written.read_bytes()


async def test_a_format_module_added_is_offered_and_written(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    extra = tmp_path_factory.mktemp("formats")
    (extra / "lines.py").write_text(LINES_FORMAT)
    monkeypatch.setattr(
        runner.report.formats, "__path__", [*runner.report.formats.__path__, str(extra)]
    )
    monkeypatch.delitem(sys.modules, "runner.report.formats.lines", raising=False)
    assert format_choices() == ["csv", "json", "lines"]

    async with start_emulator() as emu:
        log = await purge(emu, workdir, monkeypatch)
    assert f"report: {log.with_suffix('.report.csv')} (and .report.json, .report.lines)" in (
        capsys.readouterr().out
    )
    lines = log.with_suffix(".report.lines").read_text().splitlines()
    targets = list(csv.DictReader(io.StringIO(log.with_suffix(".report.csv").read_text())))
    assert lines[0] == f"run {read_checkpoint(log).header.run_id}" and lines[-1] == "end"
    assert lines[1:-1] == [f"{r['id']} {r['outcome']}" for r in targets]
    out = workdir / "out.lines"
    assert await run_cli("report", log, "--format", "lines", "--out", out) == ExitCode.OK
    assert out.read_text() == log.with_suffix(".report.lines").read_text()
    monkeypatch.delitem(sys.modules, "runner.report.formats.lines", raising=False)
