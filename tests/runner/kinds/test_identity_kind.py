"""Erasure of one person (`kind: identity`), end to end: `bulkops run` over real HTTP against the
emulator, judged by its ledger (exactly the person's messages, participations and User, in each
Service, nothing else), with no identity or address in any artifact."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import anyio
import pytest

from runner.emulator import Dataset
from tests.runner.app.test_interrupt import wait_for_deletions
from tests.runner.conftest import (
    checkpoints,
    deleted,
    point_at,
    run_cli,
    start_bulkops,
    successful_deletes,
)
from tests.runner.test_run_faults import job

# Two Support Services of ten conversations each, every one with the same regular customer, who
# writes by chat in most, by SMS or WhatsApp in the others.
TWO_SERVICES = {
    "preset": "small",
    "dataset_args": {
        "service_conversations": 10,
        "plain": 0,
        "regulars": 1,
        "regular_phones": True,
    },
}


def regular(dataset: Dataset) -> str:
    """The identity of the person who takes part in every conversation of the dataset."""
    (person,) = {c.participants[0].identity for c in dataset.conversations} - {None}
    assert person is not None
    return person


def phones(dataset: Dataset) -> list[str]:
    """The addresses the regular person writes from (an SMS number, and it on WhatsApp)."""
    return sorted({a for c in dataset.conversations if (a := c.participants[0].address)})


def support_services(dataset: Dataset) -> list[str]:
    """The Services other than the account's default one."""
    return [s.sid for s in dataset.services if not s.is_default]


def everything_of(dataset: Dataset, service: str, authors: set[str]) -> set[tuple[str, str]]:
    """(kind, id) of every message, participation and User of ``authors`` in ``service``."""
    found: set[tuple[str, str]] = set()
    for conv in dataset.conversations:
        if conv.service_sid != service:
            continue
        found |= {
            ("participant", p.sid)
            for p in conv.participants
            if p.identity in authors or p.address in authors
        }
        found |= {
            ("message", dataset.message_sids.sid(conv.no, i))
            for i in range(conv.message_count)
            if dataset.message_content(conv, i)[0] in authors
        }
    found |= {
        ("user", u.sid) for u in dataset.users if u.service_sid == service and u.identity in authors
    }
    return found


def erasure(workdir: Path, service: str, body: str, name: str = "erase") -> Path:
    """An erasure job of the targets ``body`` in ``service``."""
    return job(workdir, f"service: {service}\ntargets:\n{body}", name)


def artifacts(workdir: Path) -> str:
    """Every file bulkops wrote under ``workdir`` (logs, reports, output), as one text."""
    return "".join(
        p.read_text()
        for p in workdir.rglob("*")
        if p.is_file() and (p.suffix not in (".yaml", ".csv") or p.name.endswith(".report.csv"))
    )


async def test_a_person_in_twenty_conversations_of_two_services_is_erased_exactly(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An erasure request, run in each of two Services, deletes exactly the person's messages,
    participations and User there, each once, and nothing of anybody else; the identity reaches
    no log line, checkpoint or report."""
    async with start_emulator(**TWO_SERVICES) as emu:
        point_at(monkeypatch, emu.url)
        person, addresses = regular(emu.dataset), phones(emu.dataset)
        assert len(addresses) == 2 and addresses[1] == f"whatsapp:{addresses[0]}"
        services = support_services(emu.dataset)
        them = {person, *addresses}
        expected = set().union(*(everything_of(emu.dataset, s, them) for s in services))
        convs = {c.sid for c in emu.dataset.conversations if c.service_sid in services}
        assert len(convs) == 20 and len(services) == 2
        assert {k for k, _ in expected} == {"message", "participant", "user"}
        others = len(await emu.resources("message")) + len(await emu.resources("participant"))

        for n, service in enumerate(services):
            target = f"  - {{kind: identity, identities: [{person}], addresses: {addresses}}}\n"
            spec = erasure(workdir, service, target, f"erase-{n}")
            assert await run_cli("run", spec, "--log-format", "json") == 0

        ledger = await emu.ledger()
        assert deleted(ledger) == expected
        assert max(successful_deletes(ledger).values()) == 1
        left = len(await emu.resources("message")) + len(await emu.resources("participant"))
        assert left == others - len([k for k, _ in expected if k != "user"])
        assert len(await emu.resources("conversation_v1")) == len(emu.dataset.conversations)
        assert not [x for x in them if x in artifacts(workdir)]


async def test_parts_and_addresses_choose_what_goes(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`delete: [messages]` with an SMS address deletes only the messages that address wrote;
    its participations and every User stay."""
    async with start_emulator(preset="small") as emu:
        point_at(monkeypatch, emu.url)
        sms = next(
            (c.service_sid, p.address)
            for c in emu.dataset.conversations
            for p in c.participants
            if p.address
            and any(
                emu.dataset.message_content(c, i)[0] == p.address for i in range(c.message_count)
            )
        )
        service, address = sms
        expected = {t for t in everything_of(emu.dataset, service, {address}) if t[0] == "message"}
        spec = erasure(
            workdir,
            service,
            f"  - {{kind: identity, addresses: ['{address}'], delete: [messages]}}\n",
        )

        assert await run_cli("run", spec, "--log-format", "json") == 0

        assert expected and deleted(await emu.ledger()) == expected
        assert address not in artifacts(workdir)


async def test_an_unknown_person_is_not_found_not_failed(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A request found nowhere exits 0, deletes nothing, and is logged, summed up and reported
    not_found by its position in the requests file (never by identity), beside a found one."""
    async with start_emulator(preset="small") as emu:
        point_at(monkeypatch, emu.url)
        (service, *_) = support_services(emu.dataset)
        person = next(
            c.participants[0].identity
            for c in emu.dataset.conversations
            if c.service_sid == service
        )
        (workdir / "requests.csv").write_text(
            f"identity,address\nnobody-at-all-4711,\n{person},\n,+15550009999\n"
        )
        spec = erasure(workdir, service, "  - {kind: identity, from_file: requests.csv}\n")

        assert await run_cli("run", spec, "--log-format", "json") == 0

        out, err = capsys.readouterr()
        lines = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
        verdicts = {
            (e["event"], e["request"]) for e in lines if e["event"].startswith("erasure_request")
        }
        where = "targets[0].from_file line"
        assert verdicts == {
            ("erasure_request_not_found", f"{where} 2"),
            ("erasure_request_found", f"{where} 3"),
            ("erasure_request_not_found", f"{where} 4"),
        }
        assert deleted(await emu.ledger()) == everything_of(emu.dataset, service, {person})
        assert (
            f"not found: 2 erasure request(s) found no conversation and no User ({where} 2, "
            f"{where} 4)" in " ".join(out.split())
        )
        (log,) = checkpoints(workdir)
        report = json.loads(log.with_suffix(".report.json").read_text())
        assert report["not_found"] == [f"{where} 2", f"{where} 4"]
        assert report["summary"]["totals"].get("failed", 0) == 0
        text = artifacts(workdir)
        assert "nobody-at-all-4711" not in text and "+15550009999" not in text


async def test_an_interrupted_erasure_resumes_to_the_end(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped by SIGINT partway, the erasure exits 130; `resume` deletes the rest, each once."""
    async with start_emulator(**TWO_SERVICES) as emu:
        point_at(monkeypatch, emu.url)
        person = regular(emu.dataset)
        (service, *_) = support_services(emu.dataset)
        expected = everything_of(emu.dataset, service, {person})
        spec = erasure(
            workdir,
            service,
            f"  - {{kind: identity, identities: [{person}]}}\n"
            "limits: {per_conversation_rate: 2, per_service_rate: 2}\n",
        )
        process = await start_bulkops(["run", str(spec)], workdir)
        async with process:
            await wait_for_deletions(workdir, 2)
            process.send_signal(signal.SIGINT)
            with anyio.fail_after(10):
                assert await process.wait() == 130
        partial = deleted(await emu.ledger())
        assert partial and partial < expected

        (log,) = checkpoints(workdir)
        assert await run_cli("resume", log) == 0

        ledger = await emu.ledger()
        assert deleted(ledger) == expected
        assert max(successful_deletes(ledger).values()) == 1
        assert person not in artifacts(workdir)
