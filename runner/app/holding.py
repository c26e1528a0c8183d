"""The legal holds of a job as a run, a plan or a verification applies them: the spec's
``exclude:`` and the config's ``holds:`` together (issue 13 §1; :mod:`runner.engine.holds`)."""

from __future__ import annotations

from runner.engine.holds import HoldList
from runner.plan.planner import JobPlan
from runner.spec.config import Config
from runner.spec.holds import merge_holds

__all__ = ["hold_list"]


def hold_list(plan: JobPlan, config: Config) -> HoldList | None:
    """A fresh hold list of the job (its hold files read now), or None when nothing is held.

    Hold files are checked again before every DELETE (``interval`` 0): a stat is cheap beside a
    request, and a hold added mid-run must stop the very next DELETE it covers."""
    holds = merge_holds(plan.holds, config.holds)
    return None if holds is None else HoldList.of(holds)
