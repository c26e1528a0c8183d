"""Datasets: presets, determinism, the million-message scale preset, seed files and errors."""

from __future__ import annotations

import json
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from runner.emulator import SeedError, generate, load_seed, pii
from runner.emulator.alive import AliveSet
from runner.emulator.dataset import dataset_from_mapping
from runner.emulator.ids import (
    CONFIGURATION_ID,
    CONVERSATION_SID,
    CONVERSATION_V2_ID,
    MESSAGE_SID,
    PARTICIPANT_SID,
    SERVICE_SID,
    STORE_ID,
    USER_SID,
    IdMinter,
    PositionalSids,
    decode_ttid,
    encode_ttid,
)
from runner.emulator.store import Store


def test_demo_preset_holds_every_kind() -> None:
    """The demo preset has a Service, v1 conversations in every state, v2, configs and stores."""
    d = generate("demo")
    named = [s for s in d.services if not s.is_default]
    assert len(named) == 1
    in_service = [c for c in d.conversations if c.service_sid == named[0].sid]
    assert len(in_service) == 12 and len(d.conversations) == 15
    assert {c.state for c in in_service} == {"active", "inactive", "closed"}
    assert all(5 <= c.message_count <= 30 and 2 <= len(c.participants) <= 4
               for c in d.conversations)
    ages = [time.time() - c.date_created for c in d.conversations]
    assert max(ages) > 100 * 86_400 and min(ages) < 365 * 86_400
    assert len(d.conversations_v2) == 6 and {c.status for c in d.conversations_v2} == {
        "ACTIVE", "INACTIVE", "CLOSED"}
    assert len(d.configurations) == 4 and len(d.stores) == 3


def test_ids_match_spec_patterns() -> None:
    """Every minted ID matches the spec pattern of its kind."""
    d = generate("small", seed=9)
    assert all(SERVICE_SID.match(s.sid) for s in d.services)
    for c in d.conversations:
        assert CONVERSATION_SID.match(c.sid)
        assert all(PARTICIPANT_SID.match(p.sid) for p in c.participants)
        assert all(MESSAGE_SID.match(d.message_sids.sid(c.no, i))
                   for i in range(c.message_count))
    assert all(CONVERSATION_V2_ID.match(c.id) for c in d.conversations_v2)
    assert all(CONFIGURATION_ID.match(c.id) for c in d.configurations)
    assert all(STORE_ID.match(s.id) for s in d.stores)


def test_same_seed_same_dataset() -> None:
    """Generation is deterministic for a seed number (and a fixed clock)."""
    a = generate("demo", seed=4, now=1_700_000_000)
    b = generate("demo", seed=4, now=1_700_000_000)
    c = generate("demo", seed=5, now=1_700_000_000)
    assert a.conversations == b.conversations and a.conversations != c.conversations
    assert a.users == b.users and a.users != c.users
    assert a.pii_samples() == b.pii_samples()


# One body of each template, as the bodies were before a body computed only its template's
# fields: a seed's messages must read the same in every version (a rendering that changed would
# change what a run's PII checks look for).
BODIES = {
    1: "Hi James, your appointment is confirmed for Tuesday at 3pm.",
    20: "Please ship it to 665 Elm Court, Riverton.",
    10: "You can reach me at +15125550115 after 6pm.",
    5: "My email is noah.ivanova80@mail.example.org if you need the invoice.",
    11: "Thanks Omar Lopez, the technician will call +13125550112.",
    3: "Card ending 1231 was charged $ 128.91.",
    16: "Can you update my address to 354 Mill Lane, Springfield?",
    4: "Hello, this is Aisha Lopez. I'd like to reschedule.",
    17: "Send the receipt to ravi.nasser22@mail.example.org, please.",
    0: "My date of birth is 1979-10-10 for the verification.",
}


def test_message_bodies_are_stable() -> None:
    """Every template renders the body it always rendered for its key."""
    assert {i: pii.body(7, 3, i) for i in BODIES} == BODIES
    assert len({body.split()[0] for body in BODIES.values()}) >= 8  # the templates differ


def test_pii_samples_look_personal() -> None:
    """PII samples include emails, phone numbers and bodies quoting them."""
    samples = generate("demo").pii_samples()
    assert any("@" in s for s in samples) and any(s.startswith("+1") for s in samples)
    assert len(samples) > 100


@pytest.mark.parametrize("preset", ["demo", "small", "tiny", "scale"])
def test_users_back_every_chat_identity(preset: str) -> None:
    """Each Service has exactly one User per chat identity of its participants (SMS addresses
    have none), and a User's name and attributes are PII samples."""
    overrides: dict[str, Any] = {"conversations": 30, "messages_per_conversation": 2} \
        if preset == "scale" else {}
    d = generate(preset, seed=2, **overrides)
    samples = set(d.pii_samples())
    for service in d.services:
        identities = {p.identity for c in d.conversations if c.service_sid == service.sid
                      for p in c.participants if p.identity}
        users = [u for u in d.users if u.service_sid == service.sid]
        assert sorted(u.identity for u in users) == sorted(identities)
    assert d.users and len({u.sid for u in d.users}) == len(d.users)
    for u in d.users:
        assert USER_SID.match(u.sid)
        assert isinstance(json.loads(u.attributes), dict)
        assert {u.identity, u.friendly_name, u.attributes} <= samples


def test_regulars_author_across_services() -> None:
    """In demo and small some people are in many conversations of two Services and authored
    messages in several of them; the other identities appear once."""
    for preset, least in (("demo", 5), ("small", 7)):
        d = generate(preset, seed=3)
        where: dict[str, set[tuple[str, str]]] = {}
        authored: dict[str, set[tuple[str, str]]] = {}
        for c in d.conversations:
            for p in c.participants:
                if p.identity:
                    where.setdefault(p.identity, set()).add((c.service_sid, c.sid))
            for i in range(c.message_count):
                authored.setdefault(d.message_content(c, i)[0], set()).add((c.service_sid, c.sid))
        regulars = [i for i, convs in where.items() if len(convs) > 1]
        assert len(regulars) == {"demo": 3, "small": 2}[preset]
        for identity in regulars:
            assert len(where[identity]) >= least
            assert len({s for s, _ in where[identity]}) == 2
            assert len(authored[identity]) >= 3 and len({s for s, _ in authored[identity]}) == 2
        assert len(where) - len(regulars) >= 4


def test_seed_identities_get_users() -> None:
    """A seed file's chat identities become Users of their Service, one per identity."""
    d = dataset_from_mapping({
        "services": [{"name": "support"}],
        "conversations": [
            {"participants": [{"identity": "ann@example.com"}, {"address": "+14155550100"}]},
            {"participants": [{"identity": "ann@example.com"}]},
            {"service": "support", "participants": [{"identity": "ann@example.com"}]},
        ],
    })
    assert sorted((u.service_sid == d.default_service.sid, u.identity) for u in d.users) == [
        (False, "ann@example.com"), (True, "ann@example.com")]
    assert len({u.friendly_name for u in d.users}) == 1


def test_ttid_and_positional_sids_round_trip() -> None:
    """TTIDs start with 0-7 and decode back; message SIDs map back to their position."""
    minter = IdMinter(1)
    ttid = minter.ttid("mem_store_", 1_700_000_000_000)
    assert ttid[len("mem_store_")] in "01234567" and STORE_ID.match(ttid)
    assert encode_ttid(decode_ttid(ttid[10:]) or 0) == ttid[10:]
    grid = PositionalSids("IM", 42)
    assert grid.position(grid.sid(7, 99)) == (7, 99)
    assert PositionalSids("IM", 43).position(grid.sid(7, 99)) is None


def test_alive_set_matches_a_reference() -> None:
    """next/prev alive agree with a plain set under random deletes."""
    import random

    rng = random.Random(0)
    alive = AliveSet(500)
    ref = set(range(500))
    for _ in range(400):
        p = rng.randrange(500)
        assert alive.remove(p) == (p in ref)
        ref.discard(p)
        q = rng.randrange(-1, 501)
        assert alive.next_at_or_after(q) == min((x for x in ref if x >= q), default=None)
        assert alive.prev_at_or_before(q) == max((x for x in ref if x <= q), default=None)


def test_scale_preset_is_fast_and_small() -> None:
    """One million messages over 10,000 conversations build in seconds and well under 500 MB."""
    tracemalloc.start()
    began = time.monotonic()
    d = generate("scale")
    store = Store(d)
    elapsed = time.monotonic() - began
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert d.message_total == 1_000_000 and len(store.conversations) == 10_000
    assert elapsed < 20  # typically 2-3 s; tracemalloc roughly doubles it
    assert peak < 100 * 1024 * 1024


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_yaml_seed_file(tmp_path: Path) -> None:
    """A YAML seed declares services, conversations (counts or lists), v2, configs and stores."""
    path = _write(tmp_path, "seed.yaml", """
seed: 3
services: [{name: support}]
conversations:
  - {service: support, state: closed, age_days: 400, messages: 4, participants: 3}
  - state: active
    date_created: 2024-01-05T10:00:00Z
    participants: [{identity: ann@example.com}, {address: "+14155550100"}]
    messages:
      - {author: ann@example.com, body: "Hi, I'm Ann"}
      - {author: "+14155550100", body: "Hello Ann"}
stores: [{name: main-store}]
configurations: [{name: Support, store: main-store}]
conversations_v2: [{configuration: Support, status: CLOSED, age_days: 30}]
""")
    d = load_seed(path)
    assert len(d.services) == 2 and len(d.conversations) == 2
    assert d.conversations[0].message_count == 4 and len(d.conversations[0].participants) == 3
    assert d.message_content(d.conversations[1], 1)[:2] == ("+14155550100", "Hello Ann")
    assert d.configurations[0].memory_store_id == d.stores[0].id
    assert d.conversations_v2[0].configuration_id == d.configurations[0].id
    assert "Hello Ann" in d.pii_samples()


def test_json_seed_file(tmp_path: Path) -> None:
    """JSON seeds work the same way."""
    path = _write(tmp_path, "seed.json", json.dumps({"conversations": [{"messages": 2}]}))
    assert load_seed(path).message_total == 2


@pytest.mark.parametrize(("text", "needle"), [
    pytest.param("conversations: 3", "conversations: must be a list", id="not-a-list"),
    pytest.param("conversations: [{state: open}]", "conversations[0].state", id="bad-state"),
    pytest.param("conversations: [{service: nope}]", "conversations[0].service", id="bad-svc"),
    pytest.param("conversations: [{messages: -1}]", "conversations[0].messages", id="neg"),
    pytest.param("conversations: [{date_created: soon}]", "date_created", id="bad-date"),
    pytest.param("conversations: [{colour: red}]", "unknown field", id="unknown-field"),
    pytest.param("conversations: [{participants: [{}]}]", "participants[0]", id="no-identity"),
    pytest.param("stores: [{name: 'no spaces'}]", "stores[0].name", id="bad-store-name"),
    pytest.param("conversations_v2: [{configuration: x}]", "conversations_v2[0]", id="bad-cfg"),
    pytest.param("[1, 2", "not valid YAML", id="syntax"),
    pytest.param("- 1", "top level must be a mapping", id="top-level-list"),
])
def test_bad_seed_files(tmp_path: Path, text: str, needle: str) -> None:
    """Bad seed files raise SeedError naming the field, never a raw traceback."""
    with pytest.raises(SeedError, match=None) as info:
        load_seed(_write(tmp_path, "bad.yaml", text))
    assert needle in str(info.value)


def test_missing_seed_file(tmp_path: Path) -> None:
    """A missing seed file is a SeedError."""
    with pytest.raises(SeedError, match="cannot read seed file"):
        load_seed(tmp_path / "absent.yaml")


@pytest.mark.parametrize(("preset", "kwargs"), [
    pytest.param("nope", {}, id="unknown-preset"),
    pytest.param("scale", {"colour": 1}, id="unknown-parameter"),
])
def test_bad_presets(preset: str, kwargs: dict[str, Any]) -> None:
    """Unknown presets and parameters raise SeedError."""
    with pytest.raises(SeedError):
        generate(preset, **kwargs)
