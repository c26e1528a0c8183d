"""The request-found line of an erasure (what a request found in each Service before any of it
was deleted): written, replayed, and refused when it names anything but a request's position
or a Service SID."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runner.errors import CheckpointError
from runner.log.records import request_found_record
from runner.log.replay import read_checkpoint
from tests.runner.log.test_checkpoint import write_log
from tests.runner.test_server_replies import sid

S1 = sid("IS", 1)


def test_the_replay_keeps_what_each_request_found_in_each_service(tmp_path: Path) -> None:
    """Each (request, Service) keeps the most it was seen to find; the job's one Service is
    None; a line names the request by position only."""
    records = [
        request_found_record(0, "targets[0]", 5, S1),
        request_found_record(0, "targets[0]", 2, S1),  # a resume that found less
        request_found_record(0, "targets[0]", 3, None),
        request_found_record(1, "targets[1].from_file line 7", 1, None),
    ]
    assert records[0] == {"t": "F", "src": 0, "r": "targets[0]", "n": 5, "sv": S1}
    log = write_log(tmp_path / "log.jsonl", *records)

    replay = read_checkpoint(log)

    assert replay.requests_found == {
        ("targets[0]", S1): 5,
        ("targets[0]", None): 3,
        ("targets[1].from_file line 7", None): 1,
    }
    assert replay.requests == {}  # found, but not listed in full: not settled


@pytest.mark.parametrize(
    ("record", "why"),
    [
        ({"t": "F", "src": 0, "r": "customer-8812", "n": 1}, "erasure request's position"),
        ({"t": "F", "src": 0, "r": "targets[0]", "n": 1, "sv": "IS../x"}, "Service SID"),
        ({"t": "F", "src": 0, "r": "targets[0]", "n": -1}, "not a count"),
    ],
    ids=["position", "service", "count"],
)
def test_a_request_found_line_naming_anything_else_is_refused(
    tmp_path: Path, record: dict[str, Any], why: str
) -> None:
    """A request-found line names a request by position and a Service by SID, or the log is
    refused with the line's number (never quoting what it holds instead)."""
    log = write_log(tmp_path / "log.jsonl", record, request_found_record(0, "targets[0]", 1, None))

    with pytest.raises(CheckpointError, match=r"line 2\b.*" + why) as info:
        read_checkpoint(log)
    assert "customer-8812" not in str(info.value)
