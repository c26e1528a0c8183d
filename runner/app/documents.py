"""The JSON documents of ``-o json``: one place that builds each, from the objects the text
renderers read (the plan's :class:`~runner.app.job.PlanResult`, a run's
:class:`~runner.app.job.RunResult`, :class:`~runner.app.status.RunStatus`, the replayed log).

Each document is one JSON object on one line of standard output, with ``document`` (its name)
and ``version``; ``docs/schemas/<document>.json`` is its JSON Schema. A field is never renamed
or removed within a version; new fields may appear.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO

import orjson

from runner import __version__
from runner.app.job import PlanResult, RunResult
from runner.app.status import RunStatus
from runner.kinds.registry import KINDS
from runner.log.records import TRAFFIC
from runner.log.replay import Replay
from runner.plan.planner import JobPlan
from runner.report.completion import OUTCOMES, Summary, resolved, summarize
from runner.report.formats import report_formats
from runner.spec.resolved import Resolution

__all__ = [
    "VERSION",
    "plan_document",
    "run_document",
    "status_document",
    "summary_document",
    "write_document",
]

VERSION = 1


def write_document(out: TextIO, document: dict[str, Any]) -> None:
    """``document`` as one line of JSON on ``out``."""
    out.write(orjson.dumps(document).decode() + "\n")
    out.flush()


def _head(name: str) -> dict[str, Any]:
    return {"document": name, "version": VERSION, "bulkops": __version__}


def plan_document(
    plan: JobPlan, result: PlanResult, resolution: Resolution, plan_file: Path | None
) -> dict[str, Any]:
    """``bulkops plan -o json``: what the job resolves to and selects, by kind, with a sample
    of the targets."""
    kinds = {
        kind.name: {
            "selected": result.selected[kind],
            "covered": result.covered[kind],
            "sample": [
                {"id": target.id, "conversation": target.parent}
                for target in result.samples.get(kind, [])
            ],
        }
        for kind in KINDS
        if result.selected[kind] or result.covered[kind]
    }
    return {
        **_head("plan"),
        "job": plan.name,
        "shard": None if plan.shard is None else str(plan.shard),
        "fingerprint": plan.fingerprint,
        "frozen_now": plan.frozen_now,
        "times": dict(plan.times_json),
        "resolved": resolution.to_json(),
        "kinds": kinds,
        "total_selected": sum(result.selected.values()),
        "total_covered": sum(result.covered.values()),
        # Legal holds: how many found targets each kept (by hold: "list", a file's path,
        # "where"), never which.
        "total_held": 0 if result.holds is None else sum(result.holds.kept.values()),
        "holds": {} if result.holds is None else dict(sorted(result.holds.kept.items())),
        "plan_file": None if plan_file is None else str(plan_file),
    }


def _summary(summary: Summary) -> dict[str, Any]:
    """The summary's own JSON, with every outcome counted (zeros too), so a script reads
    ``totals.failed`` without a default."""
    return {
        **summary.to_json(),
        "by_kind": {
            kind.name: {o: counts[o] for o in OUTCOMES} for kind, counts in summary.counts.items()
        },
        "totals": {o: summary.totals[o] for o in OUTCOMES},
    }


def _run(replay: Replay, checkpoint: Path) -> dict[str, Any]:
    header = replay.header
    return {
        "job": header.job,
        "run_id": header.run_id,
        "shard": header.shard,
        "started": header.started,
        "checkpoint": str(checkpoint),
        "exit_code": replay.exit_code,
        "resolved": resolved(replay).to_json(),
        "summary": _summary(summarize(replay)),
        "traffic": {name: replay.traffic[name] for name in TRAFFIC},
        "loop": replay.loop,  # the event loop of the last process that drove the log
    }


def summary_document(replay: Replay, checkpoint: Path) -> dict[str, Any]:
    """``bulkops report LOG --summary -o json``: the outcome counts of a run, from its log."""
    return {**_head("summary"), **_run(replay, checkpoint)}


def status_document(status: RunStatus) -> dict[str, Any]:
    """``bulkops status -o json``: where a run stands (the words of the text, and the facts)."""
    return {
        **_head("status"),
        **_run(status.replay, status.checkpoint),
        "exit_code": status.exit_code,
        "state": status.state,
        "words": status.words,
        "continue_with": status.continue_with,
        "pid": status.pid,
        "operations_pending": status.operations_pending,
        "active_seconds": status.active_seconds,
        "rate_per_second": round(status.rate, 3),
        "sources": status.sources,
        "sources_listed": status.sources_listed,
        "remaining": status.remaining,
        "eta_seconds": None if status.eta_seconds is None else round(status.eta_seconds, 1),
    }


def run_document(result: RunResult, continue_with: str | None) -> dict[str, Any]:
    """``bulkops apply -o json``: how the run ended, its counts, its reports, how to go on."""
    checkpoint = result.checkpoint
    ran = {
        "checkpoint": str(checkpoint),
        "resolved": None,
        "summary": None,
        "traffic": None,
        "loop": None,
    }
    if result.replay is not None:
        ran = _run(result.replay, checkpoint)
    return {
        **_head("run"),
        "job": None,
        "run_id": None,
        "shard": None,
        "started": None,
        **ran,
        "exit_code": int(result.exit_code),
        "message": result.message,
        "discovery_errors": result.discovery_errors,
        "continue_with": continue_with,
        "reports": [str(checkpoint.with_suffix(f.suffix)) for f in report_formats().values()],
    }
