"""`bulkops verify` of a job of several Services, end to end over HTTP against the emulator: each
target is fetched in the Service its log line names, the selection is listed again in every
Service the run froze, and what remains is named with its Service — judged by the emulator's
ledger and resources and by the evidence file (checked against its schema)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.runner.app.test_erasure_services import everywhere, service_of_each
from tests.runner.app.test_verify import evidence
from tests.runner.conftest import REPO, checkpoints, deleted, point_at, run_cli
from tests.runner.engine.test_services import DATASET, PURGE, selection, service_of
from tests.runner.kinds.test_identity_kind import TWO_SERVICES, phones, regular
from tests.runner.test_run_faults import job


def requests_after(ledger: dict[str, Any], seq: int) -> list[dict[str, Any]]:
    """The requests the emulator received after request ``seq``."""
    return [r for r in ledger["requests"] if r["seq"] > seq]


async def test_verify_passes_after_a_four_service_purge(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """After a `service: all` purge of closed conversations in four Services (and the default
    one), verify fetches each deleted conversation and participant at its own Service's path
    (each answers 404), lists the selection again in the five Services the run froze without
    listing /v1/Services again, sends no DELETE, and exits 0."""
    async with start_emulator(**DATASET) as emu:
        point_at(monkeypatch, emu.url)
        expected = await selection(emu)
        home = await service_of(emu)
        participants = {p["sid"]: p["conversation_sid"] for p in await emu.resources("participant")}
        assert len({home[i] for k, i in expected if k == "conversation_v1"}) == 5
        assert await run_cli("run", job(workdir, "service: all\n" + PURGE, "purge-all")) == 0
        ran = (await emu.ledger())["requests"][-1]["seq"]
        (log,) = checkpoints(workdir)
        capsys.readouterr()

        assert await run_cli("verify", log) == 0

        after = requests_after(await emu.ledger(), ran)
        assert {r["method"] for r in after} == {"GET"}
        assert not [r for r in after if r["path"] == "/v1/Services"]  # the frozen list is used
        fetched = {r["path"]: r["status"] for r in after if r["path"].split("/")[-1][:2] == "CH"}
        fetched |= {r["path"]: r["status"] for r in after if r["path"].split("/")[-1][:2] == "MB"}
        covered = {
            (k, i)
            for k, i in expected
            if k == "participant" and ("conversation_v1", participants[i]) in expected
        }
        paths = {
            (k, i): f"/v1/Services/{home[i]}/Conversations/{i}"
            if k == "conversation_v1"
            else f"/v1/Services/{home[participants[i]]}/Conversations/{participants[i]}"
            f"/Participants/{i}"
            for k, i in expected
        }
        want = {path for target, path in paths.items() if target not in covered}
        assert want <= set(fetched) and set(fetched.values()) == {404}
        document = evidence(workdir)
        assert document["verified"] is True and document["remaining"] == []
        assert sorted(document["listing"]["services"]) == sorted(set(home.values()))
        listed = {r["path"].split("/")[3] for r in after if r["path"].endswith("/Conversations")}
        assert listed == set(home.values())

        # A sample is fetched in its targets' own Services too.
        sampled = (await emu.ledger())["requests"][-1]["seq"]
        assert await run_cli("verify", log, "--sample", "5", "--seed", "3") == 0
        document = evidence(workdir)
        assert document["sample"] == {"size": 5, "seed": 3} and document["checked"] == 5
        sample = {r["path"] for r in requests_after(await emu.ledger(), sampled)}
        assert len(sample & set(paths.values())) == 5


async def test_verify_names_what_remains_in_each_service(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """When the emulator keeps a closed conversation in each of two Services from going, the
    purge exits 0 but verify exits 1, naming exactly those two (with their Services, found by
    their fetch and by the listing) on standard error and in the evidence file."""
    async with start_emulator(**DATASET) as emu:
        point_at(monkeypatch, emu.url)
        home = await service_of(emu)
        closed = sorted(i for k, i in await selection(emu) if k == "conversation_v1")
        first = closed[0]
        second = next(i for i in closed if home[i] != home[first])
        await emu.configure(keep_resources=[first, second])
        assert await run_cli("run", job(workdir, "service: all\n" + PURGE, "purge-kept")) == 0
        (log,) = checkpoints(workdir)
        capsys.readouterr()

        assert await run_cli("verify", log) == 1

        document = evidence(workdir)
        assert document["verified"] is False and document["exit_code"] == 1
        assert [(r["kind"], r["id"], r["service_sid"], r["found_by"]) for r in document[
            "remaining"
        ]] == [
            ("conversation_v1", sid, home[sid], ["fetch", "listing"])
            for sid in sorted((first, second))
        ]
        err = capsys.readouterr().err
        assert f"{first} in {home[first]}" in err and f"{second} in {home[second]}" in err
        assert "not verified" in err


async def test_verify_of_an_erasure_names_what_the_server_kept(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An erasure in two Services whose server kept one message, one participation and one User
    of the person (in both Services between them) exits 0; verify exits 1 and names exactly
    those three: each by its fetch, the participation and the User by the lookups listed again
    too; the identity is in no output or file."""
    async with start_emulator(**TWO_SERVICES) as emu:
        point_at(monkeypatch, emu.url)
        person, addresses = regular(emu.dataset), phones(emu.dataset)
        expected = everywhere(emu.dataset, {person, *addresses})
        home = service_of_each(emu.dataset)
        members = {
            p.sid: c.sid
            for c in emu.dataset.conversations
            for p in c.participants
            if p.identity == person
        }
        user = next(i for k, i in sorted(expected) if k == "user")
        member = next(i for k, i in sorted(expected) if k == "participant" and i in members)
        message = next(
            i
            for k, i in sorted(expected)
            if k == "message" and home[i] != home[member]
        )
        kept = {("user", user), ("participant", member), ("message", message)}
        await emu.configure(keep_resources=[i for _k, i in kept])
        spec = job(
            workdir,
            f"service: all\ntargets:\n"
            f"  - {{kind: identity, identities: [{person}], addresses: {addresses}}}\n",
            "erase-kept",
        )
        assert await run_cli("run", spec) == 0
        assert deleted(await emu.ledger()) == expected - kept
        (log,) = checkpoints(workdir)
        capsys.readouterr()

        assert await run_cli("verify", log, "--log-format", "json") == 1

        document = evidence(workdir)
        remaining = {(r["kind"], r["id"]): r for r in document["remaining"]}
        assert set(remaining) == kept
        assert all(r["service_sid"] == home[i] for (_k, i), r in remaining.items())
        assert remaining["user", user]["found_by"] == ["fetch", "listing"]
        assert remaining["participant", member]["found_by"] == ["fetch", "listing"]
        assert "fetch" in remaining["message", message]["found_by"]
        out, err = capsys.readouterr()
        assert all(i in err for _k, i in kept)
        text = out + err + log.with_suffix(".verify.json").read_text()
        assert not [x for x in (person, *addresses) if x in text]
        assert json.loads(log.with_suffix(".verify.json").read_text())["verified"] is False


async def test_the_all_services_example_is_verified(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """jobs/closed-conversations-all-services.yaml (the README's example of verify across
    Services), run against four Services, deletes something in several of them; verify of its
    log exits 0, having listed every Service again and fetched each target in its own."""
    async with start_emulator(**DATASET) as emu:
        point_at(monkeypatch, emu.url)
        home = await service_of(emu)
        spec = workdir / "closed-conversations-all-services.yaml"
        spec.write_text((REPO / "jobs" / spec.name).read_text())
        assert await run_cli("run", spec) == 0
        gone = deleted(await emu.ledger(), "request")
        assert len({home[i] for k, i in gone if k == "conversation_v1"}) > 1
        (log,) = checkpoints(workdir)

        assert await run_cli("verify", log) == 0

        document = evidence(workdir)
        assert document["verified"] is True
        assert document["population"] >= len(gone) and document["checked"] > 0
        assert sorted(document["listing"]["services"]) == sorted(set(home.values()))
