"""A job run from the terminal or unattended: the run, its display, metrics, locks and demo."""

from __future__ import annotations

from runner.app.job import RunResult, execute, plan_targets, start_run

__all__ = ["RunResult", "execute", "plan_targets", "start_run"]
