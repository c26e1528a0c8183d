"""The CSV report joins plain rows itself (issue 16 §1): every row must come out exactly as the
csv module writes it, the rows that need quoting included."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from runner.report.completion import REPORT_FIELDS
from runner.report.formats.csv import CsvReport

CH = "CH" + "0" * 32
IM = "IM" + "1" * 32
WHEN = "2026-12-06T02:50:36.888222Z"


def row(**cells: Any) -> dict[str, Any]:
    base = dict.fromkeys(REPORT_FIELDS, "")
    plain = {"id": IM, "kind": "message", "conversation_sid": CH, "outcome": "deleted"}
    return base | plain | {"time": WHEN} | cells


ROWS = [
    row(),
    row(outcome="failed", error_code=20404, error="not found"),  # a number, not text
    row(outcome="failed", error_code="", error="bad, very bad"),  # a comma
    row(outcome="failed", error='a "quoted" word'),  # a quote
    row(outcome="failed", error="two\nlines"),  # line breaks
    row(outcome="failed", error="carriage\rreturn"),
    row(outcome="pending", time=""),
    row(operation_id="op_01h9d8r0vte3hz8tykdj329t7r", error=" spaced "),
]


@pytest.mark.parametrize("cells", ROWS, ids=range(len(ROWS)))
def test_each_row_is_written_as_the_csv_module_writes_it(cells: dict[str, Any]) -> None:
    """Plain rows, and rows with a number, a comma, a quote or a line break in a cell."""
    out = io.StringIO(newline="")
    report = CsvReport(None, out)  # type: ignore[arg-type]  # a CSV report never reads it
    report.row(cells)
    report.close()
    expected = io.StringIO(newline="")
    table = csv.writer(expected)
    table.writerow(REPORT_FIELDS)
    table.writerow(cells.values())
    assert out.getvalue() == expected.getvalue()
    assert list(csv.reader(io.StringIO(out.getvalue(), newline="")))[1] == [
        str(v) for v in cells.values()
    ]
