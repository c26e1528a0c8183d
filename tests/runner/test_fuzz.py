"""Hostile input, byte for byte: every reader raises its own error or nothing (issue #5).

What test_spec.py and test_checkpoint_property.py already fuzz (spec *text* and spec-shaped
data, checkpoint bytes and record-like lines through ``read_checkpoint``) is not repeated here.
This file covers the other doors: spec and config *files* of any bytes (not only UTF-8 text),
manifests of any bytes, ``Retry-After`` and time-bound strings, and the ``status`` and ``report``
commands on any checkpoint — the reader may accept a log the renderers then choke on.

For a longer search: ``HYPOTHESIS_PROFILE=long /work/venv/bin/pytest tests/runner/test_fuzz.py``.
"""

from __future__ import annotations

import contextlib
import io
import math
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.cli import main
from runner.errors import ConfigError, SpecError
from runner.kinds.timespec import parse_bound
from runner.spec.config import load_config
from runner.spec.jobspec import load_spec
from runner.wire.backoff import RETRY_AFTER_CEILING, parse_retry_after
from runner.wire.client import CONCURRENT_REQUESTS, concurrent_requests
from tests.runner.log.test_checkpoint import HEADER, line
from tests.runner.log.test_checkpoint_property import JSON_VALUES, RECORD_LIKE, examples

SPEC_HEAD = b"version: 1\nname: fuzz\ntargets:\n"
ENV = {"TWILIO_ACCOUNT_SID": "AC" + "0" * 32, "TWILIO_AUTH_TOKEN": "t"}


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    """A fresh directory per example (hypothesis reuses a test's fixtures across examples)."""
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def yaml_ish() -> st.SearchStrategy[bytes]:
    """Bytes that are often YAML-shaped: fragments of real specs, glued with random bytes."""
    fragments = st.sampled_from(
        [
            b"version: 1\n",
            b"name: j\n",
            b"targets:\n",
            b"  - kind: messages\n",
            b"    ids: [",
            b"CHe3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3/IM00000000000000000000000000000000",
            b"]\n",
            b"where: {conversations: all}\n",
            b"&a [*a, *a]\n",
            b"!!python/object:os.system\n",
            b"\t",
            b"\xff\xfe",
            b"\x00",
            b"{",
            b"- ",
            b": ",
            b"'",
            b'"',
            b"\n",
        ]
    )
    return st.lists(st.one_of(fragments, st.binary(max_size=12)), max_size=25).map(b"".join)


@examples(300)
@given(content=st.one_of(st.binary(max_size=400), yaml_ish()))
def test_any_bytes_as_a_spec_file_give_a_spec_or_a_spec_error(content: bytes) -> None:
    """A spec file of any bytes (binary, BOMs, NULs, tags, aliases) parses or raises SpecError,
    whose problems are non-empty strings."""
    with scratch() as directory:
        path = directory / "job.yaml"
        path.write_bytes(content)
        try:
            load_spec(path)
        except SpecError as exc:
            assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)


@examples(300)
@given(content=st.one_of(st.binary(max_size=400), yaml_ish()))
def test_any_bytes_as_a_config_file_give_a_config_or_a_config_error(content: bytes) -> None:
    """A config file of any bytes loads or raises ConfigError, never anything else."""
    with scratch() as directory:
        path = directory / "config.yaml"
        path.write_bytes(content)
        try:
            load_config(path, ENV)
        except ConfigError as exc:
            assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        pytest.param("ids.csv", "messages", id="csv-messages"),
        pytest.param("ids.jsonl", "messages", id="jsonl-messages"),
        pytest.param("ids.csv", "conversations", id="csv-conversations"),
        pytest.param("ids.jsonl", "memory_stores", id="jsonl-stores"),
    ],
)
@examples(100)
@given(
    content=st.one_of(
        st.binary(max_size=300),
        st.lists(
            st.sampled_from(
                [
                    b"id,conversation_sid\n",
                    b"id\n",
                    b'{"id": "IM',
                    b'", "conversation_sid": "',
                    b"CH" + b"a" * 32,
                    b"IM" + b"b" * 32,
                    b"mem_store_",
                    b",",
                    b"\n",
                    b"\r\n",
                    b'"',
                    b"\xef\xbb\xbf",
                    b"\x00",
                    b"}\n",
                    b"null\n",
                    b"[1]\n",
                ]
            ),
            max_size=20,
        ).map(b"".join),
    )
)
def test_any_bytes_as_a_manifest_give_a_spec_or_a_spec_error(
    name: str, kind: str, content: bytes
) -> None:
    """A from_file manifest of any bytes is accepted or refused with SpecError by load_spec."""
    with scratch() as directory:
        (directory / name).write_bytes(content)
        path = directory / "job.yaml"
        path.write_bytes(SPEC_HEAD + f"  - {{kind: {kind}, from_file: {name}}}\n".encode())
        with contextlib.suppress(SpecError):
            load_spec(path)


@examples(500)
@given(
    value=st.one_of(
        st.none(),
        st.text(max_size=60),
        st.from_regex(r"\d{1,30}", fullmatch=True),
        st.from_regex(r"\s*0*\d{300,5000}\s*", fullmatch=True),
        st.datetimes(timezones=st.just(UTC)).map(lambda d: d.strftime("%a, %d %b %Y %H:%M:%S GMT")),
        st.from_regex(r"[A-Z][a-z]{2}, \d{1,2} [A-Z][a-z]{2} \d{1,12} \d\d:\d\d:\d\d [+-]\d{4}",
                      fullmatch=True),
    )
)
def test_any_retry_after_gives_a_finite_wait_or_none(value: str | None) -> None:
    """Whatever a server puts in Retry-After, the parsed wait is None or a finite number of
    seconds >= 0 — never an exception, a negative sleep, NaN or infinity."""
    wait = parse_retry_after(value, now=datetime(2026, 1, 1, tzinfo=UTC))
    assert wait is None or (math.isfinite(wait) and wait >= 0)


@pytest.mark.parametrize(
    "value, seconds",
    [
        pytest.param("9" * 400, RETRY_AFTER_CEILING, id="400-digits"),
        pytest.param("1" + "0" * 5000, RETRY_AFTER_CEILING, id="past-int-conversion-limit"),
        pytest.param("0" * 400 + "7", 7.0, id="leading-zeros"),
        pytest.param("1000000000", 1e9, id="31-years"),
    ],
)
def test_huge_retry_after_is_a_finite_wait(value: str, seconds: float) -> None:
    """A Retry-After of hundreds or thousands of digits (an OverflowError in backoff.py once)
    is a finite wait, capped at RETRY_AFTER_CEILING, which retry.max_pause then refuses."""
    assert parse_retry_after(value) == seconds


@examples(500)
@given(
    value=st.one_of(
        st.none(),
        st.text(max_size=40),
        st.from_regex(r"\s*[+-]?\d{0,5000}\s*", fullmatch=True),
    )
)
def test_any_concurrent_requests_header_gives_a_count_or_none(value: str | None) -> None:
    """Whatever a server puts in Twilio-Concurrent-Requests ("²", "-3", 5,000 digits), the one
    reader of that header gives None or a count — never an exception inside a worker."""
    count = concurrent_requests({} if value is None else {CONCURRENT_REQUESTS: value})
    assert count is None or (isinstance(count, int) and 0 <= count < 10**9)


@pytest.mark.parametrize("value", ["²", "1²", "³⁰", "-1", "", "4 2"])
def test_concurrent_requests_that_are_not_a_count_read_as_absent(value: str) -> None:
    """A Twilio-Concurrent-Requests that is not a plain decimal count is no signal: None."""
    assert concurrent_requests({CONCURRENT_REQUESTS: value}) is None


@pytest.mark.parametrize("value", ["²", "1²", "³⁰"])
def test_retry_after_with_superscript_digits_is_treated_as_absent(value: str) -> None:
    """A Retry-After of digits that are not decimal (a broken proxy's, or a hostile one's) is
    malformed, so it reads as absent (None) and the caller falls back to backoff."""
    assert parse_retry_after(value) is None


@examples(500)
@given(text=st.one_of(st.text(max_size=40), st.from_regex(r"-?\d{1,25}[smhdwy]?", fullmatch=True)))
def test_any_time_bound_parses_or_raises_value_error(text: str) -> None:
    """A time bound (``created_before: …``) of any text parses or raises ValueError."""
    with contextlib.suppress(ValueError):
        parse_bound(text)


HEADER_FIELDS = list(HEADER.to_record())


@examples(40)
@given(
    records=st.lists(RECORD_LIKE, max_size=6),
    header_changes=st.dictionaries(st.sampled_from(HEADER_FIELDS), JSON_VALUES),
    tail=st.binary(max_size=40),
)
def test_status_and_report_on_any_checkpoint_exit_0_or_2(
    records: list[dict[str, Any]], header_changes: dict[str, Any], tail: bytes
) -> None:
    """``bulkops status`` and ``bulkops report`` on a log of any record-like lines answer 0 (it
    replayed) or 2 (refused with a message) — never a traceback, whatever the reader let by."""
    with scratch() as directory:
        path = directory / "run.jsonl"
        header = {**HEADER.to_record(), **header_changes}
        path.write_bytes(line(header) + b"".join(line(r) for r in records) + tail)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            codes = [
                main(["status", str(path)]),
                main(["report", str(path), "--format", "json", "--out", str(directory / "r")]),
                main(["report", str(path), "--format", "csv", "--out", str(directory / "r")]),
            ]
        assert set(codes) <= {0, 2}


@pytest.mark.parametrize("started", [None, "yesterday", 12])
def test_report_on_a_header_with_a_bad_start_time_does_not_crash(
    tmp_path: Path, started: object
) -> None:
    """A log whose header has a start time that is not ISO-8601 is refused with exit 2 (or
    reported) by ``bulkops report`` — not a ValueError traceback."""
    path = tmp_path / "run.jsonl"
    target = {"s": "Q", "k": "m", "id": "IM" + "1" * 32, "c": "CH" + "2" * 32}
    path.write_bytes(line({**HEADER.to_record(), "started": started}) + line(target))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = main(["report", str(path), "--format", "csv", "--out", str(tmp_path / "r")])
    assert code in (0, 2)


@pytest.mark.parametrize(
    "record",
    [{"s": []}, {"s": {}}, {"s": "Q", "k": [], "id": "x"}],
    ids=["s-list", "s-object", "k-list"],
)
def test_report_on_a_line_with_unhashable_fields_does_not_crash(
    tmp_path: Path, record: dict[str, Any]
) -> None:
    """A log line whose state or kind is a list or an object is refused (exit 2) or skipped by
    ``bulkops report`` — not a TypeError traceback."""
    path = tmp_path / "run.jsonl"
    path.write_bytes(line(HEADER.to_record()) + line(record))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = main(["report", str(path), "--format", "csv", "--out", str(tmp_path / "r")])
    assert code in (0, 2)
