"""What a job resolves to (spec/resolved): built from the canonical spec and the frozen times a
plan or a checkpoint header keeps, so every command says the same, in text and in JSON."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

from runner.kinds.timespec import ResolvedTimes
from runner.spec.jobspec import parse_spec
from runner.spec.resolved import resolution

NOW = datetime(2026, 12, 5, 14, 30, tzinfo=UTC)
HOSTS = {"conversations": "https://conversations.twilio.com", "memory": "https://memory.twilio.com"}
ACCOUNT = "AC" + "0" * 32


def resolve(body: str) -> list[str]:
    spec = parse_spec(textwrap.dedent(body), base_dir=Path("."))
    times = ResolvedTimes.at(spec, NOW).to_json()
    found = resolution(
        spec.name,
        spec.canonical(),
        times,
        frozen_at=NOW.isoformat(),
        hosts=HOSTS,
        account_sid=ACCOUNT,
    )
    return found.lines()


def test_a_relative_cutoff_shows_what_was_written_and_the_instant() -> None:
    """`created_before: 3mo` reads as the calendar instant it froze to; an absolute bound shows
    its instant once; hosts are those of the products the job uses."""
    lines = resolve(
        """\
        version: 1
        name: j
        targets:
          - kind: messages
            where: {conversations: all, created_before: 3mo}
          - kind: configurations
            where: {updated_after: 2026-01-31}
        """
    )
    assert lines == [
        f"account: {ACCOUNT}",
        "host: https://conversations.twilio.com (conversations)",
        "Service: the account's default Conversations Service (/v1/Conversations);",
        "  other Services are not listed: to purge one, set `service: IS…` (or `all`) in the spec",
        "cutoffs (frozen at 2026-12-05T14:30:00Z):",
        "  targets[0] messages: created_before 3mo → before 2026-09-05T14:30:00Z",
        "  targets[1] configurations: updated_after after 2026-01-31T00:00:00Z",
    ]


def test_a_job_outside_any_service_says_nothing_of_one() -> None:
    """Memory stores and v2 conversations are not in a Conversations Service: no Service
    line, and the JSON says so with null."""
    spec = parse_spec(
        "version: 1\nname: j\ntargets:\n  - {kind: memory_stores, where: {all: true}}\n",
        base_dir=Path("."),
    )
    found = resolution("j", spec.canonical(), {}, frozen_at=None, hosts=HOSTS, account_sid=None)
    assert found.service_line() is None
    assert found.to_json() == {
        "job": "j",
        "account_sid": None,
        "service": None,
        "default_service": None,
        "hosts": {"memory": "https://memory.twilio.com"},
        "frozen_at": None,
        "cutoffs": [],
    }


def test_unreadable_frozen_times_are_left_out() -> None:
    """A header is read without trusting it: a time that is not an aware instant is skipped,
    not shown as something it is not."""
    found = resolution(
        "j",
        {"targets": "nonsense"},
        {"targets[0].where.created_before": "yesterday", "x": "2026-01-01T00:00:00"},
        frozen_at="later",
        hosts=None,
        account_sid=None,
    )
    assert found.cutoffs == () and found.frozen_at is None and found.hosts == {}
