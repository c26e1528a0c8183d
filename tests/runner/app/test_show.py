"""What a job resolves to, shown before it acts and after (issue 14 §1): ``plan``, ``run`` and
the completion report name the account, the host, the Service and each cutoff as written and as
the UTC instant frozen for the run; the JSON report records the frozen cutoffs."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from runner.emulator.settings import DEFAULT_ACCOUNT_SID
from runner.errors import ExitCode
from runner.log.replay import read_checkpoint
from runner.plan.planfile import read_plan
from tests.runner.conftest import checkpoints, point_at, run_cli
from tests.runner.test_run_faults import SUPPORT_SERVICE, job

MESSAGES = """targets:
  - kind: messages
    where: {conversations: all, created_before: 1d}
"""


def z(iso: str) -> str:
    """An ISO instant as bulkops shows it (UTC, with Z)."""
    return iso.replace("+00:00", "Z")


async def test_plan_shows_the_frozen_cutoff_the_account_the_host_and_the_service(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`plan` prints each cutoff as written beside the instant its plan file froze, the
    account, the host and the spec's Service."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        spec = job(workdir, f"service: {SUPPORT_SERVICE}\n" + MESSAGES)
        out = workdir / "p.plan"
        assert await run_cli("plan", spec, "--out", out) == ExitCode.OK
    text = capsys.readouterr().out
    (frozen,) = read_plan(out).header.times.values()
    assert f"targets[0] messages: created_before 1d → before {z(frozen)}" in text
    assert f"account: {DEFAULT_ACCOUNT_SID}" in text
    assert f"host: {emu.url} (conversations)" in text
    assert "(memory)" not in text  # the job lists nothing in Memory
    assert f"Service: {SUPPORT_SERVICE} (the spec's `service:`)" in text


async def test_plan_without_a_service_says_the_default_one_is_listed(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With no `service:`, the plan names the default Service it listed, by the SID the
    account's configuration gives, and how to choose another — the hint a user with
    `total selected: 0` needed."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        assert await run_cli("plan", job(workdir, MESSAGES)) == ExitCode.OK
        default = emu.dataset.default_service.sid
    text = capsys.readouterr().out
    assert f"Service: {default} (the account's default);" in text
    assert "other Services are not listed: to purge one, set `service: IS…` (or `all`)" in text


async def test_a_run_reports_the_cutoffs_it_froze(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`run` says what it resolved to at its start and in its summary, and the JSON report
    beside the log records the cutoffs the header froze, the account and the hosts."""
    async with start_emulator("tiny") as emu:
        point_at(monkeypatch, emu.url)
        spec = job(workdir, f"service: {SUPPORT_SERVICE}\n" + MESSAGES)
        assert await run_cli("run", spec) == ExitCode.OK
    (log,) = checkpoints(workdir)
    header = read_checkpoint(log).header
    assert header.account == DEFAULT_ACCOUNT_SID
    ((path, frozen),) = header.times.items()
    line = f"targets[0] messages: created_before 1d → before {z(frozen)}"
    text = capsys.readouterr().out
    assert text.count(line) == 2  # at the start, and in the summary
    assert text.index("run of job 'job':") < text.index("as resolved when the run began:")
    report = json.loads(log.with_suffix(".report.json").read_text())
    assert report["resolved"] == {
        "job": "job",
        "account_sid": DEFAULT_ACCOUNT_SID,
        "service": SUPPORT_SERVICE,
        "default_service": None,
        "hosts": {"conversations": emu.url},
        "frozen_at": z(header.frozen_now),
        "cutoffs": [
            {
                "field": path,
                "kind": "messages",
                "written": "1d",
                "side": "before",
                "resolved": z(frozen),
            }
        ],
    }


class _Terminal(io.StringIO):
    """Standard input that says it is a terminal, holding the answer a person would type."""

    def isatty(self) -> bool:
        return True


async def test_apply_shows_the_plan_cutoffs_before_it_asks(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`apply` says what the plan resolved to — the cutoffs its file froze, not today's — before
    the confirmation question; a 'no' sends nothing."""
    async with start_emulator("tiny") as emu:
        point_at(monkeypatch, emu.url)
        spec = job(workdir, f"service: {SUPPORT_SERVICE}\n" + MESSAGES)
        plan = workdir / "p.plan"
        assert await run_cli("plan", spec, "--out", plan) == ExitCode.OK
        capsys.readouterr()
        monkeypatch.setattr("sys.stdin", _Terminal("no\n"))
        code = await run_cli("apply", plan, "--confirm-above", "0")
        requests = (await emu.ledger())["requests"]
    assert code == ExitCode.ABORTED
    assert all(r["method"] == "GET" for r in requests)
    (frozen,) = read_plan(plan).header.times.values()
    text = capsys.readouterr().out
    line = f"targets[0] messages: created_before 1d → before {z(frozen)}"
    assert f"apply plan {plan} of job 'job'" in text
    assert text.index(line) < text.index("type yes:")
