"""The completion report as CSV: a header row, then a row per target."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from typing import Any, TextIO

from runner.log.replay import Replay
from runner.report.completion import REPORT_FIELDS
from runner.report.formats import ReportFormat

# A row none of whose cells needs quoting is joined here rather than by the csv module, which
# spends three times as long on it (a run writes one per target at its end: issue 16 §1). The
# same bytes either way: the module's dialect (excel) quotes a cell only when it holds the
# delimiter, the quote or a line break, and ends every row with CRLF.
_TERMINATOR = "\r\n"


class CsvReport:
    """A CSV report streamed to ``out``."""

    def __init__(self, _replay: Replay, out: TextIO) -> None:
        self._table = csv.writer(out, lineterminator=_TERMINATOR)
        self._table.writerow(REPORT_FIELDS)
        self._write = out.write
        self._commas = len(REPORT_FIELDS) - 1

    def row(self, row: Mapping[str, Any]) -> None:
        """One target's row."""
        try:
            line = ",".join(row.values())
        except TypeError:  # a cell that is not text (an error code as a number)
            line = None
        if (
            line is None
            or line.count(",") != self._commas
            or '"' in line
            or "\n" in line
            or "\r" in line
        ):
            self._table.writerow(row.values())
            return
        self._write(line + _TERMINATOR)

    def close(self) -> None:
        """Nothing ends a CSV table."""


FORMAT = ReportFormat("csv", ".report.csv", CsvReport)
