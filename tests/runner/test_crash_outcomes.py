"""Honest outcomes after a crash: a DELETE re-sent for a target an earlier process of the run had
requested reads 404 and is reported *gone after request*, not *gone* (absent before the run
asked) — judged against the emulator's ledger of who deleted what.

The kill is made certain rather than timed: the emulator applies each DELETE and then holds its
answer (its ``slow`` fault), and the run is SIGKILLed once the deletions have happened, so the
log has the targets' *requested* lines and no answer.
"""

from __future__ import annotations

import csv
import json
import signal
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from runner.emulator import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN
from runner.errors import ExitCode
from runner.log.records import State
from runner.log.replay import read_checkpoint
from tests.runner.conftest import point_at, run_cli, start_bulkops
from tests.runner.test_run_faults import job

DATASET = {
    "conversations": 4,
    "messages_per_conversation": 2,
    "participants_per_conversation": 0,
    "conversations_v2": 0,
    "configurations": 0,
    "stores": 0,
}
HOLD_S = 2.0  # how long the emulator holds each answer of the killed run: the kill's window
SPEC = """service: {service}
targets:
  - kind: conversations
    ids: [{conversations}]
  - kind: messages
    ids: [{messages}]
retry: {{base_delay: 0.05, max_delay: 0.5}}
"""


async def delete_as_someone_else(emu: Any, service: str, message: dict[str, Any]) -> None:
    """Delete a message through the API before the run, as another client would."""
    path = f"/v1/Services/{service}/Conversations/{message['conversation_sid']}/Messages/"
    auth = {"Authorization": aiohttp.encode_basic_auth(DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN)}
    async with emu.session.delete(f"{emu.url}{path}{message['sid']}", headers=auth) as resp:
        assert resp.status == 204


async def live(emu: Any, kind: str) -> set[str]:
    return {r["sid"] for r in await emu.resources(kind)}


async def test_a_delete_resent_after_a_kill_is_gone_after_request_not_gone(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Killed after its conversation DELETEs were applied but before their answers were logged,
    then resumed: those conversations read 404 on the resume and are *gone after request*;
    messages deleted by someone else before the run are *gone*; the rest *deleted* — in the
    CSV and JSON reports, their summary and the table the resume prints, each as the ledger
    says it happened."""
    async with start_emulator(preset="scale", dataset_args=DATASET) as emu:
        point_at(monkeypatch, emu.url)
        service = next(s["sid"] for s in await emu.resources("service") if not s["default"])
        first, second, *rest = sorted(await live(emu, "conversation_v1"))
        messages = [m for m in await emu.resources("message") if m["conversation_sid"] in set(rest)]
        absent, present = messages[:2], messages[2:]
        for message in absent:
            await delete_as_someone_else(emu, service, message)
        began = len((await emu.ledger())["requests"])
        spec = job(
            workdir,
            SPEC.format(
                service=service,
                conversations=f"{first}, {second}",
                messages=", ".join(f"{m['conversation_sid']}/{m['sid']}" for m in messages),
            ),
        )
        log = workdir / "honest.jsonl"

        await emu.configure(fault_slow=1.0, slow_delay_s=HOLD_S)
        process = await start_bulkops(["run", str(spec), "--checkpoint", str(log)], workdir)
        async with process:
            with anyio.fail_after(60):
                # The conversations go first (messages wait for them): once both are deleted,
                # their answers are still held, and the messages not yet requested.
                while {first, second} & await live(emu, "conversation_v1"):  # noqa: ASYNC110
                    await anyio.sleep(0.02)
            process.send_signal(signal.SIGKILL)
            await process.wait()
        killed = read_checkpoint(log)
        assert killed.exit_code is None
        assert {rec.target.id: rec.state for rec in killed.open.values()} == {
            first: State.REQUESTED,
            second: State.REQUESTED,
        }, "killed after the DELETEs were applied, before any answer was logged"

        await emu.configure(fault_slow=0.0)
        capsys.readouterr()
        assert await run_cli("resume", log) == ExitCode.OK
        table = capsys.readouterr().out

        ledger = await emu.ledger()
        by_request = {
            d["id"]: d["request_seq"] for d in ledger["deletions"] if d["via"] == "request"
        }
        resumed_404 = {
            r["path"].rsplit("/", 1)[1]
            for r in ledger["requests"]
            if r["method"] == "DELETE" and r["status"] == 404
        }
        # The ledger: the conversations deleted by the killed run, and read 404 on the resume;
        # the absent messages deleted before the run began, and read 404 at the run's request.
        assert all(by_request[c] > began for c in (first, second))
        assert all(by_request[m["sid"]] <= began for m in absent)
        assert resumed_404 == {first, second} | {m["sid"] for m in absent}
        assert all(m["sid"] in by_request for m in present)

        with log.with_suffix(".report.csv").open() as f:
            outcomes = {row["id"]: row["outcome"] for row in csv.DictReader(f)}
        assert outcomes == {
            first: "gone_after_request",
            second: "gone_after_request",
            **{m["sid"]: "gone" for m in absent},
            **{m["sid"]: "deleted" for m in present},
        }
        report = json.loads(log.with_suffix(".report.json").read_text())
        assert report["summary"]["by_kind"] == {
            "conversation_v1": {"gone_after_request": 2},
            "message": {"gone": 2, "deleted": len(present)},
        }
        assert {t["id"]: t["outcome"] for t in report["targets"]} == outcomes
        assert "gone after" in table and "request" in table, table  # the header, wrapped
