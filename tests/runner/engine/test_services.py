"""Every Service in one job (`service: all` or a list), end to end: `bulkops run` over real HTTP
against the emulator, judged by its ledger — each Service's selection deleted through its own
paths, nothing outside it touched, and a resume that finishes the rest exactly once without
listing the Services again."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from runner.emulator.dataset import dataset_from_mapping
from runner.emulator.settings import EmulatorSettings
from runner.errors import CheckpointError
from runner.kinds.base import Target
from runner.kinds.registry import by_name
from runner.log.records import (
    State,
    group_records,
    service_listed_record,
    services_record,
    target_record,
)
from runner.log.replay import read_checkpoint
from tests.runner.app.test_interrupt import wait_for_deletions
from tests.runner.conftest import (
    FAST_OPERATIONS,
    checkpoints,
    deleted,
    point_at,
    run_cli,
    serving,
    start_bulkops,
    successful_deletes,
    until_or_ended,
)
from tests.runner.log.test_checkpoint import write_log
from tests.runner.test_crash_matrix import copy_lines
from tests.runner.test_run_faults import job
from tests.runner.test_server_replies import TRAVERSAL, conv, list_server, sid, v1_pages

# Four named Services with two closed conversations each, and the default Service with one.
DATASET = {"preset": "small", "dataset_args": {"services": 4, "plain": 3}}
PURGE = (
    "targets:\n"
    "  - {kind: conversations, where: {state: closed}}\n"
    "  - {kind: participants, where: {conversations: {state: inactive}}}\n"
)


async def selection(emu: Any, services: set[str] | None = None) -> set[tuple[str, str]]:
    """What PURGE selects in ``services`` (all of them when None), as the ledger names it."""
    conversations = [
        c
        for c in await emu.resources("conversation_v1")
        if services is None or c["service_sid"] in services
    ]
    inactive = {c["sid"] for c in conversations if c["state"] == "inactive"}
    return {("conversation_v1", c["sid"]) for c in conversations if c["state"] == "closed"} | {
        ("participant", p["sid"])
        for p in await emu.resources("participant")
        if p["conversation_sid"] in inactive
    }


async def service_of(emu: Any) -> dict[str, str]:
    """Each conversation's Service."""
    return {c["sid"]: c["service_sid"] for c in await emu.resources("conversation_v1")}


def outside(ledger: dict[str, Any], expected: set[tuple[str, str]]) -> list[dict[str, Any]]:
    """Deletions outside ``expected``: neither a selected target nor in a selected (deleted)
    conversation, whose messages and participants go with it."""
    conversations = {sid for kind, sid in expected if kind == "conversation_v1"}
    return [
        d
        for d in ledger["deletions"]
        if (d["kind"], d["id"]) not in expected
        and not (d["via"] == "cascade" and d["conversation_sid"] in conversations)
    ]


def delete_paths_match(ledger: dict[str, Any], services: dict[str, str]) -> None:
    """Every DELETE went to its conversation's own Service's path."""
    paths = [r["path"] for r in ledger["requests"] if r["method"] == "DELETE"]
    assert paths
    for path in paths:
        parts = path.split("/")  # '', v1, Services, IS…, Conversations, CH…, …
        assert parts[2] == "Services" and parts[4] == "Conversations", path
        assert services[parts[5]] == parts[3], path


async def named_services(emu: Any) -> list[str]:
    """The named (not default) Services of the dataset."""
    return sorted(s["sid"] for s in await emu.resources("service") if not s["default"])


async def test_all_services_purge_each_services_selection(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`service: all` lists /v1/Services and deletes the selection of every Service (the
    default one included), each through its own Service's paths, once; nothing else. Users
    (Service-scoped, with a path of their own) are listed and deleted in each Service too."""
    async with start_emulator(**DATASET) as emu:
        point_at(monkeypatch, emu.url)
        users = {u["sid"]: u["service_sid"] for u in await emu.resources("user")}
        expected = await selection(emu) | {("user", sid) for sid in users}
        services = await service_of(emu)
        assert len(set(services.values())) == len(set(users.values())) == 5
        spec = job(workdir, "service: all\n" + PURGE + "  - {kind: users, where: {all: true}}\n")

        assert await run_cli("run", spec) == 0

        ledger = await emu.ledger()
        assert deleted(ledger, "request") == expected
        assert not outside(ledger, expected)
        assert max(successful_deletes(ledger).values()) == 1
        user_paths = [r for r in ledger["requests"] if "/Users/" in r["path"]]
        assert {r["path"] for r in user_paths} == {
            f"/v1/Services/{service}/Users/{sid}" for sid, service in users.items()
        }
        ledger["requests"] = [r for r in ledger["requests"] if r not in user_paths]
        delete_paths_match(ledger, services)
        assert {services[sid] for kind, sid in expected if kind == "conversation_v1"} == set(
            services.values()
        )


async def test_a_list_of_services_leaves_the_others_untouched(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A list of three of the four named Services deletes their selection only: the fourth and
    the default Service are not listed, and nothing of theirs is deleted."""
    async with start_emulator(**DATASET) as emu:
        point_at(monkeypatch, emu.url)
        *chosen, left = await named_services(emu)
        expected = await selection(emu, set(chosen))
        spec = job(workdir, f"service: {chosen}\n" + PURGE)

        assert await run_cli("run", spec) == 0

        ledger = await emu.ledger()
        assert deleted(ledger, "request") == expected
        assert not outside(ledger, expected)
        delete_paths_match(ledger, await service_of(emu) | _services_of_deleted(ledger))
        listed = {r["path"] for r in ledger["requests"] if r["method"] == "GET"}
        assert not [p for p in listed if left in p or p.startswith("/v1/Conversations")]
        assert "/v1/Services" not in listed  # a list is the spec's: nothing to look up
        assert await selection(emu, {left}), "the Service left out still has its selection"


def _services_of_deleted(ledger: dict[str, Any]) -> dict[str, str]:
    """The Service of each conversation a DELETE removed (no longer in the resources)."""
    found: dict[str, str] = {}
    for r in ledger["requests"]:
        parts = r["path"].split("/")
        if r["method"] == "DELETE" and len(parts) > 5:
            found[parts[5]] = parts[3]
    return found


async def test_an_interrupted_all_services_purge_resumes_exactly_once(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped by SIGINT partway, `resume` deletes the rest, each target once, with the Services
    the run froze (no second /v1/Services) and without listing again a Service a source had
    listed in full."""
    async with start_emulator(**DATASET) as emu:
        point_at(monkeypatch, emu.url)
        expected = await selection(emu)
        spec = job(workdir, "service: all\n" + PURGE + "limits: {per_service_rate: 3}\n")
        process = await start_bulkops(["run", str(spec)], workdir, watched=True)
        async with process, anyio.create_task_group() as tg:
            # Stopped once its discovery is done (its `listing_done` log line: every Service
            # listed in full, the log's P lines queued) and two things are deleted: how soon
            # the listings end next to the first deletions is the pace's business, not this
            # test's.
            listed = anyio.Event()
            tg.start_soon(copy_lines, process.stderr, workdir / "stderr.log", listed)
            await until_or_ended(process, listed.wait())
            await wait_for_deletions(emu, 2, process)
            process.send_signal(signal.SIGINT)
            with anyio.fail_after(10):
                assert await process.wait() == 130
        first = await emu.ledger()
        assert deleted(first, "request") < expected
        assert [r for r in first["requests"] if "State=closed" in r["query"]]
        (log,) = checkpoints(workdir)
        lines = [orjson.loads(line) for line in log.read_bytes().splitlines()]
        frozen = [line["sv"] for line in lines if line.get("t") == "S"]
        assert len(frozen) == 1 and len(frozen[0]) == 5
        finished = {
            (line["src"], line["sv"]) for line in lines if line.get("t") == "P" and "sv" in line
        }

        assert await run_cli("resume", log) == 0

        ledger = await emu.ledger()
        assert deleted(ledger, "request") == expected
        assert not outside(ledger, expected)
        assert max(successful_deletes(ledger).values()) == 1
        again = ledger["requests"][len(first["requests"]) :]
        assert "/v1/Services" not in {r["path"] for r in again}
        # The closed conversations (source 0) were listed in full in every Service before the
        # interruption: none of those listings is made again.
        assert {sv for src, sv in finished if src == 0} == set(frozen[0])
        assert not [r for r in again if "State=closed" in r["query"]]


async def test_plan_counts_each_service_and_apply_deletes_exactly_the_plan(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`bulkops plan` of a job of several Services counts each Service's targets; its plan file
    names each target's Service, and `apply` deletes exactly that list through those paths."""
    # No conversation in the default Service: its row shows 0.
    async with start_emulator("small", dataset_args={"services": 4, "plain": 0}) as emu:
        point_at(monkeypatch, emu.url)
        chosen = (await named_services(emu))[:2]
        expected = await selection(emu, set(chosen))
        services = await service_of(emu)
        empty = {s["sid"] for s in await emu.resources("service") if s["default"]}
        listed = [*chosen, *empty]
        spec, plan = job(workdir, f"service: {listed}\n" + PURGE), workdir / "purge.plan"

        assert await run_cli("plan", spec, "--out", plan) == 0

        rows = {
            cells[0]: cells[1:]
            for line in capsys.readouterr().out.splitlines()
            if len(cells := [c.strip() for c in line.strip("│ ").split("│")]) == 3
            and cells[0].startswith("IS")
        }
        parents = {p["sid"]: p["conversation_sid"] for p in await emu.resources("participant")}
        per_service = Counter(
            services[sid if kind == "conversation_v1" else parents[sid]] for kind, sid in expected
        )
        assert rows == {sv: [str(per_service[sv]), "0"] for sv in listed}
        assert not (await emu.ledger())["deletions"]
        entries = [orjson.loads(line) for line in plan.read_bytes().splitlines()[1:-1]]
        assert {e["sv"] for e in entries} == set(chosen)

        assert await run_cli("apply", plan) == 0

        ledger = await emu.ledger()
        assert deleted(ledger, "request") == expected
        delete_paths_match(ledger, services)


async def test_a_resumed_log_naming_another_service_is_refused(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A log line moved to a Service the job does not list is refused on resume (exit 2),
    nothing sent: a log is trusted for progress, never for where to delete."""
    async with start_emulator(**DATASET) as emu:
        point_at(monkeypatch, emu.url)
        *chosen, left = await named_services(emu)
        spec = job(workdir, f"service: {chosen}\n" + PURGE + "safety: {max_deletions: 1}\n")
        assert await run_cli("run", spec) == 3  # the brake: requested lines left open
        (log,) = checkpoints(workdir)
        text = log.read_text()
        assert '"sv":"IS' in text
        for service in chosen:
            text = text.replace(service, left)
        log.write_text(text)
        sent = len((await emu.ledger())["requests"])

        assert await run_cli("resume", log, "--force") == 2

        assert f"its Service {left} is not one the job lists" in capsys.readouterr().err
        assert len((await emu.ledger())["requests"]) == sent


async def test_a_service_listed_with_a_bad_sid_is_left_out_and_the_run_exits_1(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """/v1/Services is untrusted: a Service whose SID is not one (a path traversal) is never put
    in a URL; the valid Services are purged, a repeated one once, and the run exits 1 naming
    /v1/Services."""
    good = sid("IS", 7)
    services = [[{"sid": good}, {"sid": "IS" + TRAVERSAL}], [{"sid": good}]]
    conversations = f"/v1/Services/{good}/Conversations"
    async with list_server(
        {
            "/v1/Services": v1_pages("services", services),
            conversations: v1_pages("conversations", [[conv(1)]]),
        }
    ) as server:
        point_at(monkeypatch, server.url)
        spec = job(workdir, "service: all\n" + PURGE.split("  - {kind: participants")[0])

        assert await run_cli("run", spec) == 1

    assert server.deletes() == {f"{conversations}/{sid('CH', 1)}"}
    assert server.gets(conversations) == 1
    assert all("../" not in path for _method, path in server.received)
    err = capsys.readouterr().err
    assert "/v1/Services: 1 item with an invalid id" in err and "cannot reach" not in err


async def test_a_resume_still_reports_the_services_the_frozen_listing_left_out(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The Services are frozen when the job begins and never listed again, so a resume of a run
    whose /v1/Services reply held a bad SID ends 1 as the run did, not 0 as if all were done."""
    good = sid("IS", 7)
    services = [[{"sid": good}, {"sid": "IS" + TRAVERSAL}]]
    conversations = f"/v1/Services/{good}/Conversations"
    async with list_server(
        {
            "/v1/Services": v1_pages("services", services),
            conversations: v1_pages("conversations", [[conv(1)]]),
        }
    ) as server:
        point_at(monkeypatch, server.url)
        spec = job(workdir, "service: all\n" + PURGE.split("  - {kind: participants")[0])
        assert await run_cli("run", spec) == 1
        (log,) = checkpoints(workdir)
        capsys.readouterr()
        sent = len(server.received)

        assert await run_cli("resume", log) == 1

        assert len(server.received) == sent  # nothing left to list or delete
    assert '"rj":1' in log.read_text()
    err = capsys.readouterr().err
    assert "/v1/Services: 1 left out when the job began" in err and "cannot reach" not in err


async def test_a_listed_service_that_does_not_exist_fails_alone(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listed Service the account does not have (404) ends the sources as discovery errors,
    exit 1; the other Services' selections are still deleted."""
    async with start_emulator(**DATASET) as emu:
        point_at(monkeypatch, emu.url)
        chosen = (await named_services(emu))[:1]
        expected = await selection(emu, set(chosen))
        spec = job(workdir, f"service: [{chosen[0]}, IS{'0' * 32}]\n" + PURGE)

        assert await run_cli("run", spec) == 1

        ledger = await emu.ledger()
        assert deleted(ledger, "request") == expected


# -- the log: each target's Service, the frozen Services, the Services listed -------------------

S1, S2 = sid("IS", 1), sid("IS", 2)
CONVERSATION_V1 = by_name("conversation_v1")
MESSAGE = by_name("message")


def test_the_log_keeps_each_targets_service_through_grouping_and_later_lines(
    tmp_path: Path,
) -> None:
    """A requested line names the target's Service (grouped per Service); later lines leave it
    out, and the replay keeps it from the requested line for a resume to drive."""
    open_ = [Target(CONVERSATION_V1, sid("CH", n), None, S1) for n in (1, 2)]
    other = Target(MESSAGE, sid("IM", 3), sid("CH", 3), S2)
    done = Target(CONVERSATION_V1, sid("CH", 4), None, S2)
    records = group_records(
        [target_record(t, State.REQUESTED) for t in (*open_, other, done)]
        + [target_record(done, State.DELETED, ts=1, with_parent=False)]
        + [services_record([S1, S2]), service_listed_record(0, S1)]
    )
    assert [r.get("sv") for r in records[:3]] == [S1, S2, S2]
    assert records[3]["s"] == "D" and "sv" not in records[3]
    log = write_log(tmp_path / "log.jsonl", *records)

    replay = read_checkpoint(log)

    assert {r.target for r in replay.open.values()} == {*open_, other}
    assert replay.services == (S1, S2)
    assert replay.services_listed == {0: {S1}}


@pytest.mark.parametrize(
    "record",
    [
        {"s": "Q", "k": "c1", "id": sid("CH", 1), "sv": "IS../../v2/ControlPlane"},
        {"s": "Q", "k": "c1", "ids": [sid("CH", 1)], "sv": sid("CH", 2)},
        {"t": "S", "sv": [S1, "../x"]},
        {"t": "P", "src": 0, "sv": 7, "done": True},
    ],
    ids=["requested", "grouped", "services", "listed"],
)
def test_a_line_naming_no_service_sid_is_refused(tmp_path: Path, record: dict[str, Any]) -> None:
    """A Service in a log goes into a path on resume: anything but a Service SID is refused
    with the line's number, even as the last line."""
    log = write_log(tmp_path / "log.jsonl", record)

    with pytest.raises(CheckpointError, match=r"line 2 was not written by bulkops.*Service SID"):
        read_checkpoint(log)


@pytest.mark.parametrize("rejected", [-1, "1", 1.5, True, 10**7])
def test_a_services_line_with_a_bad_left_out_count_is_refused(
    tmp_path: Path, rejected: object
) -> None:
    """The count of Services the frozen listing left out decides a resume's exit code: only a
    plain count bulkops could have written is read."""
    log = write_log(tmp_path / "log.jsonl", {"t": "S", "sv": [S1], "rj": rejected})

    with pytest.raises(CheckpointError, match=r"line 2 was not written by bulkops"):
        read_checkpoint(log)


def test_a_services_line_without_a_left_out_count_reads_as_none_left_out(tmp_path: Path) -> None:
    """Logs written before the count was recorded resume as before."""
    replay = read_checkpoint(write_log(tmp_path / "log.jsonl", {"t": "S", "sv": [S1, S2]}))

    assert replay.services == (S1, S2) and replay.services_rejected == 0


async def test_a_service_with_fewer_pages_listed_still_gets_its_rate(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two Services at 50 conversation deletes/s each, one with three pages of closed
    conversations queued and one with a single page: the single page's Service runs at its own
    rate from the start, not at the share of the workers its one page draws while the other's
    three hold them in slots booked ahead (taken by page in turn, as before: a quarter of the
    picks, its last delete the 333rd of 400 answers, not about the 200th). Judged by the
    ledger's order of answers, so a busy machine slows both alike."""
    services = [{"name": "one"}, {"name": "two"}]
    # The big one is the Service /v1/Services lists first: its first page is then queued
    # first, and every worker books a slot of it before the small one's page comes.
    big, small_name = (s.friendly_name for s in sorted(
        (s for s in dataset_from_mapping({"services": services}).services if not s.is_default),
        key=lambda s: s.sid))
    dataset = dataset_from_mapping({
        "services": services,
        "conversations": [{"service": big, "state": "closed"}] * 300
        + [{"service": small_name, "state": "closed"}] * 100,
    })
    settings: dict[str, Any] = {**FAST_OPERATIONS, "service_aps": 50.0}
    async with serving(EmulatorSettings(**settings), dataset) as emu:
        point_at(monkeypatch, emu.url)
        per_service = Counter(c["service_sid"] for c in await emu.resources("conversation_v1"))
        (small, _), = [item for item in per_service.items() if item[1] == 100]
        spec = job(workdir, "service: all\n"
                   "targets:\n  - {kind: conversations, where: {state: closed}}\n"
                   "limits: {per_service_rate: 50}\n")

        assert await run_cli("run", spec) == 0

        order = [r["path"].split("/")[3] for r in (await emu.ledger())["requests"]
                 if r["method"] == "DELETE" and r["status"] == 204]
    assert len(order) == 400 and order.count(small) == 100
    # At 50/s each, the small Service's last delete comes about 200th (each has sent ~100).
    last = max(i for i, service in enumerate(order) if service == small)
    assert last < 270, f"the small Service's last delete was the {last + 1}th of 400"
