"""The completion report as CSV: a header row, then a row per target."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from typing import Any, TextIO

from runner.log.replay import Replay
from runner.report.completion import REPORT_FIELDS
from runner.report.formats import ReportFormat


class CsvReport:
    """A CSV report streamed to ``out``."""

    def __init__(self, _replay: Replay, out: TextIO) -> None:
        self._table = csv.writer(out)
        self._table.writerow(REPORT_FIELDS)

    def row(self, row: Mapping[str, Any]) -> None:
        """One target's row."""
        self._table.writerow(row.values())

    def close(self) -> None:
        """Nothing ends a CSV table."""


FORMAT = ReportFormat("csv", ".report.csv", CsvReport)
