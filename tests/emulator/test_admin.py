"""The admin API: ledger, summary, resources, settings and clock, with clear 400s."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from runner.emulator import Dataset

from .conftest import Running, fast_settings


# The v2 delete's Operation must still be pending when the ledger is read, however slow the
# machine: with the fast default (0.1 s) a busy one completed it first, adding a deletion.
@pytest.mark.parametrize("settings", [fast_settings(operation_pending_s=3600.0)])
async def test_ledger_shape_and_since(http: aiohttp.ClientSession, emu: Running,
                                      dataset: Dataset) -> None:
    """The ledger records requests (filterable by since), deletions, operations and remaining."""
    conv = next(c for c in dataset.conversations if c.service_sid == dataset.default_service.sid)
    assert (await http.delete(f"/v1/Conversations/{conv.sid}")).status == 204
    key = "01890a5d-aa0f-7c80-b8e6-0242ac140004"
    r = await http.delete(f"/v2/Conversations/{dataset.conversations_v2[0].id}",
                          headers={"Idempotency-Key": key})
    assert r.status == 202
    led: dict[str, Any] = await (await http.get("/_emulator/ledger")).json()
    assert set(led) == {"requests", "deletions", "operations", "replays", "throttled",
                        "sent_during_pause", "faults", "remaining"}
    first, second = led["requests"]
    assert set(first) == {"seq", "method", "path", "query", "status", "idempotency_key",
                          "time", "throttled_by", "webhook_enabled"}
    assert (first["method"], first["status"]) == ("DELETE", 204)
    assert second["idempotency_key"] == key
    assert {d["kind"] for d in led["deletions"]} == {"conversation_v1", "message", "participant"}
    assert set(led["deletions"][0]) == {"kind", "id", "conversation_sid", "service_sid",
                                        "request_seq", "via"}
    assert led["operations"][0]["idempotency_key"] == key
    assert set(led["operations"][0]) == {"id", "kind", "resource_id", "status",
                                         "idempotency_key", "request_seq"}
    assert led["remaining"]["conversations_v1"] == len(dataset.conversations) - 1
    assert led["remaining"]["messages"] == dataset.message_total - conv.message_count
    later = await (await http.get("/_emulator/ledger", params={"since": first["seq"]})).json()
    assert [r["seq"] for r in later["requests"]] == [second["seq"]]
    summary = await (await http.get("/_emulator/ledger/summary")).json()
    assert summary["requests"] == 2 and summary["deletions"]["conversation_v1"] == 1


@pytest.mark.parametrize("kind,key", [
    ("conversation_v1", "sid"), ("message", "sid"), ("participant", "sid"),
    ("conversation_v2", "id"), ("configuration", "id"), ("memory_store", "id"),
    ("service", "sid"),
])
async def test_resources_lists_every_kind(http: aiohttp.ClientSession, dataset: Dataset,
                                          kind: str, key: str) -> None:
    """/_emulator/resources lists every live resource of a kind, with no PII."""
    body = await (await http.get("/_emulator/resources", params={"kind": kind})).json()
    expected = {
        "conversation_v1": len(dataset.conversations), "message": dataset.message_total,
        "participant": sum(len(c.participants) for c in dataset.conversations),
        "conversation_v2": len(dataset.conversations_v2),
        "configuration": len(dataset.configurations), "memory_store": len(dataset.stores),
        "service": len(dataset.services),
    }[kind]
    assert len(body["items"]) == expected
    assert all(key in item for item in body["items"])
    text = str(body)
    assert not any(p in text for p in dataset.pii_samples())


@pytest.mark.parametrize(("path", "payload"), [
    pytest.param("/_emulator/settings", {"nope": 1}, id="unknown-key"),
    pytest.param("/_emulator/settings", {"conversation_aps": "fast"}, id="wrong-type"),
    pytest.param("/_emulator/settings", {"fault_500": 2}, id="out-of-range"),
    pytest.param("/_emulator/settings", {"retry_after": "minutes"}, id="bad-literal"),
    pytest.param("/_emulator/settings", {"product_rate": {"sms": [1, 1]}}, id="bad-product"),
    pytest.param("/_emulator/settings", [1, 2], id="not-an-object"),
    pytest.param("/_emulator/clock", {"advance_s": -5}, id="clock-negative"),
    pytest.param("/_emulator/clock", {"advance": 5}, id="clock-wrong-key"),
])
async def test_bad_admin_input(http: aiohttp.ClientSession, path: str, payload: Any) -> None:
    """Bad admin input answers 400 with a message, never a traceback, and changes nothing."""
    before = await (await http.get("/_emulator/settings")).json()
    r = await http.post(path, json=payload)
    assert r.status == 400
    body = await r.json()
    assert body["error"] and "Traceback" not in body["error"]
    assert await (await http.get("/_emulator/settings")).json() == before


async def test_non_json_admin_body(http: aiohttp.ClientSession) -> None:
    """A non-JSON body is a 400 too."""
    r = await http.post("/_emulator/settings", data=b"{oops")
    assert r.status == 400
    assert (await http.get("/_emulator/resources", params={"kind": "x"})).status == 400
    assert (await http.get("/_emulator/ledger", params={"since": "x"})).status == 400


async def test_settings_round_trip(http: aiohttp.ClientSession, emu: Running) -> None:
    """A partial update changes only the named settings and is visible in process."""
    r = await http.post("/_emulator/settings",
                        json={"conversation_aps": 5, "retry_after": "absent",
                              "account_concurrency": None})
    assert r.status == 200
    body = await r.json()
    assert body["conversation_aps"] == 5.0 and body["retry_after"] == "absent"
    assert emu.settings.account_concurrency is None and emu.settings.conversation_aps == 5.0
