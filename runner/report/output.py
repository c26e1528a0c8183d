"""The report files beside a checkpoint: one per format, ``<log><suffix>``, mode 0600."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TextIO

from runner.errors import InputError
from runner.files import create_aside
from runner.log.replay import Replay
from runner.report.completion import write_report
from runner.report.formats import ReportFormat, report_formats

__all__ = ["report_paths", "write_report_file", "write_reports"]


def report_paths(log_path: Path) -> dict[ReportFormat, Path]:
    """Where each format's report of the log at ``log_path`` goes."""
    return {form: log_path.with_suffix(form.suffix) for form in report_formats().values()}


def write_reports(log_path: Path, replay: Replay) -> None:
    """The completion report beside the checkpoint, on every exit (mode 0600: it lists IDs).

    Each file is written aside — a new file, created exclusively, never through a link — and
    renamed into place, so a crash leaves the old report or the new one, never half of one, and
    a link planted at either name redirects nothing."""
    paths = report_paths(log_path)
    asides: list[Path] = []
    with contextlib.ExitStack() as stack:
        outs: dict[ReportFormat, TextIO] = {}
        for form, path in paths.items():
            aside, fd = create_aside(path)
            asides.append(aside)
            outs[form] = stack.enter_context(os.fdopen(fd, "w", encoding="utf-8", newline=""))
        write_report(replay, outs)
    for aside, path in zip(asides, paths.values(), strict=True):
        os.replace(aside, path)


def write_report_file(path: Path, text: str) -> None:
    """``text`` written aside (new, 0600, never through a link) and renamed over ``path`` (the
    ``--out`` of ``bulkops report``); InputError if it cannot be."""
    try:
        aside, fd = create_aside(path)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(aside, path)
    except OSError as exc:
        raise InputError(f"cannot write report {path}: {exc.strerror}") from exc
