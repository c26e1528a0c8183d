"""The completion report as one JSON document: the run, its summary, its traffic and every
target, one per line, streamed, so its size never has to fit in memory."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TextIO

import orjson

from runner.log.records import TRAFFIC
from runner.log.replay import Replay
from runner.report.completion import resolved, summarize
from runner.report.formats import ReportFormat


class JsonReport:
    """A JSON report streamed to ``out``."""

    def __init__(self, replay: Replay, out: TextIO) -> None:
        self._out = out
        head: dict[str, Any] = {
            "run_id": replay.header.run_id,
            "job": replay.header.job,
            "started": replay.header.started,
            "exit_code": replay.exit_code,
            # The frozen cutoffs (the instants applied), the Service, the account, the hosts.
            "resolved": resolved(replay).to_json(),
            "summary": summarize(replay).to_json(),
            "traffic": {name: replay.traffic[name] for name in TRAFFIC},
            "loop": replay.loop,  # the event loop of the last process that drove the log
        }
        if replay.requests:
            # Erasure requests, by position in the spec (never by whom they name): one found
            # nowhere is not_found, not failed.
            head["requests"] = [
                {"request": position, "outcome": "found" if found else "not_found", "found": found}
                for position, found in replay.erasure_requests()
            ]
        out.write(json.dumps(head, indent=2)[:-2] + ',\n  "targets": [')
        self._separator = "\n    "

    def row(self, row: Mapping[str, Any]) -> None:
        """One target, on a line of its own."""
        self._out.write(self._separator + orjson.dumps(row).decode())
        self._separator = ",\n    "

    def close(self) -> None:
        """Close the list of targets and the document."""
        self._out.write("\n  ]\n}\n")


FORMAT = ReportFormat("json", ".report.json", JsonReport)
