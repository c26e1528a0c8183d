"""Conversations v1 over HTTP: envelopes, filters, keyset paging, fetch, delete, cascade."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from runner.emulator import Dataset

from .conftest import Running


def _named_service(dataset: Dataset) -> str:
    return next(s.sid for s in dataset.services if not s.is_default)


async def _json(response: aiohttp.ClientResponse) -> Any:
    return await response.json()


async def test_list_envelope_is_exact(http: aiohttp.ClientSession, emu: Running,
                                      dataset: Dataset) -> None:
    """A v1 list carries meta with exactly Twilio's keys and absolute URLs on the emulator."""
    svc = _named_service(dataset)
    r = await http.get(f"/v1/Services/{svc}/Conversations", params={"PageSize": "5"})
    assert r.status == 200
    body = await r.json()
    assert set(body) == {"conversations", "meta"}
    meta = body["meta"]
    assert set(meta) == {"page", "page_size", "first_page_url", "previous_page_url", "url",
                         "next_page_url", "key"}
    assert meta["key"] == "conversations" and meta["page"] == 0 and meta["page_size"] == 5
    assert meta["previous_page_url"] is None
    assert meta["next_page_url"].startswith(emu.url + f"/v1/Services/{svc}/Conversations?")
    assert "PageToken=" in meta["next_page_url"] and "Page=1" in meta["next_page_url"]
    assert len(body["conversations"]) == 5


async def test_default_service_scope(http: aiohttp.ClientSession, dataset: Dataset) -> None:
    """/v1/Conversations lists only the default Service's conversations, as Twilio does."""
    r = await http.get("/v1/Conversations")
    sids = {c["sid"] for c in (await r.json())["conversations"]}
    expected = {c.sid for c in dataset.conversations
                if c.service_sid == dataset.default_service.sid}
    assert sids == expected and expected


async def test_configuration_names_the_default_service(
    http: aiohttp.ClientSession, dataset: Dataset
) -> None:
    """GET /v1/Configuration answers the account's default Conversations Service, as Twilio's
    conversations.v1.configuration does (the exchange is spec-checked)."""
    r = await http.get("/v1/Configuration")
    assert r.status == 200
    assert (await r.json())["default_chat_service_sid"] == dataset.default_service.sid


async def test_next_page_url_carries_filters_and_survives_deletes(
    http: aiohttp.ClientSession, dataset: Dataset
) -> None:
    """Deleting every listed item between pages never skips one (keyset, not offset)."""
    svc = _named_service(dataset)
    expected = sorted(
        (c for c in dataset.conversations if c.service_sid == svc and c.state != "closed"),
        key=lambda c: (-c.date_created, c.sid),
    )
    seen: list[str] = []
    url: str | None = f"/v1/Services/{svc}/Conversations?StartDate=2000-01-01T00:00:00Z&PageSize=2"
    state_filtered = []
    while url:
        r = await http.get(url)
        assert r.status == 200
        page = await r.json()
        for conv in page["conversations"]:
            seen.append(conv["sid"])
            state_filtered.append(conv["state"])
            d = await http.delete(f"/v1/Services/{svc}/Conversations/{conv['sid']}")
            assert d.status == 204
        url = page["meta"]["next_page_url"]
        if url:
            assert "StartDate=2000-01-01T00%3A00%3A00Z" in url
    everything = sorted((c for c in dataset.conversations if c.service_sid == svc),
                        key=lambda c: (-c.date_created, c.sid))
    assert seen == [c.sid for c in everything]
    assert expected  # the dataset has non-closed ones too


async def test_state_filter_and_newest_first(http: aiohttp.ClientSession, dataset: Dataset
                                             ) -> None:
    """State filters, and a date filter sorts newest first while no filter sorts oldest first."""
    svc = _named_service(dataset)
    r = await http.get(f"/v1/Services/{svc}/Conversations", params={"State": "closed"})
    convs = (await r.json())["conversations"]
    assert convs and all(c["state"] == "closed" for c in convs)
    dates = [c["date_created"] for c in convs]
    assert dates == sorted(dates)
    r = await http.get(f"/v1/Services/{svc}/Conversations",
                       params={"State": "closed", "EndDate": "2999-12-31T23:59:59Z"})
    dates2 = [c["date_created"] for c in (await r.json())["conversations"]]
    assert dates2 == sorted(dates, reverse=True)


async def test_date_range_filters(http: aiohttp.ClientSession, dataset: Dataset) -> None:
    """StartDate and EndDate select by creation date inclusively."""
    svc = _named_service(dataset)
    convs = sorted((c for c in dataset.conversations if c.service_sid == svc),
                   key=lambda c: c.date_created)
    lo, hi = convs[2].date_created, convs[-3].date_created
    from runner.emulator.clock import iso

    r = await http.get(f"/v1/Services/{svc}/Conversations",
                       params={"StartDate": iso(lo), "EndDate": iso(hi), "PageSize": "100"})
    got = {c["sid"] for c in (await r.json())["conversations"]}
    assert got == {c.sid for c in convs if lo <= c.date_created <= hi}


@pytest.mark.parametrize("query", [
    pytest.param({"PageSize": "0"}, id="page-size-zero"),
    pytest.param({"PageSize": "101"}, id="page-size-101"),
    pytest.param({"PageSize": "x"}, id="page-size-text"),
    pytest.param({"State": "deleted"}, id="bad-state"),
    pytest.param({"StartDate": "yesterday"}, id="bad-date"),
    pytest.param({"PageToken": "garbage"}, id="bad-token"),
    pytest.param({"Page": "-1"}, id="negative-page"),
])
async def test_bad_list_parameters(http: aiohttp.ClientSession, query: dict[str, str]) -> None:
    """Out-of-range or malformed list parameters answer 400 with Twilio's error body."""
    r = await http.get("/v1/Conversations", params=query)
    assert r.status == 400
    body = await r.json()
    assert body["status"] == 400 and body["more_info"].startswith("https://www.twilio.com/")


async def test_token_from_another_list_is_rejected(http: aiohttp.ClientSession,
                                                   dataset: Dataset) -> None:
    """A PageToken only works on the list (path and filters) that issued it."""
    svc = _named_service(dataset)
    r = await http.get(f"/v1/Services/{svc}/Conversations", params={"PageSize": "1"})
    token = (await r.json())["meta"]["next_page_url"].split("PageToken=")[1]
    r = await http.get(f"/v1/Services/{svc}/Conversations",
                       params={"PageSize": "1", "State": "active", "PageToken": token})
    assert r.status == 400


async def test_messages_order_and_paging_while_deleting(
    http: aiohttp.ClientSession, dataset: Dataset
) -> None:
    """Messages page asc and desc; deleting each listed page skips nothing."""
    conv = max(dataset.conversations, key=lambda c: c.message_count)
    base = f"/v1/Services/{conv.service_sid}/Conversations/{conv.sid}/Messages"
    if conv.service_sid == dataset.default_service.sid:
        base = f"/v1/Conversations/{conv.sid}/Messages"
    r = await http.get(base, params={"Order": "desc", "PageSize": "100"})
    desc = [m["index"] for m in (await r.json())["messages"]]
    assert desc == list(range(conv.message_count - 1, -1, -1))
    url: str | None = f"{base}?PageSize=3&Order=asc"
    seen = []
    while url:
        page = await (await http.get(url)).json()
        for m in page["messages"]:
            seen.append(m["index"])
            assert (await http.delete(f"{base}/{m['sid']}")).status == 204
        url = page["meta"]["next_page_url"]
    assert seen == list(range(conv.message_count))
    r = await http.get(base)
    assert (await r.json())["messages"] == []


async def test_previous_page_url_walks_back(http: aiohttp.ClientSession, dataset: Dataset
                                            ) -> None:
    """previous_page_url returns the page before, in list order."""
    conv = max(dataset.conversations, key=lambda c: c.message_count)
    prefix = "" if conv.service_sid == dataset.default_service.sid else \
        f"/Services/{conv.service_sid}"
    base = f"/v1{prefix}/Conversations/{conv.sid}/Messages"
    first = await (await http.get(base, params={"PageSize": "2"})).json()
    second = await (await http.get(first["meta"]["next_page_url"])).json()
    back = await (await http.get(second["meta"]["previous_page_url"])).json()
    assert [m["sid"] for m in back["messages"]] == [m["sid"] for m in first["messages"]]
    assert back["meta"]["previous_page_url"] is None


async def test_fetch_and_delete_each_kind(http: aiohttp.ClientSession, emu: Running,
                                          dataset: Dataset) -> None:
    """Fetch by SID (participants also by identity); DELETE is 204 with an empty body."""
    conv = next(c for c in dataset.conversations
                if c.service_sid != dataset.default_service.sid and c.message_count)
    base = f"/v1/Services/{conv.service_sid}/Conversations/{conv.sid}"
    r = await http.get(base)
    assert r.status == 200 and (await r.json())["sid"] == conv.sid
    ident = next(p for p in conv.participants if p.identity)
    r = await http.get(f"{base}/Participants/{ident.identity}")
    assert r.status == 200 and (await r.json())["sid"] == ident.sid
    r = await http.get(f"{base}/Participants/{ident.sid}")
    assert (await r.json())["identity"] == ident.identity
    r = await http.delete(f"{base}/Participants/{ident.sid}")
    assert r.status == 204 and await r.read() == b""
    assert (await http.get(f"{base}/Participants/{ident.sid}")).status == 404
    msgs = await (await http.get(f"{base}/Messages")).json()
    msg = msgs["messages"][0]
    assert (await http.get(f"{base}/Messages/{msg['sid']}")).status == 200
    r = await http.delete(f"{base}/Messages/{msg['sid']}")
    assert r.status == 204 and await r.read() == b""
    assert (await http.delete(f"{base}/Messages/{msg['sid']}")).status == 404
    r = await http.delete(base)
    assert r.status == 204 and await r.read() == b""
    assert (await http.get(base)).status == 404
    kinds = [(d.kind, d.via) for d in list(emu.emulator.ledger.iter_deletions())]
    assert kinds[:3] == [("participant", "request"), ("message", "request"),
                         ("conversation_v1", "request")]
    cascaded = [d for d in list(emu.emulator.ledger.iter_deletions()) if d.via == "cascade"]
    assert len([d for d in cascaded if d.kind == "message"]) == conv.message_count - 1
    assert len([d for d in cascaded if d.kind == "participant"]) == len(conv.participants) - 1


async def test_service_scoping_and_malformed_sids(http: aiohttp.ClientSession,
                                                  dataset: Dataset) -> None:
    """A conversation is only reachable through its own Service; malformed SIDs are 404."""
    conv = next(c for c in dataset.conversations if c.service_sid != dataset.default_service.sid)
    assert (await http.get(f"/v1/Conversations/{conv.sid}")).status == 404
    assert (await http.get("/v1/Services/ISnope/Conversations")).status == 404
    unknown = "IS" + "0" * 32
    assert (await http.get(f"/v1/Services/{unknown}/Conversations")).status == 404
    base = f"/v1/Services/{conv.service_sid}/Conversations/{conv.sid}"
    for path in ("/Messages/IMnot-a-sid", "/Messages/IM" + "0" * 32, "/Participants/MB" + "1" * 32,
                 "/Participants/nobody"):
        r = await http.get(base + path)
        assert r.status == 404
        assert (await r.json())["code"] == 20404


async def test_unique_name_addresses_a_conversation(emu: Running) -> None:
    """A conversation can be fetched by its unique_name (the spec's Sid description)."""
    from runner.emulator.app import build_app  # noqa: F401  (documented entry point)
    from runner.emulator.dataset import dataset_from_mapping

    ds = dataset_from_mapping({"conversations": [{"unique_name": "order-4711", "messages": 1}]})
    from .conftest import auth_header, start

    server, running = await start(emu.settings, ds)
    try:
        async with aiohttp.ClientSession(running.url, headers=auth_header(emu.settings)) as s:
            r = await s.get("/v1/Conversations/order-4711")
            assert r.status == 200 and (await r.json())["unique_name"] == "order-4711"
    finally:
        await server.close()
    assert running.checker.problems == []


async def test_auth_required(emu: Running) -> None:
    """Missing or wrong credentials get 401 / 20003; the API key pair is accepted too."""
    async with aiohttp.ClientSession(emu.url) as s:
        r = await s.get("/v1/Conversations")
        assert r.status == 401 and (await r.json())["code"] == 20003
        bad = {"Authorization": aiohttp.encode_basic_auth(emu.settings.account_sid, "wrong")}
        assert (await s.get("/v2/Conversations", headers=bad)).status == 401
        assert (await s.get("/v1/ControlPlane/Stores",
                            headers={"Authorization": "Bearer x"})).status == 401
        assert emu.settings.api_key and emu.settings.api_secret
        key = {"Authorization": aiohttp.encode_basic_auth(emu.settings.api_key,
                                                          emu.settings.api_secret)}
        assert (await s.get("/v1/ControlPlane/Stores", headers=key)).status == 200


async def test_unknown_path_and_method(http: aiohttp.ClientSession) -> None:
    """Unknown paths answer Twilio's 404 body; unsupported methods 405."""
    r = await http.get("/v1/Nothing")
    assert r.status == 404 and (await r.json())["code"] == 20404
    r = await http.post("/v2/ControlPlane/Operations/proc_job_01h9d8r0vte3hz8tykdj329t7r")
    assert r.status == 405 and (await r.json())["status"] == 405


async def test_kept_resources_answer_204_and_stay(http: aiohttp.ClientSession, emu: Running,
                                                  dataset: Dataset) -> None:
    """keep_resources: a kept message, participant or conversation DELETE is answered 204, yet
    each is still fetched (a kept conversation takes nothing with it) and nothing is recorded
    as deleted."""
    conv = next(c for c in dataset.conversations if c.message_count and c.participants)
    base = f"/v1/Services/{conv.service_sid}/Conversations/{conv.sid}"
    msg = (await (await http.get(f"{base}/Messages")).json())["messages"][0]["sid"]
    part = conv.participants[0].sid
    emu.settings.keep_resources = [conv.sid, msg, part]
    paths = [f"{base}/Messages/{msg}", f"{base}/Participants/{part}", base]
    for path in paths:
        assert (await http.delete(path)).status == 204
    for path in paths:
        assert (await http.get(path)).status == 200
    assert list(emu.emulator.ledger.iter_deletions()) == []
