"""Conversation Memory v1 over HTTP: store IDs, async store deletion, OperationStatus."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from runner.emulator import Dataset, EmulatorSettings

from .conftest import Running, fast_settings


async def _until_done(http: aiohttp.ClientSession, emu: Running, url: str) -> dict[str, Any]:
    """The Operation once its time is up: the emulator's clock is moved past its PENDING and
    RUNNING spells (where a client would poll through them), then one GET finds it ended."""
    emu.emulator.advance_monotonic(emu.settings.operation_pending_s
                                   + emu.settings.operation_running_s)
    op: dict[str, Any] = await (await http.get(url)).json()
    assert op["status"] in ("FAILED", "COMPLETED")
    return op


async def test_store_list_is_ids_with_order(http: aiohttp.ClientSession, dataset: Dataset
                                            ) -> None:
    """Stores list as bare IDs, DESC by default, ASC on request, paged by token."""
    ids = sorted(s.id for s in dataset.stores)
    body = await (await http.get("/v1/ControlPlane/Stores")).json()
    assert body["stores"] == ids[::-1] and body["meta"] == {"key": "stores",
                                                             "pageSize": len(ids)}
    seen: list[str] = []
    token = None
    while True:
        params = {"orderBy": "ASC", "pageSize": "1"} | ({"pageToken": token} if token else {})
        page = await (await http.get("/v1/ControlPlane/Stores", params=params)).json()
        seen += page["stores"]
        token = page["meta"].get("nextToken")
        if not token:
            break
    assert seen == ids


@pytest.mark.parametrize("params", [
    pytest.param({"pageSize": "101"}, id="page-size-101"),
    pytest.param({"orderBy": "asc"}, id="lowercase-order"),
    pytest.param({"pageToken": "x" * 4097}, id="token-too-long"),
])
async def test_store_list_bad_parameters(http: aiohttp.ClientSession, params: dict[str, str]
                                         ) -> None:
    """Bad store-list parameters are 400."""
    assert (await http.get("/v1/ControlPlane/Stores", params=params)).status == 400


async def test_delete_store_to_completed(http: aiohttp.ClientSession, emu: Running,
                                         dataset: Dataset) -> None:
    """DELETE is 202 {message, statusUrl}; the Operation reaches COMPLETED with a result."""
    # Each spell lasts an hour, ended by moving the emulator's clock: the conflict and the
    # pending GET below see a pending Operation however slowly this test runs.
    emu.settings.operation_pending_s = 3600.0
    emu.settings.operation_running_s = 3600.0
    sid = dataset.stores[0].id
    assert (await http.get(f"/v1/ControlPlane/Stores/{sid}")).status == 200
    r = await http.delete(f"/v1/ControlPlane/Stores/{sid}")
    assert r.status == 202
    body = await r.json()
    assert set(body) == {"message", "statusUrl"}
    assert r.headers["Location"] == body["statusUrl"]
    assert r.headers["Operation-Id"].startswith("mem_operation_")
    conflict = await http.delete(f"/v1/ControlPlane/Stores/{sid}")
    assert conflict.status == 409
    assert conflict.headers["X-Conflicting-Resource-Id"] == r.headers["Operation-Id"]
    pending = await http.get(body["statusUrl"])
    assert "Retry-After" in pending.headers
    op = await _until_done(http, emu, body["statusUrl"])
    assert op["result"] == {"type": "RESOURCE_ID", "id": sid}
    assert (await http.get(f"/v1/ControlPlane/Stores/{sid}")).status == 404
    assert sid not in (await (await http.get("/v1/ControlPlane/Stores")).json())["stores"]


@pytest.mark.parametrize("settings", [fast_settings(operation_failure_rate=1.0)])
async def test_failed_store_deletion(http: aiohttp.ClientSession, emu: Running, dataset: Dataset,
                                     settings: EmulatorSettings) -> None:
    """A FAILED store deletion carries {type, title, code, detail} and keeps the store."""
    sid = dataset.stores[1].id
    r = await http.delete(f"/v1/ControlPlane/Stores/{sid}")
    url = (await r.json())["statusUrl"]
    op = await _until_done(http, emu, url)
    assert op["status"] == "FAILED" and set(op["error"]) == {"type", "title", "code", "detail"}
    assert "result" not in op
    assert (await http.get(f"/v1/ControlPlane/Stores/{sid}")).status == 200


async def test_store_ids_validated(http: aiohttp.ClientSession) -> None:
    """A malformed store ID is 400 (the spec's pattern), an unknown one 404."""
    assert (await http.delete("/v1/ControlPlane/Stores/store-1")).status == 400
    r = await http.delete("/v1/ControlPlane/Stores/mem_store_00000000000000000000000000")
    assert r.status == 404
    assert (await http.get("/v1/ControlPlane/Operations/" + "x" * 513)).status == 400
    assert (await http.get("/v1/ControlPlane/Operations/mem_operation_x")).status == 404
