"""Reports built from a checkpoint log: a summary table and a completion report (CSV / JSON).

Everything here is derived from the log alone, so ``bulkops report`` on another machine says
exactly what the run said. Rows carry IDs, outcomes and Twilio's error codes — never content.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from runner.catalog import Resource
from runner.checkpoint import Replay, State, TargetRecord, iter_target_lines, key_hash

OUTCOMES = ("deleted", "gone", "covered", "failed", "pending")
REPORT_FIELDS = (
    "id",
    "kind",
    "conversation_sid",
    "outcome",
    "operation_id",
    "error_code",
    "error",
    "time",
)


def outcome_name(state: State) -> str:
    """How a state reads in a report: requested/accepted targets are still pending."""
    return "pending" if state in (State.REQUESTED, State.ACCEPTED) else state.name.lower()


@dataclass(frozen=True)
class Summary:
    """Counts by resource and outcome."""

    counts: dict[Resource, Counter[str]]

    @property
    def totals(self) -> Counter[str]:
        """Counts by outcome over every resource."""
        total: Counter[str] = Counter()
        for c in self.counts.values():
            total.update(c)
        return total

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "by_kind": {r.value: dict(c) for r, c in self.counts.items()},
            "totals": dict(self.totals),
        }


def summarize(replay: Replay) -> Summary:
    """Count the replayed targets by resource and outcome."""
    counts: dict[Resource, Counter[str]] = {}
    for (resource, state), n in replay.counts().items():
        counts.setdefault(resource, Counter())[outcome_name(state)] += n
    return Summary(dict(sorted(counts.items(), key=lambda kv: list(Resource).index(kv[0]))))


def final_records(replay: Replay) -> Iterator[TargetRecord]:
    """Each target's latest state, one record per target, streamed from the log.

    Every target has exactly one first *requested* line (generation 0) or, if its conversation
    took it along, one *covered* line; that line is where its row is made, with the outcome,
    time, Operation and error that the replay knows — so a report of millions of targets holds
    none of them in memory.
    """
    for rec in iter_target_lines(replay.path):
        if not (
            (rec.state is State.REQUESTED and rec.generation == 0) or rec.state is State.COVERED
        ):
            continue
        digest = key_hash(rec.target.key)
        latest = replay.latest(digest)
        if latest is None:
            continue
        state, ts = latest
        failure = replay.failed.get(digest) if state is State.FAILED else None
        yield TargetRecord(
            rec.target,
            state,
            operation=replay.operations.get(digest),
            code=failure.code if failure else None,
            message=failure.message if failure else None,
            ts=ts if state.is_final else None,
        )


def rows(replay: Replay) -> Iterator[dict[str, Any]]:
    """One completion-report row per target."""
    started = replay.header.started_at
    for rec in final_records(replay):
        when = started + timedelta(seconds=rec.ts) if rec.ts is not None else None
        yield {
            "id": rec.target.id,
            "kind": rec.target.resource.value,
            "conversation_sid": rec.target.parent or "",
            "outcome": outcome_name(rec.state),
            "operation_id": rec.operation or "",
            "error_code": "" if rec.code is None else rec.code,
            "error": rec.message or "",
            "time": when.isoformat().replace("+00:00", "Z") if when else "",
        }


def render_csv(replay: Replay) -> str:
    """The completion report as CSV with a header row."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=REPORT_FIELDS)
    writer.writeheader()
    writer.writerows(rows(replay))
    return buf.getvalue()


def render_json(replay: Replay) -> str:
    """The completion report as one JSON document: the run, its summary and every target."""
    doc = {
        "run_id": replay.header.run_id,
        "job": replay.header.job,
        "started": replay.header.started,
        "exit_code": replay.exit_code,
        "summary": summarize(replay).to_json(),
        "targets": list(rows(replay)),
    }
    return json.dumps(doc, indent=2)
