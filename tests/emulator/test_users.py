"""Conversations v1 Users and ParticipantConversations over HTTP: envelopes, keyset paging,
lookup by SID or identity, delete, Service scoping, the ledger and the per-Service APS."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from runner.emulator import Dataset, generate
from runner.emulator.dataset import ConversationSpec, UserSpec

from .conftest import Running, auth_header, fast_settings, start

META_KEYS = {"page", "page_size", "first_page_url", "previous_page_url", "url", "next_page_url",
             "key"}


def _named_service(dataset: Dataset) -> str:
    return next(s.sid for s in dataset.services if not s.is_default)


def _prefix(dataset: Dataset, service_sid: str) -> str:
    return "/v1" if service_sid == dataset.default_service.sid else f"/v1/Services/{service_sid}"


def _users_of(dataset: Dataset, service_sid: str) -> list[UserSpec]:
    return sorted((u for u in dataset.users if u.service_sid == service_sid),
                  key=lambda u: (u.date_created, u.sid))


def _regular(dataset: Dataset) -> str:
    """An identity with Users in two Services and participants in several conversations."""
    services: dict[str, set[str]] = {}
    for u in dataset.users:
        services.setdefault(u.identity, set()).add(u.service_sid)
    return next(i for i, s in sorted(services.items()) if len(s) >= 2)


def _memberships(dataset: Dataset, service_sid: str, identity: str | None = None,
                 address: str | None = None) -> list[ConversationSpec]:
    return sorted((c for c in dataset.conversations if c.service_sid == service_sid
                   and any((identity is not None and p.identity == identity)
                           or (address is not None and p.address == address)
                           for p in c.participants)),
                  key=lambda c: (c.date_created, c.sid))


async def _walk(http: aiohttp.ClientSession, url: str | None, key: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while url:
        r = await http.get(url)
        assert r.status == 200
        page = await r.json()
        assert set(page) == {key, "meta"} and set(page["meta"]) == META_KEYS
        assert page["meta"]["key"] == key
        items.extend(page[key])
        url = page["meta"]["next_page_url"]
    return items


async def test_users_list_pages_in_each_service(http: aiohttp.ClientSession, emu: Running,
                                                dataset: Dataset) -> None:
    """/v1/Users lists the default Service's Users and /v1/Services/IS…/Users that Service's,
    oldest first, page by page with absolute next_page_urls."""
    for service in dataset.services:
        expected = _users_of(dataset, service.sid)
        assert expected
        prefix = _prefix(dataset, service.sid)
        r = await http.get(f"{prefix}/Users", params={"PageSize": "2"})
        first = await r.json()
        assert first["meta"]["page_size"] == 2 and first["meta"]["previous_page_url"] is None
        assert first["meta"]["next_page_url"].startswith(f"{emu.url}{prefix}/Users?")
        users = await _walk(http, f"{prefix}/Users?PageSize=2", "users")
        assert [u["sid"] for u in users] == [u.sid for u in expected]
        assert {u["chat_service_sid"] for u in users} == {service.sid}
        assert all(u["url"] == f"{emu.url}{prefix}/Users/{u['sid']}" for u in users)


@pytest.mark.parametrize(("size", "status"), [
    pytest.param("50", 200, id="fifty-is-the-spec-maximum"),
    pytest.param("51", 400, id="fifty-one"),
    pytest.param("0", 400, id="zero"),
])
async def test_list_page_size_bound_is_fifty(http: aiohttp.ClientSession, dataset: Dataset,
                                             size: str, status: int) -> None:
    """Users and ParticipantConversations accept PageSize 1..50, the spec's bound for both."""
    svc = _named_service(dataset)
    for path, params in ((f"/v1/Services/{svc}/Users", {}),
                         ("/v1/ParticipantConversations", {"Identity": _regular(dataset)})):
        r = await http.get(path, params={**params, "PageSize": size})
        assert r.status == status


async def test_fetch_user_by_sid_or_identity(http: aiohttp.ClientSession, emu: Running,
                                             dataset: Dataset) -> None:
    """A User is fetched by its US SID or its identity, only through its own Service."""
    svc = _named_service(dataset)
    user = _users_of(dataset, svc)[0]
    base = f"/v1/Services/{svc}/Users"
    for key in (user.sid, user.identity):
        r = await http.get(f"{base}/{key}")
        assert r.status == 200
        body = await r.json()
        assert (body["sid"], body["identity"], body["friendly_name"], body["attributes"]) == (
            user.sid, user.identity, user.friendly_name, user.attributes)
        assert body["links"] == {"user_conversations": f"{emu.url}{base}/{user.sid}/Conversations"}
    # The default Service has a User of the same identity only if that person is there too.
    assert (await http.get(f"/v1/Users/{user.sid}")).status == 404
    for path in (f"{base}/US{'0' * 32}", f"{base}/nobody@example.com", "/v1/Users/USnot-a-sid",
                 f"/v1/Services/IS{'0' * 32}/Users/{user.sid}"):
        r = await http.get(path)
        assert r.status == 404 and (await r.json())["code"] == 20404


async def test_delete_user_keeps_participants_and_messages(
    http: aiohttp.ClientSession, emu: Running, dataset: Dataset
) -> None:
    """Deleting a User (here by identity) is 204 and then 404; the person's participants, their
    messages and the same identity's User in another Service stay; the ledger records it."""
    identity = _regular(dataset)
    svc = _named_service(dataset)
    user = next(u for u in dataset.users if u.service_sid == svc and u.identity == identity)
    other = next(u for u in dataset.users if u.service_sid != svc and u.identity == identity)
    r = await http.delete(f"/v1/Services/{svc}/Users/{identity}",
                          headers={"X-Twilio-Webhook-Enabled": "false"})
    assert r.status == 204 and await r.read() == b""
    for key in (user.sid, identity):
        assert (await http.get(f"/v1/Services/{svc}/Users/{key}")).status == 404
        assert (await http.delete(f"/v1/Services/{svc}/Users/{key}")).status == 404
    assert (await http.get(f"{_prefix(dataset, other.service_sid)}/Users/{identity}")).status \
        == 200
    conversations = _memberships(dataset, svc, identity=identity)
    assert len(conversations) >= 2
    for conv in conversations:
        p = next(p for p in conv.participants if p.identity == identity)
        base = f"/v1/Services/{svc}/Conversations/{conv.sid}"
        assert (await http.get(f"{base}/Participants/{p.sid}")).status == 200
        messages = (await (await http.get(f"{base}/Messages?PageSize=100")).json())["messages"]
        assert len(messages) == conv.message_count
    listed = await _walk(http, f"/v1/Services/{svc}/ParticipantConversations?Identity={identity}",
                         "conversations")
    assert [c["conversation_sid"] for c in listed] == [c.sid for c in conversations]
    assert {c["participant_user_sid"] for c in listed} == {None}
    ledger = emu.emulator.ledger
    assert [(d.kind, d.id, d.service_sid, d.via) for d in ledger.iter_deletions()] == [
        ("user", user.sid, svc, "request")]
    summary = await (await http.get("/_emulator/ledger/summary")).json()
    assert summary["deletions"]["user"] == 1
    assert summary["remaining"]["users"] == len(dataset.users) - 1
    assert summary["remaining"]["participants"] == sum(len(c.participants)
                                                       for c in dataset.conversations)
    led = await (await http.get("/_emulator/ledger")).json()
    assert led["requests"][0]["path"] == f"/v1/Services/{svc}/Users/{identity}"
    assert led["requests"][0]["webhook_enabled"] == "false"
    resources = await (await http.get("/_emulator/resources", params={"kind": "user"})).json()
    assert user.sid not in {u["sid"] for u in resources["items"]}
    assert len(resources["items"]) == len(dataset.users) - 1


async def test_participant_conversations_by_identity(http: aiohttp.ClientSession, emu: Running,
                                                     dataset: Dataset) -> None:
    """ParticipantConversations?Identity= lists the person's conversations of one Service with
    the spec's fields; the default path and a Service path each see their own Service only."""
    identity = _regular(dataset)
    seen = 0
    for service in dataset.services:
        prefix = _prefix(dataset, service.sid)
        expected = _memberships(dataset, service.sid, identity=identity)
        listed = await _walk(http, f"{prefix}/ParticipantConversations?Identity={identity}"
                                   "&PageSize=1", "conversations")
        assert [c["conversation_sid"] for c in listed] == [c.sid for c in expected]
        seen += len(listed)
        user = next((u for u in dataset.users
                     if u.service_sid == service.sid and u.identity == identity), None)
        for item, conv in zip(listed, expected, strict=True):
            p = next(p for p in conv.participants if p.identity == identity)
            assert item["participant_sid"] == p.sid and item["participant_identity"] == identity
            assert item["participant_user_sid"] == (user.sid if user else None)
            assert item["participant_messaging_binding"] is None
            assert item["chat_service_sid"] == service.sid
            assert item["conversation_state"] == conv.state
            assert item["links"]["conversation"] == f"{emu.url}{prefix}/Conversations/{conv.sid}"
            assert item["links"]["participant"] == (
                f"{emu.url}{prefix}/Conversations/{conv.sid}/Participants/{p.sid}")
    assert seen >= 3


async def test_participant_conversations_by_address(http: aiohttp.ClientSession,
                                                    dataset: Dataset) -> None:
    """Address= finds SMS participants and carries their messaging binding."""
    conv = next(c for c in dataset.conversations if any(p.address for p in c.participants))
    p = next(p for p in conv.participants if p.address)
    assert p.address is not None
    prefix = _prefix(dataset, conv.service_sid)
    r = await http.get(f"{prefix}/ParticipantConversations", params={"Address": p.address})
    body = await r.json()
    assert "Address=%2B" in body["meta"]["url"]
    item = next(i for i in body["conversations"] if i["conversation_sid"] == conv.sid)
    assert item["participant_identity"] is None and item["participant_user_sid"] is None
    assert item["participant_messaging_binding"] == {
        "type": "sms", "address": p.address, "proxy_address": p.proxy_address}


@pytest.mark.parametrize("params", [
    pytest.param({}, id="neither"),
    pytest.param({"Identity": "a@example.com", "Address": "+14155550100"}, id="both"),
    pytest.param({"Identity": "a@example.com", "PageToken": "garbage"}, id="bad-token"),
])
async def test_participant_conversations_needs_one_filter(http: aiohttp.ClientSession,
                                                          params: dict[str, str]) -> None:
    """Exactly one of Identity or Address is required; a bad PageToken is 400 too."""
    r = await http.get("/v1/ParticipantConversations", params=params)
    assert r.status == 400 and (await r.json())["code"] == 400


async def test_participant_conversations_paging_survives_deletes(
    http: aiohttp.ClientSession, dataset: Dataset
) -> None:
    """Deleting each listed conversation before the next page skips none (keyset paging), and
    an unknown identity is an empty list; a token is tied to its filter."""
    identity = _regular(dataset)
    svc = _named_service(dataset)
    expected = _memberships(dataset, svc, identity=identity)
    url: str | None = f"/v1/Services/{svc}/ParticipantConversations?Identity={identity}&PageSize=2"
    seen: list[str] = []
    token = None
    while url:
        page = await (await http.get(url)).json()
        for item in page["conversations"]:
            seen.append(item["conversation_sid"])
            r = await http.delete(f"/v1/Services/{svc}/Conversations/{item['conversation_sid']}")
            assert r.status == 204
        url = page["meta"]["next_page_url"]
        token = token or (url.split("PageToken=")[1] if url else None)
    assert seen == [c.sid for c in expected]
    assert token is not None
    r = await http.get(f"/v1/Services/{svc}/ParticipantConversations",
                       params={"Identity": "someone.else@example.com", "PageToken": token})
    assert r.status == 400
    r = await http.get(f"/v1/Services/{svc}/ParticipantConversations",
                       params={"Identity": "someone.else@example.com"})
    assert (await r.json())["conversations"] == []


async def test_user_deletes_share_the_service_aps(dataset: Dataset) -> None:
    """User DELETEs take from the per-Service APS bucket (a second one at once is 429) while
    reads and other Services are not limited."""
    server, emu = await start(fast_settings(service_aps=0.01), dataset)
    try:
        async with aiohttp.ClientSession(emu.url, headers=auth_header(emu.settings)) as s:
            svc = _named_service(dataset)
            first, second = _users_of(dataset, svc)[:2]
            assert (await s.delete(f"/v1/Services/{svc}/Users/{first.sid}")).status == 204
            r = await s.delete(f"/v1/Services/{svc}/Users/{second.sid}")
            assert r.status == 429 and (await r.json())["code"] == 20429
            assert int(r.headers["Retry-After"]) >= 1
            assert (await s.get(f"/v1/Services/{svc}/Users/{second.sid}")).status == 200
            default_user = _users_of(dataset, dataset.default_service.sid)[0]
            assert (await s.delete(f"/v1/Users/{default_user.sid}")).status == 204
        assert emu.emulator.ledger.throttled["service_aps"] == 1
        assert [d.id for d in emu.emulator.ledger.iter_deletions()] == [first.sid,
                                                                         default_user.sid]
    finally:
        await server.close()
    assert emu.checker.problems == []


async def test_a_regular_with_phones_is_found_by_identity_and_each_address() -> None:
    """With regular_phones, one person takes part in conversations of two Services by chat
    identity, by SMS and by WhatsApp, and writes messages as each; ParticipantConversations
    finds every participation by identity or by either address, the WhatsApp one with a
    whatsapp binding, and every exchange passes the spec checker."""
    dataset = generate("small", regulars=1, regular_phones=True, service_conversations=6,
                       plain=0)
    (identity,) = {c.participants[0].identity for c in dataset.conversations} - {None}
    sms, whatsapp = sorted({a for c in dataset.conversations if (a := c.participants[0].address)})
    assert whatsapp == f"whatsapp:{sms}" and identity is not None
    server, emu = await start(fast_settings(), dataset)
    try:
        services: set[str] = set()
        async with aiohttp.ClientSession(emu.url, headers=auth_header(emu.settings)) as s:
            for value, name in ((identity, "Identity"), (sms, "Address"), (whatsapp, "Address")):
                listed = []
                for service in (sv.sid for sv in dataset.services if not sv.is_default):
                    url = f"/v1/Services/{service}/ParticipantConversations"
                    r = await s.get(url, params={name: value, "PageSize": "50"})
                    assert r.status == 200
                    listed += (await r.json())["conversations"]
                expected = {c.sid for c in dataset.conversations
                            if value in (c.participants[0].identity, c.participants[0].address)}
                assert {i["conversation_sid"] for i in listed} == expected
                services |= {i["chat_service_sid"] for i in listed}
                authors = {dataset.message_content(c, i)[0] for c in dataset.conversations
                           if c.sid in expected for i in range(c.message_count)}
                assert value in authors
                if name == "Address":
                    kind = "whatsapp" if value == whatsapp else "sms"
                    assert {i["participant_messaging_binding"]["type"] for i in listed} == {kind}
        assert services == {sv.sid for sv in dataset.services if not sv.is_default}
    finally:
        await server.close()
    assert emu.checker.problems == []
