"""Conversation Orchestrator v2 over HTTP: token lists, async deletes, Operations, idempotency."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import pytest

from runner.emulator import Dataset, EmulatorSettings

from .conftest import Running, fast_settings


async def _wait_done(http: aiohttp.ClientSession, emu: Running, status_url: str
                     ) -> dict[str, Any]:
    """The Operation once its time is up: the emulator's clock is moved past its PENDING and
    RUNNING spells (where a client would poll through them), then one GET finds it ended."""
    emu.emulator.advance_monotonic(emu.settings.operation_pending_s
                                   + emu.settings.operation_running_s)
    r = await http.get(status_url)
    assert r.status == 200
    body: dict[str, Any] = await r.json()
    assert body["status"] in ("COMPLETED", "FAILED")
    return body


async def test_list_status_filter_and_tokens(http: aiohttp.ClientSession, dataset: Dataset
                                             ) -> None:
    """status is a repeated key; pages chain by nextToken and cover every match once."""
    wanted = {"ACTIVE", "CLOSED"}
    expected = sorted(c.id for c in dataset.conversations_v2 if c.status in wanted)
    seen: list[str] = []
    token = None
    while True:
        params = [("status", "ACTIVE"), ("status", "CLOSED"), ("pageSize", "1")]
        if token:
            params.append(("pageToken", token))
        body = await (await http.get("/v2/Conversations", params=params)).json()
        assert body["meta"]["key"] == "conversations"
        assert body["meta"]["pageSize"] == len(body["conversations"])
        seen += [c["id"] for c in body["conversations"]]
        token = body["meta"].get("nextToken")
        if not token:
            break
    assert seen == expected


@pytest.mark.parametrize("params", [
    pytest.param({"pageSize": "0"}, id="zero"),
    pytest.param({"pageSize": "1001"}, id="1001"),
    pytest.param({"status": "OPEN"}, id="bad-status"),
    pytest.param({"pageToken": "!!"}, id="bad-token"),
])
async def test_list_bad_parameters(http: aiohttp.ClientSession, params: dict[str, str]) -> None:
    """Bad list parameters answer 400 with the classic body."""
    r = await http.get("/v2/Conversations", params=params)
    assert r.status == 400 and (await r.json())["code"] == 400


async def test_page_size_1000_allowed(http: aiohttp.ClientSession, dataset: Dataset) -> None:
    """pageSize=1000 is the documented maximum and returns everything at once."""
    body = await (await http.get("/v2/Conversations", params={"pageSize": "1000"})).json()
    assert len(body["conversations"]) == len(dataset.conversations_v2)
    assert "nextToken" not in body["meta"]


async def test_async_delete_lifecycle(http: aiohttp.ClientSession, emu: Running,
                                      dataset: Dataset) -> None:
    """202 with headers and body; PENDING -> RUNNING -> COMPLETED; then the resource is gone.

    Each state lasts an hour and the test moves the emulator's clock past it, so what a poll
    sees depends on no scheduler."""
    emu.settings.operation_pending_s = 3600.0
    emu.settings.operation_running_s = 3600.0
    cid = dataset.conversations_v2[0].id
    r = await http.delete(f"/v2/Conversations/{cid}")
    assert r.status == 202
    op_id = r.headers["Operation-Id"]
    assert r.headers["Location"] == f"{emu.url}/v2/ControlPlane/Operations/{op_id}"
    assert int(r.headers["Retry-After"]) >= 1
    body = await r.json()
    assert body == {"statusUrl": r.headers["Location"], "related": {"conversationId": cid}}
    statuses = []
    for _ in range(3):
        op = await (await http.get(body["statusUrl"])).json()
        statuses.append(op["status"])
        emu.emulator.advance_monotonic(3600.0)
    assert statuses == ["PENDING", "RUNNING", "COMPLETED"]
    assert op["completedAt"] is not None and op["error"] is None
    listed = await (await http.get("/v2/Conversations", params={"pageSize": "1000"})).json()
    assert cid not in {c["id"] for c in listed["conversations"]}
    assert (await http.delete(f"/v2/Conversations/{cid}")).status == 404
    deletion = list(emu.emulator.ledger.iter_deletions())[-1]
    assert (deletion.kind, deletion.id, deletion.via) == ("conversation_v2", cid, "operation")


async def test_second_delete_while_pending_conflicts(http: aiohttp.ClientSession, emu: Running,
                                                     dataset: Dataset) -> None:
    """A second DELETE while the first is pending is 409 naming the pending Operation."""
    emu.settings.operation_pending_s = 3600.0  # pending until _wait_done moves the clock on
    emu.settings.operation_running_s = 3600.0
    cfg = dataset.configurations[0].id
    first = await http.delete(f"/v2/ControlPlane/Configurations/{cfg}")
    assert first.status == 202
    assert (await first.json())["related"] == {"configurationId": cfg}
    second = await http.delete(f"/v2/ControlPlane/Configurations/{cfg}")
    assert second.status == 409
    assert second.headers["X-Conflicting-Resource-Id"] == first.headers["Operation-Id"]
    assert (await second.json())["code"] == 20409
    done = await _wait_done(http, emu, (await first.json())["statusUrl"])
    assert done["status"] == "COMPLETED"


@pytest.mark.parametrize("settings", [fast_settings(operation_failure_rate=1.0)])
async def test_failed_operation_keeps_resource(http: aiohttp.ClientSession, emu: Running,
                                               dataset: Dataset, settings: EmulatorSettings
                                               ) -> None:
    """A FAILED Operation carries the spec's error object and the resource stays."""
    cid = dataset.conversations_v2[1].id
    r = await http.delete(f"/v2/Conversations/{cid}")
    done = await _wait_done(http, emu, (await r.json())["statusUrl"])
    assert done["status"] == "FAILED"
    assert set(done["error"]) == {"type", "title", "status", "detail", "instance"}
    listed = await (await http.get("/v2/Conversations", params={"pageSize": "1000"})).json()
    assert cid in {c["id"] for c in listed["conversations"]}
    assert list(emu.emulator.ledger.iter_deletions()) == []
    again = await http.delete(f"/v2/Conversations/{cid}")
    assert again.status == 202  # a failed deletion may be retried


async def test_idempotency_replay(http: aiohttp.ClientSession, emu: Running, dataset: Dataset
                                  ) -> None:
    """Same key, same request: the original 202 with the same Operation-Id, nothing created."""
    cid = dataset.conversations_v2[2].id
    key = str(uuid.uuid4())
    first = await http.delete(f"/v2/Conversations/{cid}", headers={"Idempotency-Key": key})
    body = await first.read()
    again = await http.delete(f"/v2/Conversations/{cid}", headers={"Idempotency-Key": key})
    assert again.status == 202 and await again.read() == body
    assert again.headers["Operation-Id"] == first.headers["Operation-Id"]
    await _wait_done(http, emu, (await first.json())["statusUrl"])
    late = await http.delete(f"/v2/Conversations/{cid}", headers={"Idempotency-Key": key})
    assert late.status == 202 and late.headers["Operation-Id"] == first.headers["Operation-Id"]
    assert len(emu.emulator.operations.operations) == 1
    assert [r.operation_id for r in emu.emulator.ledger.replays] == \
        [first.headers["Operation-Id"]] * 2


async def test_idempotency_key_reuse_and_ttl(http: aiohttp.ClientSession, emu: Running,
                                             dataset: Dataset) -> None:
    """A key reused on another request is 409; after 24 h emulated it is forgotten."""
    a, b = dataset.conversations_v2[3].id, dataset.conversations_v2[4].id
    key = str(uuid.uuid4())
    first = await http.delete(f"/v2/Conversations/{a}", headers={"Idempotency-Key": key})
    assert first.status == 202
    other = await http.delete(f"/v2/Conversations/{b}", headers={"Idempotency-Key": key})
    assert other.status == 409
    assert other.headers["X-Conflicting-Resource-Id"] == first.headers["Operation-Id"]
    r = await http.post("/_emulator/clock", json={"advance_s": 86_401})
    assert r.status == 200
    fresh = await http.delete(f"/v2/Conversations/{b}", headers={"Idempotency-Key": key})
    assert fresh.status == 202
    assert fresh.headers["Operation-Id"] != first.headers["Operation-Id"]


@pytest.mark.parametrize("key", ["nope", "01890a5d-aa0f-7c80-b8e6-0242ac14000", "{}"])
async def test_malformed_idempotency_key(http: aiohttp.ClientSession, dataset: Dataset,
                                         key: str) -> None:
    """A key that is not a UUID is 400 and creates nothing."""
    r = await http.delete(f"/v2/Conversations/{dataset.conversations_v2[0].id}",
                          headers={"Idempotency-Key": key})
    assert r.status == 400


async def test_ids_validated(http: aiohttp.ClientSession) -> None:
    """Malformed v2 IDs are 400 where the spec declares 400, unknown ones 404."""
    assert (await http.delete("/v2/Conversations/CH123")).status == 400
    unknown = "conv_conversation_01h9d8r0vte3hz8tykdj329t7r"
    assert (await http.delete(f"/v2/Conversations/{unknown}")).status == 404
    assert (await http.delete("/v2/ControlPlane/Configurations/nope")).status == 404
    assert (await http.get("/v2/ControlPlane/Operations/nope")).status == 400
    r = await http.get("/v2/ControlPlane/Operations/proc_job_01h9d8r0vte3hz8tykdj329t7r")
    assert r.status == 404 and (await r.json())["code"] == 20404


async def test_configurations_list_and_filter(http: aiohttp.ClientSession, dataset: Dataset
                                              ) -> None:
    """Configurations list with the token envelope and the memoryStoreId filter."""
    body = await (await http.get("/v2/ControlPlane/Configurations")).json()
    assert [c["id"] for c in body["configurations"]] == [c.id for c in dataset.configurations]
    store = dataset.configurations[0].memory_store_id
    body = await (await http.get("/v2/ControlPlane/Configurations",
                                 params={"memoryStoreId": store})).json()
    assert {c["memoryStoreId"] for c in body["configurations"]} == {store}
    r = await http.get("/v2/ControlPlane/Configurations", params={"memoryStoreId": "x"})
    assert r.status == 400


async def test_operations_expire_after_retention(http: aiohttp.ClientSession, emu: Running,
                                                 dataset: Dataset) -> None:
    """Finished Operations are queryable for 7 emulated days, then 404."""
    r = await http.delete(f"/v2/Conversations/{dataset.conversations_v2[5].id}")
    url = (await r.json())["statusUrl"]
    await _wait_done(http, emu, url)
    await http.post("/_emulator/clock", json={"advance_s": 8 * 86_400})
    assert (await http.get(url)).status == 404


@pytest.mark.parametrize("path", [
    pytest.param("/v2/Conversations", id="conversation"),
    pytest.param("/v2/ControlPlane/Configurations", id="configuration"),
])
async def test_fetch_until_the_deletion_completes(http: aiohttp.ClientSession, emu: Running,
                                                  path: str) -> None:
    """A v2 conversation or configuration is fetched (200) while its deletion is pending, and
    404 once the Operation completed; malformed IDs answer as their DELETE does."""
    emu.settings.operation_pending_s = 3600.0
    listed = await (await http.get(path)).json()
    item = next(iter(listed.values()))[0]
    fetched = await http.get(f"{path}/{item['id']}")
    assert fetched.status == 200 and await fetched.json() == item
    r = await http.delete(f"{path}/{item['id']}")
    assert (await http.get(f"{path}/{item['id']}")).status == 200
    assert (await _wait_done(http, emu, (await r.json())["statusUrl"]))["status"] == "COMPLETED"
    gone = await http.get(f"{path}/{item['id']}")
    assert gone.status == 404 and (await gone.json())["code"] == 20404
    assert (await http.get("/v2/Conversations/CH123")).status == 400
    assert (await http.get("/v2/ControlPlane/Configurations/nope")).status == 404


async def test_kept_resource_answers_its_delete_but_stays(http: aiohttp.ClientSession,
                                                         emu: Running, dataset: Dataset) -> None:
    """keep_resources: the DELETE gets its 202 and the Operation completes, yet the resource is
    still fetched and listed, and the ledger records no deletion."""
    cid = dataset.conversations_v2[1].id
    r = await http.post("/_emulator/settings", json={"keep_resources": [cid]})
    assert r.status == 200 and (await r.json())["keep_resources"] == [cid]
    r = await http.delete(f"/v2/Conversations/{cid}")
    assert r.status == 202
    assert (await _wait_done(http, emu, (await r.json())["statusUrl"]))["status"] == "COMPLETED"
    assert (await http.get(f"/v2/Conversations/{cid}")).status == 200
    assert not [d for d in emu.emulator.ledger.iter_deletions() if d.id == cid]
    bad = await http.post("/_emulator/settings", json={"keep_resources": [1]})
    assert bad.status == 400
