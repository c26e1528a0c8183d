"""Erasure in every Service of one job (`kind: identity` with `service: all` or a list), end to
end: `bulkops run`, `resume` and `verify` over real HTTP against the emulator, judged by its
ledger and resources — exactly the person's messages, participations and Users in each Service,
each deleted once through its own Service's path, nothing of anybody else — with no identity or
address in any log line, checkpoint, report, metric or output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runner.emulator import Dataset
from tests.runner.conftest import (
    REPO,
    checkpoints,
    deleted,
    interrupted_then_resumed,
    point_at,
    run_cli,
    start_bulkops,
    successful_deletes,
)
from tests.runner.kinds.test_identity_kind import (
    TWO_SERVICES,
    artifacts,
    everything_of,
    phones,
    regular,
    support_services,
)
from tests.runner.test_crash_matrix import drive
from tests.runner.test_run_faults import job
from tests.runner.test_server_replies import list_server, sid, v1_pages

MISSING_SERVICE = "IS" + "0" * 31 + "9"  # a well-formed SID that is not the account's


def everywhere(dataset: Dataset, authors: set[str]) -> set[tuple[str, str]]:
    """(kind, id) of every message, participation and User of ``authors``, in every Service."""
    return set().union(*(everything_of(dataset, s.sid, authors) for s in dataset.services))


def events(err: str) -> list[dict[str, Any]]:
    """The JSON log lines of a run's standard error."""
    return [json.loads(x) for x in err.splitlines() if x.startswith("{")]


def delete_services(ledger: dict[str, Any]) -> dict[str, str]:
    """The Service each DELETE went to, by the ID it deleted."""
    found: dict[str, str] = {}
    for request in ledger["requests"]:
        if request["method"] == "DELETE":
            parts = request["path"].split("/")  # '', v1, Services, IS…, …
            assert parts[2] == "Services", request["path"]
            found[parts[-1]] = parts[3]
    return found


def service_of_each(dataset: Dataset) -> dict[str, str]:
    """The Service each of the dataset's messages, participants and Users lives in."""
    found = {u.sid: u.service_sid for u in dataset.users}
    for conv in dataset.conversations:
        found |= {p.sid: conv.service_sid for p in conv.participants}
        found |= {
            dataset.message_sids.sid(conv.no, i): conv.service_sid
            for i in range(conv.message_count)
        }
    return found


async def test_one_request_erases_a_person_in_twenty_conversations_of_two_services(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One job with `service: all` looks the person up in every Service at once and deletes
    exactly their messages, participations and Users in each, each once and through its own
    Service's path, and nothing of anybody else; `verify` then proves it (exit 0); no identity
    or address reaches a log line, the checkpoint, a report, the metrics or the verify file."""
    async with start_emulator(**TWO_SERVICES) as emu:
        point_at(monkeypatch, emu.url)
        person, addresses = regular(emu.dataset), phones(emu.dataset)
        them = {person, *addresses}
        services = support_services(emu.dataset)
        convs = {c.sid for c in emu.dataset.conversations if c.service_sid in services}
        assert len(convs) == 20 and len(services) == 2
        expected = everywhere(emu.dataset, them)
        assert {k for k, _ in expected} == {"message", "participant", "user"}
        users = {i for k, i in expected if k == "user"}
        assert len(users) == 2  # a User in each Service
        before = {
            kind: {r.get("sid") for r in await emu.resources(kind)}
            for kind in ("message", "participant", "user", "conversation_v1")
        }
        target = f"  - {{kind: identity, identities: [{person}], addresses: {addresses}}}\n"
        spec = job(workdir, f"service: all\ntargets:\n{target}", "erase-all")
        prom = workdir / "metrics" / "bulkops.prom"
        prom.parent.mkdir()

        code = await run_cli(
            "run", spec, "--log-format", "json", "--log-level", "debug",
            "--metrics-textfile", prom,
        )  # fmt: skip

        assert code == 0
        ledger = await emu.ledger()
        assert deleted(ledger) == expected
        assert max(successful_deletes(ledger).values()) == 1
        home = service_of_each(emu.dataset)
        assert delete_services(ledger) == {i: home[i] for _k, i in expected}
        for kind, sids in before.items():
            gone = {i for k, i in expected if k == kind}
            assert {r.get("sid") for r in await emu.resources(kind)} == sids - gone
        out, err = capsys.readouterr()
        verdicts = [e for e in events(err) if e["event"].startswith("erasure_request")]
        assert [(e["event"], e["request"]) for e in verdicts] == [
            ("erasure_request_found", "targets[0]")
        ]
        assert verdicts[0]["found"] == len(convs) + len(users)

        (log,) = checkpoints(workdir)
        assert await run_cli("verify", log) == 0
        document = json.loads(log.with_suffix(".verify.json").read_text())
        assert document["verified"] is True and document["remaining"] == []
        assert document["checked"] == len(expected)
        fetched = [
            r for r in (await emu.ledger())["requests"] if r["seq"] > ledger["requests"][-1]["seq"]
        ]
        gets = {r["path"].split("/")[-1]: r for r in fetched if r["path"].split("/")[-1] in home}
        assert {i: r["path"].split("/")[3] for i, r in gets.items()} == {
            i: home[i] for _k, i in expected
        }
        assert {r["status"] for r in gets.values()} == {404}
        out2, err2 = capsys.readouterr()
        text = artifacts(workdir) + out + err + out2 + err2
        assert prom.read_text() and not [x for x in them if x in text]


FOUR_SERVICES = {
    "preset": "small",
    "dataset_args": {
        "services": 4,
        "service_conversations": 5,
        "plain": 2,
        "regulars": 1,
        "regular_phones": True,
    },
}


async def test_an_erasure_over_four_services_and_the_default_one_is_exact_and_verified(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A person in the conversations of four Services and of the default one, erased by one
    `service: all` request: exactly their targets go, in all five Services, each once; verify
    exits 0 having looked in the five."""
    async with start_emulator(**FOUR_SERVICES) as emu:
        point_at(monkeypatch, emu.url)
        person, addresses = regular(emu.dataset), phones(emu.dataset)
        expected = everywhere(emu.dataset, {person, *addresses})
        home = service_of_each(emu.dataset)
        assert len({home[i] for _k, i in expected}) == 5
        spec = job(
            workdir,
            "service: all\ntargets:\n"
            f"  - {{kind: identity, identities: [{person}], addresses: {addresses}}}\n",
            "erase-four",
        )

        assert await run_cli("run", spec) == 0

        ledger = await emu.ledger()
        assert deleted(ledger) == expected
        assert max(successful_deletes(ledger).values()) == 1
        assert delete_services(ledger) == {i: home[i] for _k, i in expected}
        (log,) = checkpoints(workdir)
        assert await run_cli("verify", log) == 0
        document = json.loads(log.with_suffix(".verify.json").read_text())
        assert len(document["listing"]["services"]) == 5
        assert document["checked"] == len(expected)


async def test_a_request_is_not_found_only_when_no_service_has_it(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """In a job of two Services, a request found in only one of them is found (and erased
    there), one found in both is found, and one found in neither is not_found — one verdict per
    request, not one per Service — and the run exits 0."""
    async with start_emulator(**TWO_SERVICES) as emu:
        point_at(monkeypatch, emu.url)
        person = regular(emu.dataset)
        first, second = support_services(emu.dataset)
        # A one-off chat identity of the second Service only.
        once = next(
            p.identity
            for c in emu.dataset.conversations
            if c.service_sid == second
            for p in c.participants[1:]
            if p.identity
        )
        (workdir / "requests.csv").write_text(
            f"identity,address\nnobody-at-all-4711,\n{once},\n{person},\n"
        )
        spec = job(
            workdir,
            f"service: [{first}, {second}]\n"
            "targets:\n  - {kind: identity, from_file: requests.csv, delete: [messages, user]}\n",
            "erase-list",
        )

        assert await run_cli("run", spec, "--log-format", "json") == 0

        out, err = capsys.readouterr()
        where = "targets[0].from_file line"
        verdicts = sorted(
            (e["event"], e["request"])
            for e in events(err)
            if e["event"].startswith("erasure_request")
        )
        assert verdicts == [
            ("erasure_request_found", f"{where} 3"),
            ("erasure_request_found", f"{where} 4"),
            ("erasure_request_not_found", f"{where} 2"),
        ]
        expected = {
            t for t in everywhere(emu.dataset, {once, person}) if t[0] in ("message", "user")
        }
        assert deleted(await emu.ledger()) == expected
        (log,) = checkpoints(workdir)
        report = json.loads(log.with_suffix(".report.json").read_text())
        assert [(r["request"], r["outcome"]) for r in report["requests"]] == [
            (f"{where} 2", "not_found"),
            (f"{where} 3", "found"),
            (f"{where} 4", "found"),
        ]
        assert "erasure requests: 3, 2 found" in " ".join(out.split())
        assert "nobody-at-all-4711" not in artifacts(workdir) + out + err
        assert once not in artifacts(workdir) + out + err


async def test_an_interrupted_erasure_in_two_services_resumes_without_repeats(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped by SIGINT partway, an erasure over two Services exits 130; `resume` erases the
    rest in both, each target deleted once, and `verify` passes."""
    async with start_emulator(**TWO_SERVICES) as emu:
        point_at(monkeypatch, emu.url)
        person, addresses = regular(emu.dataset), phones(emu.dataset)
        expected = everywhere(emu.dataset, {person, *addresses})
        spec = job(
            workdir,
            "service: all\ntargets:\n"
            f"  - {{kind: identity, identities: [{person}], addresses: {addresses}}}\n"
            "limits: {per_conversation_rate: 2, per_service_rate: 2}\n",
            "erase-resume",
        )
        log = await interrupted_then_resumed(emu, spec, workdir, expected)
        assert await run_cli("verify", log) == 0
        assert person not in artifacts(workdir)


async def test_plan_counts_the_persons_targets_in_each_service_and_deletes_nothing(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`bulkops plan` of an erasure over every Service sends GETs only, counts the person's
    targets (all of them, as the run would delete them) and names each Service with its count,
    never the person."""
    async with start_emulator(**TWO_SERVICES) as emu:
        point_at(monkeypatch, emu.url)
        person = regular(emu.dataset)
        expected = everywhere(emu.dataset, {person})
        per_service: dict[str, int] = {}
        home = service_of_each(emu.dataset)
        for _k, i in expected:
            per_service[home[i]] = per_service.get(home[i], 0) + 1
        spec = job(
            workdir,
            f"service: all\ntargets:\n  - {{kind: identity, identities: [{person}]}}\n",
            "erase-plan",
        )
        capsys.readouterr()

        assert await run_cli("plan", spec) == 0

        ledger = await emu.ledger()
        assert {r["method"] for r in ledger["requests"]} == {"GET"}
        out, err = capsys.readouterr()
        flat = " ".join(out.split())
        for service, count in per_service.items():
            assert service in out
            assert f"{service} │ {count} │ 0 │" in flat, out
        assert person not in out + err


@pytest.mark.parametrize("kill_after", [pytest.param(n, id=f"after-{n}") for n in (6, 20, 45)])
async def test_an_erasure_killed_while_listing_two_services_resumes_exactly_once(
    kill_after: int, start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILLed after a number of requests (while it still looks people up in both Services),
    a job of several requests resumes to exactly their messages, participations and Users in
    both Services, each deleted once; no identity in any file; verify passes."""
    async with start_emulator(**TWO_SERVICES) as emu:
        point_at(monkeypatch, emu.url)
        person = regular(emu.dataset)
        others = sorted(
            {
                p.identity
                for c in emu.dataset.conversations
                for p in c.participants[1:]
                if p.identity
            }
        )[:8]
        people = {person, *others}
        expected = everywhere(emu.dataset, people)
        rows = "".join(f"{who},\n" for who in sorted(people))
        (workdir / "requests.csv").write_text(f"identity,address\n{rows}")
        spec = job(
            workdir,
            "service: all\ntargets:\n  - {kind: identity, from_file: requests.csv}\n"
            "limits: {per_conversation_rate: 5, per_service_rate: 5}\n",
            "erase-killed",
        )
        process = await start_bulkops(["run", str(spec)], workdir)
        code = await drive(process, emu, kill_after)
        assert code is None  # killed before it ended
        assert deleted(await emu.ledger()) < expected

        (log,) = checkpoints(workdir)
        assert await run_cli("resume", log) == 0

        ledger = await emu.ledger()
        assert deleted(ledger) == expected
        assert max(successful_deletes(ledger).values()) == 1
        assert await run_cli("verify", log) == 0
        text = artifacts(workdir)
        assert not [who for who in people if who in text]


async def test_a_request_erased_before_its_crash_is_still_found_on_resume(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that deleted everything of a person in two Services but crashed before recording
    the request as listed (its last lines cut off): the resume finds nothing left to look up,
    yet reports the request found, with what the run found, not found nowhere."""
    async with start_emulator(**TWO_SERVICES) as emu:
        point_at(monkeypatch, emu.url)
        person, addresses = regular(emu.dataset), phones(emu.dataset)
        expected = everywhere(emu.dataset, {person, *addresses})
        spec = job(
            workdir,
            "service: all\ntargets:\n"
            f"  - {{kind: identity, identities: [{person}], addresses: {addresses}}}\n",
            "erase-cut",
        )
        assert await run_cli("run", spec) == 0
        (log,) = checkpoints(workdir)
        found = json.loads(log.with_suffix(".report.json").read_text())["requests"]
        assert found == [{"request": "targets[0]", "outcome": "found", "found": 22}]
        # The crash: the request's listed line and the footer never reached the disk.
        lines = log.read_bytes().splitlines(keepends=True)
        kept = [
            line
            for line in lines
            if not (b'"c":"targets[0]"' in line or line.startswith(b'{"t":"E"'))
        ]
        assert len(kept) == len(lines) - 2
        log.write_bytes(b"".join(kept))

        assert await run_cli("resume", log) == 0

        assert deleted(await emu.ledger()) == expected
        report = json.loads(log.with_suffix(".report.json").read_text())
        assert report["requests"] == found


async def test_a_service_that_fails_is_one_warning_and_the_others_are_erased(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A listed Service that does not exist fails its lookups: one `discovery_listing_failed`
    warning for it (not one per request), no request called not_found (it was not asked
    everywhere), the person erased in the other Service, exit 1."""
    async with start_emulator(**TWO_SERVICES) as emu:
        point_at(monkeypatch, emu.url)
        person = regular(emu.dataset)
        first, _second = support_services(emu.dataset)
        rows = "".join(f"nobody-{n},\n" for n in range(6))
        (workdir / "requests.csv").write_text(f"identity,address\n{person},\n{rows}")
        spec = job(
            workdir,
            f"service: [{first}, {MISSING_SERVICE}]\n"
            "targets:\n  - {kind: identity, from_file: requests.csv}\n",
            "erase-broken",
        )

        assert await run_cli("run", spec, "--log-format", "json") == 1

        ledger = await emu.ledger()
        assert deleted(ledger) == everything_of(emu.dataset, first, {person})
        _out, err = capsys.readouterr()
        lines = events(err)
        failed = [e for e in lines if e["event"] == "discovery_listing_failed"]
        assert len(failed) == 1 and MISSING_SERVICE in failed[0]["path"]
        verdicts = [(e["event"], e["request"]) for e in lines if "erasure_request" in e["event"]]
        assert verdicts == [("erasure_request_found", "targets[0].from_file line 2")]
        (log,) = checkpoints(workdir)
        report = json.loads(log.with_suffix(".report.json").read_text())
        assert report.get("requests", []) == []  # none settled: a resume asks again
        assert person not in artifacts(workdir) + err


def test_the_example_erases_in_every_service() -> None:
    """jobs/erasure-all-services.yaml is an identity job over `service: all` (the run of it is
    test_every_example_job_runs_clean's, and the next test's)."""
    text = (REPO / "jobs" / "erasure-all-services.yaml").read_text()
    assert "service: all" in text and "kind: identity" in text


async def test_the_example_job_erases_the_person_in_both_demo_services(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example job, run on the demo dataset, erases its person in the default Service and in
    the support Service, exactly, and verify passes."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        spec = workdir / "erasure-all-services.yaml"
        spec.write_text((REPO / "jobs" / "erasure-all-services.yaml").read_text())
        person = "diego.smith68@inbox.example.net"
        expected = everywhere(emu.dataset, {person, "+14155550143"})
        homes = {service_of_each(emu.dataset)[i] for _k, i in expected}
        assert len(homes) == 2

        assert await run_cli("run", spec) == 0

        assert deleted(await emu.ledger()) == expected
        (log,) = checkpoints(workdir)
        assert await run_cli("verify", log) == 0


async def test_replies_naming_another_service_or_person_are_left_out(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each Service's replies are untrusted: a ParticipantConversations item of Service 1 that
    names Service 2, or an item of Service 2 that names another person, is left out (never
    deleted, through either Service); what is the person's in Service 1 is deleted through its
    path; the run exits 1 naming the lookup, and the request is not settled."""
    s1, s2 = sid("IS", 1), sid("IS", 2)
    person = "hostile-test-person"
    ch1, ch2, ch3 = sid("CH", 1), sid("CH", 2), sid("CH", 3)

    def member(conversation: str, n: int, service: str, who: str) -> dict[str, Any]:
        return {
            "conversation_sid": conversation,
            "participant_sid": sid("MB", n),
            "chat_service_sid": service,
            "participant_identity": who,
        }

    def message(n: int, author: str) -> dict[str, Any]:
        return {"sid": sid("IM", n), "conversation_sid": ch1, "author": author}

    async with list_server(
        {
            f"/v1/Services/{s1}/ParticipantConversations": v1_pages(
                "conversations", [[member(ch1, 1, s1, person), member(ch2, 2, s2, person)]]
            ),
            f"/v1/Services/{s2}/ParticipantConversations": v1_pages(
                "conversations", [[member(ch3, 3, s2, "somebody-else")]]
            ),
            f"/v1/Services/{s1}/Conversations/{ch1}/Messages": v1_pages(
                "messages", [[message(1, person), message(2, "somebody-else")]]
            ),
        }
    ) as server:
        point_at(monkeypatch, server.url)
        spec = job(
            workdir,
            f"service: [{s1}, {s2}]\ntargets:\n  - {{kind: identity, identities: [{person}]}}\n",
            "erase-hostile",
        )

        assert await run_cli("run", spec, "--log-format", "json") == 1

    assert server.deletes() == {
        f"/v1/Services/{s1}/Conversations/{ch1}/Messages/{sid('IM', 1)}",
        f"/v1/Services/{s1}/Conversations/{ch1}/Participants/{sid('MB', 1)}",
    }
    _out, err = capsys.readouterr()
    assert "ParticipantConversations" in err
    (log,) = checkpoints(workdir)
    assert json.loads(log.with_suffix(".report.json").read_text()).get("requests", []) == []
    assert person not in artifacts(workdir) + err
