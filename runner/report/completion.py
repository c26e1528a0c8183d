"""Reports built from a checkpoint log: a summary table and a completion report, in each of the
formats of :mod:`runner.report.formats`.

Everything here is derived from the log alone, so ``bulkops report`` on another machine says
exactly what the run said. Rows carry IDs, outcomes and Twilio's error codes — never content.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TextIO

from runner.kinds.base import ResourceKind
from runner.log.records import State, key_hash, kind_of, line_ids, target_key
from runner.log.replay import Replay, iter_target_objects
from runner.report.formats import ReportFormat, report_formats
from runner.spec.resolved import Resolution, resolution

# ``gone``: absent (404) at the first DELETE this run sent for it. ``gone_after_request``: absent
# when sent again, after an earlier process of the run had requested it (and stopped before it
# logged the answer, or logged a failure) or an earlier attempt met a fault: most likely this
# run's own delete.
# ``held``: under a legal hold, never deleted; counted, never listed (a row would say what a
# hold holds).
OUTCOMES = ("deleted", "gone", "gone_after_request", "covered", "held", "failed", "pending")
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


_OUTCOME_NAMES = {state: outcome_name(state) for state in State}
_FINAL = frozenset(state for state in State if state.is_final)


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


def resolved(replay: Replay) -> Resolution:
    """What the run resolved to, as its log's header froze it: the cutoffs (the instants the
    run applied, whatever the clock says now), the Service, the account and the hosts."""
    header = replay.header
    return resolution(
        header.job,
        header.canonical_spec,
        header.times,
        frozen_at=header.frozen_now,
        hosts=header.hosts,
        account_sid=header.account,
    )


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
    none of them in memory. A target whose only lines are final ones (a log of an older
    writer) gets its row at the first of them. Lines are read as plain objects through the
    records codec (no record objects): this runs once per target.
    """
    started = replay.header.started_at
    times: dict[int, str] = {}
    # Targets logged by their final line alone (older logs): a row at the first such line.
    unrequested = set(replay.unrequested)
    # Looked up once, not per target: this loop is most of the cost of a run's end.
    latest, failed, operations = replay.latest, replay.failed, replay.operations
    covered, requested = State.COVERED.value, State.REQUESTED.value
    for rec in iter_target_objects(replay.path):
        # A target's own line: its first request, or the covered line that stands for one.
        code = rec["s"]
        own = code == covered or (code == requested and not rec.get("g"))
        if not (own or unrequested):
            continue
        resource = kind_of(rec["k"])
        kind, prefix = resource.name, target_key(resource, "")
        parent = rec.get("c") or ""
        for one in line_ids(rec):
            id_ = str(one)
            digest = key_hash(prefix + id_)
            if not own:
                if digest not in unrequested:
                    continue
                unrequested.discard(digest)
            found = latest(digest)
            if found is None:
                continue
            state, ts = found
            if state is State.HELD:
                continue  # counted in the summary, never listed
            failure = failed.get(digest) if state is State.FAILED else None
            when = ""
            if state in _FINAL:
                when = times.get(ts) or times.setdefault(
                    ts, (started + timedelta(seconds=ts)).isoformat().replace("+00:00", "Z")
                )
            yield {
                "id": id_,
                "kind": kind,
                "conversation_sid": parent,
                "outcome": _OUTCOME_NAMES[state],
                "operation_id": operations.get(digest, "") if operations else "",
                "error_code": "" if failure is None or failure.code is None else failure.code,
                "error": (failure.message or "") if failure else "",
                "time": when,
            }


def write_report(replay: Replay, outs: Mapping[ReportFormat, TextIO]) -> None:
    """A report in each format of ``outs``, to its stream, in one pass over the log (a run
    writes them all: reading a log of millions of targets twice cost as much as making the
    rows)."""
    writers = [form.start(replay, out) for form, out in outs.items()]
    for row in rows(replay):
        for writer in writers:
            writer.row(row)
    for writer in writers:
        writer.close()


def render(name: str, replay: Replay) -> str:
    """The completion report in the format called ``name``, as text."""
    buf = io.StringIO()
    write_report(replay, {report_formats()[name]: buf})
    return buf.getvalue()


def render_csv(replay: Replay) -> str:
    """The completion report as CSV text."""
    return render("csv", replay)


def render_json(replay: Replay) -> str:
    """The completion report as JSON text."""
    return render("json", replay)
