"""Erasure of one person (`kind: identity`), end to end: `bulkops run` over real HTTP against the
emulator, judged by its ledger (exactly the person's messages, participations and User, in each
Service, nothing else), with no identity or address in any artifact."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from runner.emulator import Dataset
from runner.errors import BadListing
from runner.kinds.identity import SELECTOR, ListIdentity, read_requests
from runner.kinds.registry import KINDS, KindRegistryError, check_selectors
from runner.plan.planner import build_plan
from runner.spec.jobspec import parse_spec
from tests.runner.conftest import (
    checkpoints,
    deleted,
    interrupted_then_resumed,
    point_at,
    run_cli,
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
    """Every file bulkops wrote under ``workdir`` (logs, reports, output, and the binary resume
    snapshots, whose text parts are what could leak), as one text."""
    return "".join(
        p.read_bytes().decode("utf-8", "replace")
        for p in workdir.rglob("*")
        if p.is_file() and (p.suffix not in (".yaml", ".csv") or p.name.endswith(".report.csv"))
    )


async def test_a_person_in_twenty_conversations_of_two_services_is_erased_exactly(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
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
            code = await run_cli("run", spec, "--log-format", "json", "--log-level", "debug")
            assert code == 0

        ledger = await emu.ledger()
        assert deleted(ledger) == expected
        assert max(successful_deletes(ledger).values()) == 1
        left = len(await emu.resources("message")) + len(await emu.resources("participant"))
        assert left == others - len([k for k, _ in expected if k != "user"])
        assert len(await emu.resources("conversation_v1")) == len(emu.dataset.conversations)
        out, err = capsys.readouterr()
        assert "erasure_request_found" in err
        assert not [x for x in them if x in artifacts(workdir) + out + err]


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
            f"erasure requests: 3, 1 found; not found: 2 ({where} 2, {where} 4): no conversation "
            "and no User" in " ".join(out.split())
        )
        (log,) = checkpoints(workdir)
        report = json.loads(log.with_suffix(".report.json").read_text())
        assert [(r["request"], r["outcome"]) for r in report["requests"]] == [
            (f"{where} 2", "not_found"),
            (f"{where} 3", "found"),
            (f"{where} 4", "not_found"),
        ]
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
        await interrupted_then_resumed(emu, spec, workdir, expected)
        assert person not in artifacts(workdir)


SPEC = """\
version: 1
name: erase
targets:
  - kind: identity
    identities: [customer-8812]
    addresses: ['+15551234567', 'whatsapp:+15551234567']
"""


def test_the_recorded_spec_keeps_how_many_never_who() -> None:
    """The canonical spec a checkpoint records (and its fingerprint) counts a request's
    identities and addresses; their values are nowhere in it, and every part is the default."""
    spec = parse_spec(SPEC, base_dir=Path("."))
    canonical = spec.canonical()
    target = canonical["targets"][0]
    assert (target["identities"], target["addresses"]) == (1, 2)
    assert target["delete"] == ["messages", "participants", "user"]
    text = json.dumps(canonical)
    assert "8812" not in text and "5551234567" not in text
    plan = build_plan(spec, datetime.now(UTC))
    (source,) = plan.sources
    assert isinstance(source, ListIdentity)
    assert [k.name for k in source.kinds()] == ["message", "participant", "user"]
    assert "8812" not in repr(source) and "555" not in repr(source)


def test_a_requests_file_is_read_again_and_refused_once_changed(tmp_path: Path) -> None:
    """CSV and JSONL requests are checked at parse time and streamed by position; a file edited
    after that is a listing error, not a different erasure."""
    (tmp_path / "r.csv").write_text("identity,address\na@example.com,\n,whatsapp:+15551230000\n")
    (tmp_path / "r.jsonl").write_text('{"identities": ["b"], "addresses": ["+15551230001"]}\n')
    for name, count in (("r.csv", 2), ("r.jsonl", 1)):
        spec = parse_spec(
            f"version: 1\nname: e\ntargets:\n  - {{kind: identity, from_file: {name}}}\n",
            base_dir=tmp_path,
        )
        (target,) = spec.targets
        assert target.manifest is not None and target.manifest.count == count
        assert spec.canonical()["targets"][0]["manifest"]["count"] == count
    path = tmp_path / "r.csv"
    requests = list(read_requests(path, "targets[0].from_file", sha256_of(path)))
    assert [(r.position, r.identities, r.addresses) for r in requests] == [
        ("targets[0].from_file line 2", ("a@example.com",), ()),
        ("targets[0].from_file line 3", (), ("whatsapp:+15551230000",)),
    ]
    digest = sha256_of(path)
    path.write_text("identity,address\nsomeone-else,\n")
    with pytest.raises(BadListing, match="changed since the job started"):
        list(read_requests(path, "targets[0].from_file", digest))


def test_a_selector_cannot_take_a_kinds_word() -> None:
    """The registry refuses a selector whose word is a kind's (the spec could not tell them
    apart)."""
    clash = dataclasses.replace(SELECTOR, word="users")
    with pytest.raises(KindRegistryError, match="same spec word"):
        check_selectors([clash], KINDS)
    assert check_selectors([SELECTOR], KINDS) == (SELECTOR,)


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()
