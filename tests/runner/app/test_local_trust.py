"""Issue 11 §3 for local files: nothing read from a checkpoint, a plan or a spec widens what a
job deletes — judged by the emulator's ledger."""

from __future__ import annotations

import hashlib
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from runner.emulator import EmulatorSettings, running_emulator
from runner.emulator.dataset import dataset_from_mapping
from runner.errors import CheckpointError, ExitCode
from runner.log.records import State
from runner.log.replay import read_checkpoint
from runner.plan.shard import Shard, shard_of, share_deletions
from tests.runner.app.test_interrupt import wait_for_deletions
from tests.runner.conftest import (
    REPO,
    Emulator,
    checkpoints,
    deleted,
    point_at,
    run_cli,
    start_bulkops,
    successful_deletes,
)
from tests.runner.log.test_checkpoint import HEADER, line, log_bytes
from tests.runner.test_run_faults import SUPPORT_SERVICE, job, report_rows

# A messages-only purge that the brake stops on its first page: the page's admitted targets
# are logged as requested and never sent, so the log is unfinished and has open lines.
BRAKED_MESSAGES = f"""service: {SUPPORT_SERVICE}
targets:
  - kind: messages
    where: {{conversations: all}}
limits: {{per_conversation_rate: 3}}
safety: {{max_deletions: 3}}
"""


def append(log: Path, *records: dict[str, Any]) -> None:
    """Lines added to a log by hand, as an editor (or an attacker) would."""
    with log.open("ab") as out:
        for record in records:
            out.write(orjson.dumps(record) + b"\n")


def deletes(ledger: dict[str, Any], since: int = 0) -> list[str]:
    """Paths of the DELETE requests the emulator received after request ``since``."""
    return [r["path"] for r in ledger["requests"][since:] if r["method"] == "DELETE"]


async def braked_run(emu: Emulator, workdir: Path, body: str = BRAKED_MESSAGES) -> Path:
    """An unfinished messages run (exit 3, open lines in its log); returns its log."""
    assert await run_cli("run", job(workdir, body)) == ExitCode.ABORTED
    (log,) = checkpoints(workdir)
    assert read_checkpoint(log).open, "the braked page left requested lines"
    return log


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param("configuration", id="a-configuration-in-a-messages-job"),
        pytest.param("conversation_v2", id="a-v2-conversation-in-a-messages-job"),
        pytest.param("other-service-message", id="a-message-of-a-conversation-not-listed"),
    ],
)
async def test_resume_refuses_a_line_the_spec_does_not_select(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tamper: str,
) -> None:
    """A hand-added requested line for a target outside the spec (another kind, or a message of
    a conversation the spec does not list) makes `resume` exit 2 naming the line; nothing is
    sent, and the target survives."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        listed = [
            c["sid"]
            for c in await emu.resources("conversation_v1")
            if c["service_sid"] == SUPPORT_SERVICE
        ][:2]
        body = BRAKED_MESSAGES.replace("conversations: all", f"conversations: {listed}")
        log = await braked_run(emu, workdir, body)
        if tamper == "configuration":
            victim = (await emu.resources("configuration"))[0]["id"]
            record: dict[str, Any] = {"s": "Q", "k": "cf", "id": victim}
        elif tamper == "conversation_v2":
            victim = (await emu.resources("conversation_v2"))[0]["id"]
            record = {"s": "Q", "k": "c2", "id": victim}
        else:
            message = next(
                m for m in await emu.resources("message") if m["conversation_sid"] not in listed
            )
            victim = message["sid"]
            record = {"s": "Q", "k": "m", "c": message["conversation_sid"], "id": victim}
        append(log, record)
        number = len(log.read_bytes().splitlines())
        seen = len((await emu.ledger())["requests"])
        capsys.readouterr()

        assert await run_cli("resume", log) == ExitCode.BAD_INPUT
        err = " ".join(capsys.readouterr().err.split())
        assert f"line {number}: " in err and victim in err, err
        assert "does not select" in err
        ledger = await emu.ledger()
        assert ledger["requests"][seen:] == [], "nothing at all was sent"
        assert not any(victim in path for path in deletes(ledger))


@pytest.mark.parametrize(
    "where",
    [
        pytest.param("id", id="a-traversal-id"),
        pytest.param("ids", id="a-traversal-id-in-a-grouped-line"),
        pytest.param("c", id="a-traversal-conversation"),
        pytest.param("op", id="a-traversal-operation"),
    ],
)
async def test_resume_refuses_a_line_with_a_traversal_id(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    where: str,
) -> None:
    """An ID that would change the DELETE's path (``../../v2/ControlPlane/Configurations/…``)
    is refused as it is read, even on the last line (it is no torn tail): exit 2, nothing
    sent, the configuration it points at survives."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        log = await braked_run(emu, workdir)
        victim = (await emu.resources("configuration"))[0]["id"]
        traversal = f"../../v2/ControlPlane/Configurations/{victim}"
        good = next(iter(read_checkpoint(log).open.values())).target
        assert good.parent is not None
        records: dict[str, dict[str, Any]] = {
            "id": {"s": "Q", "k": "m", "c": good.parent, "id": traversal},
            "ids": {"s": "Q", "k": "m", "c": good.parent, "ids": [good.id, traversal]},
            "c": {"s": "Q", "k": "m", "c": f"../../v2/ControlPlane/Configurations/{victim}#",
                  "id": good.id},
            "op": {"s": "A", "k": "c2", "id": f"conv_conversation_{'0' * 26}",
                   "op": f"../Configurations/{victim}"},
        }
        append(log, records[where])
        number = len(log.read_bytes().splitlines())
        seen = len((await emu.ledger())["requests"])
        capsys.readouterr()

        assert await run_cli("resume", log) == ExitCode.BAD_INPUT
        err = " ".join(capsys.readouterr().err.split())
        assert f"line {number} was not written by bulkops" in err, err
        ledger = await emu.ledger()
        assert ledger["requests"][seen:] == []
        assert victim in {c["id"] for c in await emu.resources("configuration")}


def reseal(plan: Path, lines: list[bytes]) -> None:
    """Write ``lines`` (header, targets) as a plan with a matching end line: what someone who can
    write the plan, and knows its format, can always do."""
    targets = lines[1:]
    counts: dict[str, int] = {}
    total = 0
    for raw in targets:
        rec = orjson.loads(raw)
        total += len(rec["ids"])
    footer = {
        "t": "end",
        "targets": total,
        "counts": counts,
        "sha256": hashlib.sha256(b"".join(targets)).hexdigest(),
    }
    plan.write_bytes(b"".join(lines) + orjson.dumps(footer) + b"\n")


async def test_apply_refuses_a_plan_entry_of_a_kind_the_spec_does_not_select(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A resealed plan of a messages job with a configuration line added: `apply` exits 2
    naming the line, and sends nothing at all."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        spec = job(workdir, BRAKED_MESSAGES.replace("safety: {max_deletions: 3}\n", ""))
        plan = workdir / "reviewed.plan"
        assert await run_cli("plan", spec, "--out", plan) == ExitCode.OK
        victim = (await emu.resources("configuration"))[0]["id"]
        lines = plan.read_bytes().splitlines(keepends=True)[:-1]
        lines.insert(2, orjson.dumps({"k": "cf", "ids": [victim]}) + b"\n")
        reseal(plan, lines)
        seen = len((await emu.ledger())["requests"])
        capsys.readouterr()

        assert await run_cli("apply", plan) == ExitCode.BAD_INPUT
        err = " ".join(capsys.readouterr().err.split())
        assert f"line 3: configuration {victim}: the job selects no configurations" in err, err
        assert (await emu.ledger())["requests"][seen:] == []
        assert checkpoints(workdir) == []


DAY = 86_400.0


@asynccontextmanager
async def aged_messages(now: float) -> AsyncIterator[tuple[Emulator, dict[float, str]]]:
    """An emulator holding one conversation whose messages are 150 … 10 days old; yields it and
    each message's age (days) → SID."""
    ages = [150, 140, 130, 110, 105, 100, 95, 10, 5]
    stamp = datetime.fromtimestamp(now, UTC)
    dataset = dataset_from_mapping(
        {
            "conversations": [
                {
                    "age_days": 200,
                    "date_updated": (stamp - timedelta(days=1)).isoformat(),
                    "messages": [
                        {
                            "author": "someone",
                            "body": f"message {age}",
                            "date_created": (stamp - timedelta(days=age)).isoformat(),
                        }
                        for age in ages
                    ],
                }
            ]
        },
        now=now,
    )
    async with (
        running_emulator(EmulatorSettings(), dataset) as url,
        aiohttp.ClientSession() as session,
    ):
        emu = Emulator(url, dataset, session)
        messages = sorted(await emu.resources("message"), key=lambda m: m["date_created"])
        yield emu, {float(age): m["sid"] for age, m in zip(ages, messages, strict=True)}


async def test_forced_resume_after_90d_to_120d_spares_the_messages_between(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run of `created_before: 90d` stopped with messages of 110 and 105 days requested, then
    `resume --force` with 120d: only the messages older than 120 days are deleted — none of
    those between the cutoffs, requested in the log or not."""
    async with aged_messages(datetime.now(UTC).timestamp()) as (emu, by_age):
        point_at(monkeypatch, emu.url)
        spec = job(
            workdir,
            "targets:\n  - kind: messages\n"
            "    where: {conversations: all, created_before: 90d}\n"
            "safety: {max_deletions: 5}\n",
        )
        assert await run_cli("run", spec) == ExitCode.ABORTED
        (log,) = checkpoints(workdir)
        requested = {r.target.id for r in read_checkpoint(log).open.values()}
        assert {by_age[110], by_age[105]} <= requested, "the log holds open between-messages"
        assert deletes(await emu.ledger()) == []

        spec.write_text(spec.read_text().replace("90d", "120d").replace("5}", "100}"))
        code = await run_cli("resume", log)
        assert code == ExitCode.BAD_INPUT, "a changed spec still needs --force"
        assert await run_cli("resume", log, "--force") == ExitCode.OK

        ledger = await emu.ledger()
        assert deleted(ledger) == {("message", by_age[age]) for age in (150, 140, 130)}
        assert max(successful_deletes(ledger).values()) == 1
        outcomes = {r["id"]: r["outcome"] for r in report_rows(workdir)}
        assert outcomes[by_age[110]] == outcomes[by_age[105]] == "pending", "not sent, not lost"


@pytest.mark.parametrize("first", [pytest.param("braked", id="braked"), pytest.param("killed")])
async def test_max_deletions_holds_across_a_run_and_two_resumes(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch, first: str
) -> None:
    """safety.max_deletions: 3 is the run's: a run stopped by the brake (or SIGKILLed), then
    resumed twice (`resume`, `run --resume-or-start`), deletes at most 3 in all (ledger)."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        spec = job(workdir, BRAKED_MESSAGES)
        if first == "braked":
            assert await run_cli("run", spec) == ExitCode.ABORTED
        else:
            process = await start_bulkops(["run", str(spec)], workdir)
            async with process:
                await wait_for_deletions(emu, 1, process)
                if process.returncode is None:
                    process.send_signal(signal.SIGKILL)
                await process.wait()
        (log,) = checkpoints(workdir)
        assert await run_cli("resume", log) in (ExitCode.OK, ExitCode.ABORTED)
        assert await run_cli("run", spec, "--resume-or-start") in (ExitCode.OK, ExitCode.ABORTED)
        assert await run_cli("resume", log) in (ExitCode.OK, ExitCode.ABORTED)

        ledger = await emu.ledger()
        assert len(deleted(ledger)) <= 3, sorted(deleted(ledger))
        assert len(deletes(ledger)) <= 3, "no DELETE beyond the cap was even sent"
        assert read_checkpoint(log).admitted() <= 3


@pytest.mark.parametrize(("limit", "count"), [(3, 2), (4, 4), (2, 3), (10, 3), (1, 1)])
def test_shards_split_max_deletions_exactly(limit: int, count: int) -> None:
    """The shards' parts of max_deletions add up to the limit, and differ by at most one."""
    parts = [share_deletions(limit, Shard(i, count)) or 0 for i in range(count)]
    assert sum(parts) == limit
    assert max(parts) - min(parts) <= 1


async def test_shards_together_delete_at_most_max_deletions(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """max_deletions: 3 over --shard 0/2 and 1/2: each shard deletes at most its part (2, 1),
    the job at most 3 (ledger)."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        spec = job(workdir, BRAKED_MESSAGES)
        parents = {m["sid"]: m["conversation_sid"] for m in await emu.resources("message")}
        for index in (0, 1):
            code = await run_cli("run", spec, "--shard", f"{index}/2")
            assert code in (ExitCode.OK, ExitCode.ABORTED)
        logs = checkpoints(workdir)
        for log in logs:
            assert await run_cli("resume", log) in (ExitCode.OK, ExitCode.ABORTED)
        ledger = await emu.ledger()
        gone = [i for kind, i in deleted(ledger) if kind == "message"]
        assert len(gone) <= 3
        for index, part in ((0, 2), (1, 1)):
            mine = [i for i in gone if shard_of(parents[i], 2) == index]
            assert len(mine) <= part, (index, mine)
            (log,) = [p for p in logs if f"shard-{index}-of-2" in p.name]
            assert read_checkpoint(log).admitted() <= part, "nothing beyond its part was logged"
        assert len(checkpoints(workdir)) == 2


async def test_a_duplicate_key_in_a_flow_mapping_is_refused(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`{created_before: 365d, …, created_before: 1d}` exits 2 naming the YAML path and the
    line of each occurrence, before any request (no emulator is even running)."""
    spec = REPO / "tests" / "bad_specs" / "51-duplicate-key-flow-mapping.yaml"
    assert await run_cli("plan", spec) == ExitCode.BAD_INPUT
    err = " ".join(capsys.readouterr().err.split())
    assert "at line 6, column" in err
    assert "targets[0].where.created_before: key 'created_before' appears twice" in err
    assert "first on line 6, column 13" in err


def sid(prefix: str, n: int) -> str:
    """A valid SID numbered ``n``."""
    return f"{prefix}{n:032x}"


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"s": "D", "k": "m", "c": sid("CH", 1), "id": "IM../../x"}, id="bad-id"),
        pytest.param(
            {"s": "D", "k": "m", "c": sid("CH", 1), "ids": [sid("IM", 1), "x/y"]}, id="grouped"
        ),
        pytest.param(
            {"s": "D", "k": "m", "c": sid("CH", 1), "ids": [sid("IM", 1) + "\n" + sid("IM", 2)]},
            id="two-ids-in-one",
        ),
        pytest.param({"s": "Q", "k": "m", "id": sid("IM", 1)}, id="requested-child-no-parent"),
        pytest.param({"s": "Q", "k": "c1", "c": sid("CH", 2), "id": sid("CH", 1)}, id="c-on-v1"),
        pytest.param({"s": "Q", "k": "m", "c": sid("IS", 1), "id": sid("IM", 1)}, id="c-not-ch"),
        pytest.param({"s": "F", "k": "p", "id": sid("MB", 1)}, id="failed-child-no-parent"),
        pytest.param(
            {"s": "A", "k": "ms", "id": "mem_store_" + "0" * 26, "op": "a/b"}, id="op-with-slash"
        ),
        pytest.param({"s": "D", "k": "cf", "id": ["conv_configuration_x"]}, id="id-not-text"),
    ],
)
@pytest.mark.parametrize("last", [pytest.param(True, id="last"), pytest.param(False, id="middle")])
def test_a_line_no_run_writes_is_refused_wherever_it_is(
    tmp_path: Path, bad: dict[str, Any], last: bool
) -> None:
    """A whole line naming an ID of the wrong shape (or a child without its conversation) is
    refused with its number — on the last line too, where a torn tail would be forgiven."""
    path = tmp_path / "run.jsonl"
    good = line({"s": "D", "k": "m", "c": sid("CH", 1), "id": sid("IM", 9)})
    path.write_bytes(log_bytes(header=HEADER) + line(bad) + (b"" if last else good))
    with pytest.raises(CheckpointError, match="line 2 was not written by bulkops"):
        read_checkpoint(path)


def test_valid_lines_still_replay(tmp_path: Path) -> None:
    """The checks refuse nothing a run writes: requested, accepted, deleted and failed lines of
    every kind replay to their states."""
    path = tmp_path / "run.jsonl"
    path.write_bytes(
        log_bytes()
        + line({"s": "Q", "k": "m", "c": sid("CH", 1), "ids": [sid("IM", 1), sid("IM", 2)]})
        + line({"s": "D", "k": "m", "ids": [sid("IM", 1)], "ts": 1})
        + line({"s": "F", "k": "m", "id": sid("IM", 2), "e": 500, "m": "x"})
        + line({"s": "Q", "k": "cf", "id": "cfg_configuration_0" + "a" * 25})
        + line({"s": "A", "k": "cf", "id": "cfg_configuration_0" + "a" * 25, "op": "proc_job_1"})
    )
    replay = read_checkpoint(path)
    assert replay.admitted() == 3
    assert [r.target.parent for r in replay.failed.values()] == [sid("CH", 1)]
    assert [r.state for r in replay.open.values()] == [State.ACCEPTED]



def rewrite_header(log: Path, **changes: Any) -> None:
    """The log's header line with ``changes``, the rest as it was."""
    first, rest = log.read_bytes().split(b"\n", 1)
    header = orjson.loads(first)
    header.update(changes)
    log.write_bytes(orjson.dumps(header) + b"\n" + rest)


@pytest.mark.parametrize("field", [pytest.param("times"), pytest.param("now")])
async def test_resume_refuses_a_header_whose_times_select_more(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    field: str,
) -> None:
    """A header whose frozen cutoff was moved (or whose start was moved into the future, which
    moves every relative cutoff) is refused with exit 2, and nothing is sent."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        body = BRAKED_MESSAGES.replace("all}", "all, created_before: 30d}")
        log = await braked_run(emu, workdir, body)
        future = (datetime.now(UTC) + timedelta(days=3650)).isoformat()
        if field == "times":
            rewrite_header(log, times={"targets[0].where.created_before": future})
        else:
            rewrite_header(log, now=future)
        seen = len((await emu.ledger())["requests"])
        capsys.readouterr()

        assert await run_cli("resume", log) == ExitCode.BAD_INPUT
        err = " ".join(capsys.readouterr().err.split())
        assert "an edited log is not resumed" in err, err
        assert (await emu.ledger())["requests"][seen:] == []


async def test_resume_of_an_apply_checks_every_entry_of_its_plan(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A killed apply whose plan was swapped for a resealed one with a configuration added (and
    the log's digest edited to match): `resume` exits 2 naming the plan's line; the
    configuration survives."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        spec = job(workdir, BRAKED_MESSAGES.replace("safety: {max_deletions: 3}\n", ""))
        plan = workdir / "reviewed.plan"
        assert await run_cli("plan", spec, "--out", plan) == ExitCode.OK
        process = await start_bulkops(["apply", str(plan)], workdir)
        async with process:
            await wait_for_deletions(emu, 1)
            process.send_signal(signal.SIGKILL)
            await process.wait()
        (log,) = checkpoints(workdir)
        victim = (await emu.resources("configuration"))[0]["id"]
        lines = plan.read_bytes().splitlines(keepends=True)[:-1]
        lines.insert(2, orjson.dumps({"k": "cf", "ids": [victim]}) + b"\n")
        reseal(plan, lines)
        rewrite_header(log, plan_sha256=hashlib.sha256(b"".join(lines[1:])).hexdigest())
        seen = len((await emu.ledger())["requests"])
        capsys.readouterr()

        assert await run_cli("resume", log) == ExitCode.BAD_INPUT
        err = " ".join(capsys.readouterr().err.split())
        assert f"line 3: configuration {victim}: the job selects no configurations" in err, err
        assert (await emu.ledger())["requests"][seen:] == []
        assert victim in {c["id"] for c in await emu.resources("configuration")}


@pytest.mark.parametrize(
    "change",
    [
        pytest.param("kind", id="messages-became-participants"),
        pytest.param("conversations", id="conversation-list-narrowed"),
    ],
)
async def test_forced_resume_never_sends_an_open_target_the_new_spec_drops(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    """A braked run's requested messages, then `resume --force` with a spec that no longer
    selects them (another kind, or fewer conversations): none of them is deleted; what the
    new spec selects is."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        log = await braked_run(emu, workdir)
        requested = {r.target.id: r.target.parent for r in read_checkpoint(log).open.values()}
        spared = next(iter(set(requested.values())))
        spec = workdir / "job.yaml"
        text = spec.read_text().replace("safety: {max_deletions: 3}\n", "")
        if change == "kind":
            text = text.replace("kind: messages", "kind: participants")
        else:
            others = sorted(
                c["sid"]
                for c in await emu.resources("conversation_v1")
                if c["service_sid"] == SUPPORT_SERVICE and c["sid"] != spared
            )
            text = text.replace("conversations: all", f"conversations: {others[:2]}")
        spec.write_text(text)

        assert await run_cli("resume", log, "--force") == ExitCode.OK
        ledger = await emu.ledger()
        gone = deleted(ledger)
        assert gone, "the new spec's targets were deleted"
        if change == "kind":
            assert {kind for kind, _ in gone} == {"participant"}
        else:
            kept = {("message", i) for i, parent in requested.items() if parent == spared}
            assert not kept & gone


async def test_force_for_limits_alone_still_refuses_an_edited_line(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--force` after a change of limits only does not make a line outside the (same)
    selection acceptable: exit 2, nothing sent."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        log = await braked_run(emu, workdir)
        victim = (await emu.resources("configuration"))[0]["id"]
        append(log, {"s": "Q", "k": "cf", "id": victim})
        spec = workdir / "job.yaml"
        spec.write_text(spec.read_text().replace("rate: 3", "rate: 4"))
        seen = len((await emu.ledger())["requests"])

        assert await run_cli("resume", log, "--force") == ExitCode.BAD_INPUT
        assert "does not select" in " ".join(capsys.readouterr().err.split())
        assert (await emu.ledger())["requests"][seen:] == []
