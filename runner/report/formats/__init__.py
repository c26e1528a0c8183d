"""The completion report's formats, one module each, found by name.

Each module in this package that defines ``FORMAT`` (a :class:`ReportFormat`) is a format:
``bulkops report --format`` offers its name, and every run writes ``<log><suffix>`` beside its
checkpoint. Adding a format is adding a module here; nothing else names the formats.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

from runner.log.replay import Replay

__all__ = ["ReportFormat", "ReportWriter", "report_formats"]


class ReportWriter(Protocol):
    """One report being written: a row per target, then the end."""

    def row(self, row: Mapping[str, Any]) -> None:
        """Write one target's row (the fields of :data:`runner.report.completion.REPORT_FIELDS`,
        in that order)."""

    def close(self) -> None:
        """Write whatever ends the document (the stream itself stays open)."""


@dataclass(frozen=True, slots=True)
class ReportFormat:
    """A report format: its name on the command line, the suffix of its file beside the
    checkpoint, and ``start``, which writes the head of a report to a stream and returns the
    writer its rows go to (every format of a run is fed from one pass over the log)."""

    name: str
    suffix: str
    start: Callable[[Replay, TextIO], ReportWriter]


def report_formats() -> dict[str, ReportFormat]:
    """Every format in this package, by name, in order of name."""
    found: dict[str, ReportFormat] = {}
    for module in pkgutil.iter_modules(__path__, f"{__name__}."):
        form = getattr(importlib.import_module(module.name), "FORMAT", None)
        if isinstance(form, ReportFormat):
            found[form.name] = form
    return dict(sorted(found.items()))
