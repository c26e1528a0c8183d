"""Every failure is a message: plan, apply and run meet 401s, 404s, refused connections and
timeouts with one line naming the URL and the fix; SIGHUP stops a run like SIGTERM; a closed
standard output changes no exit code."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

import runner.app.job
from runner.errors import ExitCode
from runner.kinds.base import Product
from runner.plan.planner import JobPlan
from runner.spec.config import Config
from runner.wire.client import TwilioClient
from tests.runner.conftest import (
    checkpoints,
    deleted,
    point_at,
    run_cli,
)
from tests.runner.test_run_faults import SUPPORT_SERVICE, job

QUICK_RETRY = "retry: {max_attempts: 2, base_delay: 0.05, max_delay: 0.1}\n"
MESSAGES = (
    f"service: {SUPPORT_SERVICE}\ntargets:\n  - {{kind: messages, where: {{conversations: all}}}}\n"
)
LIST_PATH = f"/v1/Services/{SUPPORT_SERVICE}/Conversations"


def human_lines(stderr: str) -> list[str]:
    """What stderr says to a person: its plain lines, and the text of the `said` events that
    stand for them with JSON logs (the other JSON log lines left out)."""
    said = []
    for line in stderr.splitlines():
        if not line.startswith("{"):
            said += [line] if line.strip() else []
        elif (event := json.loads(line)).get("event") == "said":
            said.append(event["text"])
    return said


def one_line(stderr: str) -> str:
    """The one human line on stderr (asserting there is exactly one and no traceback)."""
    assert "Traceback" not in stderr and "ExceptionGroup" not in stderr
    (line,) = human_lines(stderr)
    return line


def deletes_sent(ledger: dict[str, Any]) -> int:
    """How many DELETE requests reached the emulator."""
    return sum(1 for r in ledger["requests"] if r["method"] == "DELETE")


def closed_port() -> int:
    """A loopback port nothing listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_plan_with_refused_credentials_is_one_line_and_exit_4(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`plan` answered 401 prints one line naming the URL and the credentials to check; exit 4."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", "f" * 32)
        spec = job(workdir, MESSAGES)

        code = await run_cli("plan", spec, "--out", workdir / "p.plan", "--log-format", "json")

        line = one_line(capsys.readouterr().err)
        assert code == ExitCode.AUTH
        assert f"credentials refused (HTTP 401) by {emu.url}{LIST_PATH}" in line
        assert "TWILIO_AUTH_TOKEN" in line and "f" * 32 not in line
        assert not (workdir / "p.plan").exists()
        assert deletes_sent(await emu.ledger()) == 0


async def test_plan_of_an_unknown_service_names_the_404_and_exits_1(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`plan` of a Service the account does not have says so in one line; exit 1."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        unknown = "IS" + "0" * 32
        spec = job(workdir, MESSAGES.replace(SUPPORT_SERVICE, unknown))

        code = await run_cli("plan", spec, "--log-format", "json")

        line = one_line(capsys.readouterr().err)
        assert code == ExitCode.FAILURES
        assert f"HTTP 404 on {emu.url}/v1/Services/{unknown}/Conversations" in line
        assert "no such Service? check `service:`" in line


async def test_plan_against_a_closed_port_is_one_line_and_exit_1(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`plan` that cannot connect names the URL, says "connection refused" and the fix; exit 1."""
    url = f"http://127.0.0.1:{closed_port()}"
    point_at(monkeypatch, url)
    spec = job(workdir, MESSAGES + QUICK_RETRY)

    code = await run_cli("plan", spec, "--log-format", "json")

    line = one_line(capsys.readouterr().err)
    assert code == ExitCode.FAILURES
    assert f"cannot reach {url}{LIST_PATH} (connection refused" in line
    assert "BULKOPS_CONVERSATIONS_URL" in line


async def test_plan_against_a_server_that_never_answers_is_one_line_and_exit_1(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`plan` whose requests time out names the URL and the timeout in one line; exit 1."""

    def client_with_short_timeout(plan: JobPlan, config: Config) -> TwilioClient:
        # The shipped timeout (30 s) has no setting; the real client is built with a short one.
        return TwilioClient(
            {
                Product.CONVERSATIONS: config.base_urls.conversations,
                Product.MEMORY: config.base_urls.memory,
            },
            config.credentials.basic_auth(),
            timeout=0.3,
        )

    monkeypatch.setattr(runner.app.job, "build_client", client_with_short_timeout)
    async with start_emulator(fault_slow=1.0, slow_delay_s=2.0) as emu:
        point_at(monkeypatch, emu.url)
        spec = job(workdir, MESSAGES + QUICK_RETRY)

        code = await run_cli("plan", spec, "--log-format", "json")

        line = one_line(capsys.readouterr().err)
        assert code == ExitCode.FAILURES
        assert f"no answer from {emu.url}{LIST_PATH} within the request timeout" in line


async def test_run_of_an_unknown_service_names_the_listing_failure(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`run` that cannot list its Service says which source failed and why, counts it in the
    summary, exits 1 and does not suggest --retry-failed (nothing failed)."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        unknown = "IS" + "0" * 32
        spec = job(workdir, MESSAGES.replace(SUPPORT_SERVICE, unknown))

        code = await run_cli("run", spec, "--log-format", "json")

        captured = capsys.readouterr()
        assert code == ExitCode.FAILURES
        assert "Traceback" not in captured.err
        lines = human_lines(captured.err)
        assert (
            f"listing source 0 failed: HTTP 404 on {emu.url}/v1/Services/{unknown}/Conversations: "
            "no such Service? check `service:`"
        ) in lines[0]
        assert not any("--retry-failed" in line for line in lines)
        assert "1 source(s) could not be listed" in " ".join(captured.out.split())
        assert deletes_sent(await emu.ledger()) == 0


async def test_apply_with_refused_credentials_names_the_url_and_exits_4(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`apply` whose DELETEs are answered 401 stops with exit 4 and one line naming the URL and
    the resume; nothing is deleted."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        conversation = (await emu.resources("conversation_v1"))[0]["sid"]
        spec = job(
            workdir,
            f"service: {SUPPORT_SERVICE}\ntargets:\n"
            f"  - {{kind: messages, where: {{conversations: [{conversation}]}}}}\n",
        )
        plan = workdir / "p.plan"
        assert await run_cli("plan", spec, "--out", plan) == ExitCode.OK
        capsys.readouterr()
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", "f" * 32)

        code = await run_cli("apply", plan, "--log-format", "json")

        err = capsys.readouterr().err
        (log,) = checkpoints(workdir)
        assert code == ExitCode.AUTH
        assert "Traceback" not in err and "f" * 32 not in err
        line = human_lines(err)[0]
        assert f"credentials refused (HTTP 401) by {emu.url}/v1/Services/{SUPPORT_SERVICE}" in line
        assert f"bulkops resume {log}" in line
        assert deleted(await emu.ledger()) == set()


@pytest.mark.parametrize("command", ["status", "report"])
async def test_status_and_report_of_a_missing_log_are_one_line_and_exit_2(
    workdir: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """`status` and `report` of a log that is not there say so in one line; exit 2."""
    code = await run_cli(command, workdir / "nope.jsonl")

    err = capsys.readouterr().err
    assert code == ExitCode.BAD_INPUT
    assert "Traceback" not in err
    assert "nope.jsonl does not exist" in " ".join(err.split())


async def test_a_closed_stdout_changes_no_exit_code(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`bulkops plan … | head -1`: standard output closed before anything is written leaves
    the exit code 0 and stderr free of tracebacks and BrokenPipe noise."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        spec = job(workdir, MESSAGES)
        read_end, write_end = os.pipe()
        os.close(read_end)  # the reader has gone before the first write: EPIPE, surely
        try:
            with (workdir / "stderr.log").open("wb") as err:
                process = await anyio.open_process(
                    [sys.executable, "-m", "runner", "plan", str(spec), "--log-format", "json"],
                    env=dict(os.environ),
                    cwd=workdir,
                    stdout=write_end,
                    stderr=err,
                )
        finally:
            os.close(write_end)
        async with process:
            with anyio.fail_after(60):
                code = await process.wait()

        stderr = (workdir / "stderr.log").read_text()
        assert code == ExitCode.OK
        assert "Traceback" not in stderr and "BrokenPipe" not in stderr
        assert "Exception ignored" not in stderr


async def test_apply_against_a_closed_port_names_the_url_of_the_failed_deletes(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`apply` whose DELETEs cannot connect records them failed, exits 1, and says in one line
    which URL refused and what to check."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        spec = job(
            workdir,
            f"service: {SUPPORT_SERVICE}\ntargets:\n"
            "  - {kind: messages, where: {conversations: [CHd54c322fe69868c382f734b19fd64d9e]}}\n"
            + QUICK_RETRY,
        )
        plan = workdir / "p.plan"
        assert await run_cli("plan", spec, "--out", plan) == ExitCode.OK
    url = f"http://127.0.0.1:{closed_port()}"
    point_at(monkeypatch, url)
    capsys.readouterr()

    code = await run_cli("apply", plan, "--log-format", "json")

    err = capsys.readouterr().err
    (log,) = checkpoints(workdir)
    assert code == ExitCode.FAILURES
    assert "Traceback" not in err
    first, hint = human_lines(err)
    assert first.startswith(f"the last DELETE that failed: cannot reach {url}/v1/Services/")
    assert "(connection refused, after retries)" in first
    assert hint == f"to continue: bulkops resume --retry-failed {log}"


async def test_a_metrics_port_in_use_is_one_line_and_exit_2(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`run --metrics-port` on a port another process holds stops before any request with one
    line naming the port; exit 2."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        spec = job(workdir, MESSAGES)
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]

            code = await run_cli("run", spec, "--metrics-port", port, "--log-format", "json")

        err = capsys.readouterr().err
        assert code == ExitCode.BAD_INPUT
        assert "Traceback" not in err
        assert f"--metrics-port {port}: cannot listen on 127.0.0.1" in " ".join(err.split())
        assert (await emu.ledger())["requests"] == []
