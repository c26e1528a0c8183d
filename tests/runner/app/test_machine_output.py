"""Output for scripts: `-o json` documents checked against their schemas in docs/schemas, and
`--log-format json` putting nothing but JSON on standard output and error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from runner.errors import ExitCode
from tests.runner.app.test_status import interrupted_then_resumed
from tests.runner.conftest import REPO, checkpoints, deleted, point_at, run_cli
from tests.runner.test_run_faults import SUPPORT_SERVICE, job

SCHEMAS = REPO / "docs" / "schemas"
USERS = f"service: {SUPPORT_SERVICE}\ntargets:\n  - {{kind: users, where: {{all: true}}}}\n"


def valid(name: str, document: dict[str, Any]) -> dict[str, Any]:
    """``document``, once it is shown to be a valid ``name`` document by its schema."""
    schema = json.loads((SCHEMAS / f"{name}.json").read_text())
    Draft202012Validator.check_schema(schema)
    Draft202012Validator(schema).validate(document)
    assert document["document"] == name
    return document


def the_document(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """The one JSON document standard output holds (one line, nothing else)."""
    (line,) = capsys.readouterr().out.splitlines()
    document: dict[str, Any] = json.loads(line)
    return document


async def support_users(emu: Any) -> set[str]:
    return {u["sid"] for u in await emu.resources("user") if u["service_sid"] == SUPPORT_SERVICE}


async def test_plan_apply_status_and_summary_documents_match_their_schemas(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """plan → apply → status → report --summary, each with -o json: one document on stdout,
    valid by its schema, saying what the emulator's ledger says."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        users = await support_users(emu)
        spec = job(workdir, USERS)
        plan_file = workdir / "users.plan"

        assert await run_cli("plan", spec, "--out", plan_file, "-o", "json") == ExitCode.OK
        plan = valid("plan", the_document(capsys))
        assert plan["kinds"]["user"]["selected"] == plan["total_selected"] == len(users)
        assert plan["plan_file"] == str(plan_file)
        assert plan["resolved"]["service"] == SUPPORT_SERVICE
        assert {t["id"] for t in plan["kinds"]["user"]["sample"]} <= users

        assert await run_cli("apply", plan_file, "--output", "json") == ExitCode.OK
        ran = valid("run", the_document(capsys))
        assert deleted(await emu.ledger()) == {("user", sid) for sid in users}
        assert ran["exit_code"] == 0 and ran["continue_with"] is None
        assert ran["summary"]["totals"]["deleted"] == len(users)
        (log,) = checkpoints(workdir)
        assert ran["checkpoint"] == str(log)

        assert await run_cli("status", log, "-o", "json") == ExitCode.OK
        status = valid("status", the_document(capsys))
        assert status["state"] == "finished" and status["pid"] is None
        assert status["words"] == f"finished: {len(users)} deleted, 0 failed"

        assert await run_cli("report", log, "--summary", "-o", "json") == ExitCode.OK
        summary = valid("summary", the_document(capsys))
        assert summary["summary"] == ran["summary"]
        assert summary["traffic"]["requests"] == len(users)


async def test_status_document_of_an_interrupted_run(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An interrupted run's status document: stopped, the resume command, the rate over the
    time at work."""
    log = interrupted_then_resumed(workdir / "purge-r1.jsonl")

    assert await run_cli("status", log, "-o", "json") == ExitCode.OK

    status = valid("status", the_document(capsys))
    assert status["state"] == "stopped" and status["exit_code"] == ExitCode.INTERRUPTED
    assert status["continue_with"] == f"bulkops resume {log}"
    assert status["active_seconds"] == 15 and status["remaining"] == 2


def only_json(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """Every line of both streams, each of which must be a JSON object."""
    captured = capsys.readouterr()
    lines = [line for stream in captured for line in stream.splitlines()]
    assert all(line.strip() for line in lines), lines
    parsed = [json.loads(line) for line in lines]
    assert all(isinstance(p, dict) for p in parsed), lines
    return parsed


async def test_json_logs_put_nothing_but_json_on_stdout_and_stderr(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With --log-format json every command (and its errors) writes JSON lines only: the
    tables and sentences a person reads become `table` and `said` events."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        spec = job(workdir, USERS)
        plan_file = workdir / "users.plan"
        as_json = ("--log-format", "json")

        assert await run_cli("plan", spec, "--out", plan_file, *as_json) == ExitCode.OK
        events = only_json(capsys)
        assert {"table", "said"} <= {e["event"] for e in events}
        assert await run_cli("apply", plan_file, *as_json) == ExitCode.OK
        assert "run_finished" in {e["event"] for e in only_json(capsys)}
        (log,) = checkpoints(workdir)

        for argv in (
            ("run", spec),
            ("resume", log),
            ("status", log),
            ("status", spec),
            ("report", log, "--summary"),
            ("report", log, "--format", "json", "--out", workdir / "r.json"),
            ("status", log, "-o", "json"),
            ("prune", "--keep", "1", "--checkpoint-dir", log.parent, "--dry-run"),
        ):
            assert await run_cli(*argv, *as_json) == ExitCode.OK, argv
            only_json(capsys)
        for argv in (("status", workdir / "missing.jsonl"), ("run", job(workdir, "", "bad"))):
            assert await run_cli(*argv, *as_json) == ExitCode.BAD_INPUT
            (event,) = only_json(capsys)
            assert event["event"] == "bad_input" and event["problems"]
        with pytest.raises(SystemExit) as usage:
            await run_cli("status", log, "--no-such-option", *as_json)
        assert usage.value.code == ExitCode.BAD_INPUT
        (event,) = only_json(capsys)
        assert event["event"] == "bad_usage"


async def test_log_file_takes_every_line(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--log-file: the logs go to the file, appended, mode 0600; what a person reads is output,
    not logs, and stays on standard output (as JSON lines with JSON logs)."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        spec = job(workdir, USERS)
        logs = workdir / "bulkops.log"
        for _ in range(2):
            code = await run_cli("run", spec, "--log-file", logs, "--log-format", "json")
            assert code == ExitCode.OK
        out, err = capsys.readouterr()
        assert err == ""
        assert {json.loads(line)["event"] for line in out.splitlines()} == {"said", "table"}
        events = [json.loads(line) for line in logs.read_text().splitlines()]
        assert [e["event"] for e in events].count("run_finished") == 2
        assert logs.stat().st_mode & 0o777 == 0o600

        assert await run_cli("status", spec, "--log-file", workdir) == ExitCode.BAD_INPUT
        assert f"--log-file {workdir}" in capsys.readouterr().err
