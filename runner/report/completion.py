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
from typing import Any, TextIO

import orjson

from runner.kinds.base import ResourceKind
from runner.log.records import TRAFFIC, State, key_hash, kind_of, line_ids, target_key
from runner.log.replay import Replay, iter_target_objects

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

    counts: dict[ResourceKind, Counter[str]]

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
            "by_kind": {r.name: dict(c) for r, c in self.counts.items()},
            "totals": dict(self.totals),
        }


def summarize(replay: Replay) -> Summary:
    """Count the replayed targets by resource and outcome."""
    counts: dict[ResourceKind, Counter[str]] = {}
    for (resource, state), n in replay.counts().items():
        counts.setdefault(resource, Counter())[outcome_name(state)] += n
    return Summary(dict(sorted(counts.items(), key=lambda kv: kv[0].log_index)))


def rows(replay: Replay) -> Iterator[dict[str, Any]]:
    """One completion-report row per target, streamed from the log.

    Every target has exactly one first *requested* line (generation 0) or, if its conversation
    took it along, one *covered* line; that line is where its row is made, with the outcome,
    time, Operation and error that the replay knows — so a report of millions of targets holds
    none of them in memory. Lines are read as plain objects through the records codec (no
    record objects): this runs once per target.
    """
    started = replay.header.started_at
    times: dict[int, str] = {}
    for rec in iter_target_objects(replay.path):
        first = rec["s"] == State.REQUESTED.value and not rec.get("g")
        if not (first or rec["s"] == State.COVERED.value):
            continue
        resource = kind_of(rec["k"])
        kind, prefix = resource.name, target_key(resource, "")
        parent = rec.get("c") or ""
        for one in line_ids(rec):
            id_ = str(one)
            digest = key_hash(prefix + id_)
            latest = replay.latest(digest)
            if latest is None:
                continue
            state, ts = latest
            failure = replay.failed.get(digest) if state is State.FAILED else None
            when = ""
            if state.is_final:
                when = times.get(ts) or times.setdefault(
                    ts, (started + timedelta(seconds=ts)).isoformat().replace("+00:00", "Z")
                )
            yield {
                "id": id_,
                "kind": kind,
                "conversation_sid": parent,
                "outcome": outcome_name(state),
                "operation_id": replay.operations.get(digest, ""),
                "error_code": "" if failure is None or failure.code is None else failure.code,
                "error": (failure.message or "") if failure else "",
                "time": when,
            }


def write_csv(replay: Replay, out: TextIO) -> None:
    """The completion report as CSV with a header row, streamed to ``out``."""
    write_report(replay, csv_out=out)


def write_json(replay: Replay, out: TextIO) -> None:
    """The completion report as one JSON document — the run, its summary and every target, one
    per line — streamed to ``out``, so its size never has to fit in memory."""
    write_report(replay, json_out=out)


def write_report(
    replay: Replay, *, csv_out: TextIO | None = None, json_out: TextIO | None = None
) -> None:
    """The CSV and the JSON report in one pass over the log (a run writes both: reading a log
    of millions of targets twice cost as much as making the rows)."""
    table = None
    if csv_out is not None:
        table = csv.writer(csv_out)
        table.writerow(REPORT_FIELDS)
    if json_out is not None:
        head = {
            "run_id": replay.header.run_id,
            "job": replay.header.job,
            "started": replay.header.started,
            "exit_code": replay.exit_code,
            "summary": summarize(replay).to_json(),
            "traffic": {name: replay.traffic[name] for name in TRAFFIC},
        }
        json_out.write(json.dumps(head, indent=2)[:-2] + ',\n  "targets": [')
    separator = "\n    "
    for row in rows(replay):
        if table is not None:
            table.writerow(row.values())
        if json_out is not None:
            json_out.write(separator + orjson.dumps(row).decode())
            separator = ",\n    "
    if json_out is not None:
        json_out.write("\n  ]\n}\n")


def render_csv(replay: Replay) -> str:
    """The completion report as CSV text."""
    buf = io.StringIO()
    write_csv(replay, buf)
    return buf.getvalue()


def render_json(replay: Replay) -> str:
    """The completion report as JSON text."""
    buf = io.StringIO()
    write_json(replay, buf)
    return buf.getvalue()
