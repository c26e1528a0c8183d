"""What a checkpoint log says: the outcome summary and the completion report (CSV, JSON)."""

from __future__ import annotations

from runner.report.completion import (
    OUTCOMES,
    Summary,
    render_csv,
    render_json,
    summarize,
    write_report,
)

__all__ = ["OUTCOMES", "Summary", "render_csv", "render_json", "summarize", "write_report"]
