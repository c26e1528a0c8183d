"""What a checkpoint log says: the outcome summary and the completion report, in each of the
formats of :mod:`runner.report.formats` (CSV and JSON today)."""

from __future__ import annotations

from runner.report.completion import OUTCOMES, Summary, render, summarize, write_report
from runner.report.formats import ReportFormat, report_formats
from runner.report.output import report_paths, write_reports

__all__ = [
    "OUTCOMES",
    "ReportFormat",
    "Summary",
    "render",
    "report_formats",
    "report_paths",
    "summarize",
    "write_report",
    "write_reports",
]
