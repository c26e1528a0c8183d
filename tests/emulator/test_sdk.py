"""The official twilio SDK 9.13.0, unpatched, pointed at the emulator by base_url.

The sync SDK runs in a worker thread (``asyncio.to_thread``) against the in-process server, so
every exchange still passes the spec checker.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from runner.emulator import Dataset, EmulatorSettings, generate

from .conftest import Running, fast_settings, start


@pytest.fixture
def client(emu: Running, monkeypatch: pytest.MonkeyPatch) -> Client:
    for var in ("TWILIO_REGION", "TWILIO_EDGE"):
        monkeypatch.delenv(var, raising=False)
    c = Client(emu.settings.account_sid, emu.settings.auth_token)
    c.conversations.base_url = emu.url
    c.memory.base_url = emu.url
    return c


def _purge_messages_by_pages(client: Client, service: str, conversation: str) -> list[int]:
    """List page by page, deleting every message of a page before asking for the next."""
    messages = client.conversations.v1.services(service).conversations(conversation).messages
    page = messages.page(page_size=3)
    seen: list[int] = []
    while True:
        for m in page:
            seen.append(m.index)
            assert messages(m.sid).delete() is True
        page = page.next_page()
        if page is None:
            return seen


async def test_sdk_lists_every_page_while_deleting(client: Client, dataset: Dataset) -> None:
    """The SDK follows next_page_url through deletions and skips no message."""
    conv = max((c for c in dataset.conversations if c.service_sid != dataset.default_service.sid),
               key=lambda c: c.message_count)
    seen = await asyncio.to_thread(_purge_messages_by_pages, client, conv.service_sid, conv.sid)
    assert seen == list(range(conv.message_count))


def _v1_every_kind(client: Client, dataset: Dataset) -> None:
    conv = next(c for c in dataset.conversations if c.service_sid == dataset.default_service.sid)
    v1 = client.conversations.v1
    listed = v1.conversations.list(state="active", page_size=1)
    assert all(c.state == "active" for c in listed)
    assert v1.conversations(conv.sid).fetch().sid == conv.sid
    ident = next(p for p in conv.participants if p.identity)
    assert v1.conversations(conv.sid).participants(ident.identity).fetch().sid == ident.sid
    assert v1.conversations(conv.sid).participants(ident.sid).delete() is True
    message = v1.conversations(conv.sid).messages.list(order="desc", limit=1)[0]
    assert v1.conversations(conv.sid).messages(message.sid).fetch().index == message.index
    assert v1.conversations(conv.sid).messages(message.sid).delete() is True
    assert v1.conversations(conv.sid).delete() is True
    assert len(v1.services.list()) == len(dataset.services)


async def test_sdk_fetches_and_deletes_v1_kinds(client: Client, dataset: Dataset) -> None:
    """Conversations, participants (by identity too) and messages fetch and delete via the SDK."""
    await asyncio.to_thread(_v1_every_kind, client, dataset)


def _done(emu: Running, fetch: Any) -> Any:
    """The Operation once its time is up: the emulator's clock is moved past its PENDING and
    RUNNING spells (where the SDK's caller would poll through them), then one fetch."""
    emu.emulator.advance_monotonic(emu.settings.operation_pending_s
                                   + emu.settings.operation_running_s)
    op = fetch()
    assert op.status in ("COMPLETED", "FAILED")
    return op


def _v2_and_memory(client: Client, dataset: Dataset, emu: Running) -> None:
    v2 = client.conversations.v2
    active = v2.conversations.list(status=["ACTIVE", "CLOSED"], page_size=1)
    assert {c.id for c in active} == {c.id for c in dataset.conversations_v2
                                      if c.status in ("ACTIVE", "CLOSED")}
    target = active[0].id
    response = v2.conversations(target).delete_with_http_info()
    assert response.status_code == 202
    op_id = response.headers["Operation-Id"]
    assert int(response.headers["Retry-After"]) >= 1
    op = _done(emu, v2.operations(op_id).fetch)
    assert op.status == "COMPLETED" and op.related == {"conversationId": target}
    configs = v2.configurations.list(page_size=1)
    assert [c.id for c in configs] == [c.id for c in dataset.configurations]
    body = v2.configurations(configs[0].id).delete()
    assert body["related"] == {"configurationId": configs[0].id}
    op = _done(emu, v2.operations(body["statusUrl"].rsplit("/", 1)[1]).fetch)
    assert op.status == "COMPLETED"
    stores = client.memory.v1.stores.list(page_size=1)
    assert sorted(stores) == sorted(s.id for s in dataset.stores)
    deleted = client.memory.v1.stores(stores[0]).delete_with_http_info()
    assert deleted.status_code == 202
    mem_op = _done(emu, client.memory.v1.operations(deleted.headers["Operation-Id"]).fetch)
    assert mem_op.status == "COMPLETED" and mem_op.result == {"type": "RESOURCE_ID",
                                                              "id": stores[0]}


async def test_sdk_v2_and_memory_operations(client: Client, dataset: Dataset, emu: Running
                                            ) -> None:
    """v2 and Memory deletes go through the SDK and their Operations read to COMPLETED."""
    await asyncio.to_thread(_v2_and_memory, client, dataset, emu)
    kinds = sorted(d.kind for d in list(emu.emulator.ledger.iter_deletions()))
    assert kinds == ["configuration", "conversation_v2", "memory_store"]


def _api_key_client(emu: Running) -> str:
    settings: EmulatorSettings = emu.settings
    assert settings.api_key and settings.api_secret
    c = Client(settings.api_key, settings.api_secret, account_sid=settings.account_sid)
    c.memory.base_url = emu.url
    return str(c.memory.v1.stores.list()[0])


async def test_sdk_with_api_key(emu: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    """An API key client (SK..., secret, account_sid=AC...) works unchanged."""
    for var in ("TWILIO_REGION", "TWILIO_EDGE"):
        monkeypatch.delenv(var, raising=False)
    assert (await asyncio.to_thread(_api_key_client, emu)).startswith("mem_store_")


def _users_and_participant_conversations(client: Client, dataset: Dataset) -> None:
    v1 = client.conversations.v1
    default = dataset.default_service.sid
    named = next(s.sid for s in dataset.services if not s.is_default)
    by_service = {s.sid: sorted((u for u in dataset.users if u.service_sid == s.sid),
                                key=lambda u: (u.date_created, u.sid)) for s in dataset.services}
    assert [u.sid for u in v1.users.list(page_size=2)] == [u.sid for u in by_service[default]]
    scoped = v1.services(named).users
    assert [u.sid for u in scoped.list(page_size=3)] == [u.sid for u in by_service[named]]
    regular = next(u.identity for u in by_service[named]
                   if any(d.identity == u.identity for d in by_service[default]))
    fetched = scoped(regular).fetch()
    assert fetched.identity == regular and fetched.chat_service_sid == named
    assert v1.users(regular).fetch().sid != fetched.sid  # one User per Service
    assert scoped(fetched.sid).delete() is True
    with pytest.raises(TwilioRestException) as missing:
        scoped(fetched.sid).fetch()
    assert missing.value.status == 404 and missing.value.code == 20404
    default_user = by_service[default][-1]
    assert v1.users(default_user.sid).delete() is True
    with pytest.raises(TwilioRestException):
        v1.users(default_user.identity).fetch()
    in_default = v1.participant_conversations.list(identity=regular, page_size=1)
    in_named = v1.services(named).participant_conversations.list(identity=regular)
    expected = {c.sid for c in dataset.conversations
                if any(p.identity == regular for p in c.participants)}
    assert {c.conversation_sid for c in in_default + in_named} == expected
    assert {c.chat_service_sid for c in in_default} == {default}
    assert {c.participant_user_sid for c in in_named} == {None}  # its User is gone
    sms = next(p for c in dataset.conversations if c.service_sid == named
               for p in c.participants if p.address)
    by_address = v1.services(named).participant_conversations.list(address=sms.address)
    assert by_address[0].participant_messaging_binding["address"] == sms.address


async def test_sdk_users_and_participant_conversations(client: Client, dataset: Dataset,
                                                       emu: Running) -> None:
    """The SDK lists, fetches (by identity too) and deletes Users in both URL forms, and lists
    a person's conversations by identity or address; the deletes are in the ledger."""
    await asyncio.to_thread(_users_and_participant_conversations, client, dataset)
    assert [d.kind for d in emu.emulator.ledger.iter_deletions()] == ["user", "user"]


def _a_person_by_each_channel(client: Client, dataset: Dataset) -> None:
    v1 = client.conversations.v1
    (identity,) = {c.participants[0].identity for c in dataset.conversations} - {None}
    sms, whatsapp = sorted({a for c in dataset.conversations if (a := c.participants[0].address)})
    services = [s.sid for s in dataset.services if not s.is_default]
    for value, kind in ((identity, None), (sms, "sms"), (whatsapp, "whatsapp")):
        found = []
        for service in services:
            pcs = v1.services(service).participant_conversations
            found += pcs.list(identity=value) if kind is None else pcs.list(address=value)
        assert {p.conversation_sid for p in found} == {
            c.sid for c in dataset.conversations
            if value in (c.participants[0].identity, c.participants[0].address)}
        if kind is not None:
            assert {p.participant_messaging_binding["type"] for p in found} == {kind}
        else:
            user = {p.participant_user_sid for p in found}
            assert None not in user and len(user) == 2  # one User per Service
            for service in services:
                assert v1.services(service).users(identity).fetch().sid in user


async def test_sdk_finds_a_person_by_identity_sms_and_whatsapp() -> None:
    """The SDK finds a person who writes by chat, SMS and WhatsApp in two Services, by each,
    with the Users their participations name (an erasure request's discovery)."""
    dataset = generate("small", regulars=1, regular_phones=True, service_conversations=6,
                       plain=0)
    server, emu = await start(fast_settings(), dataset)
    try:
        c = Client(emu.settings.account_sid, emu.settings.auth_token)
        c.conversations.base_url = emu.url
        await asyncio.to_thread(_a_person_by_each_channel, c, dataset)
    finally:
        await server.close()
    assert emu.checker.problems == []
