"""In-process serving (running_emulator), settings from the environment, and small contracts."""

from __future__ import annotations

import aiohttp
import pytest

from runner.emulator import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_API_KEY,
    DEFAULT_AUTH_TOKEN,
    Dataset,
    EmulatorSettings,
    SettingsError,
    generate,
    running_emulator,
)

from .conftest import Running, auth_header


async def test_running_emulator_yields_its_url() -> None:
    """running_emulator serves on 127.0.0.1 and yields the base URL it listens on."""
    settings = EmulatorSettings()
    async with running_emulator(settings, generate("tiny")) as url:
        assert url.startswith("http://127.0.0.1:")
        async with aiohttp.ClientSession(url, headers=auth_header(settings)) as s:
            r = await s.get("/v1/Conversations")
            assert r.status == 200
            assert (await r.json())["meta"]["url"].startswith(url + "/v1/Conversations?")


def test_settings_from_env() -> None:
    """from_env takes TWILIO_* credentials and keeps the documented defaults otherwise."""
    env = {"TWILIO_ACCOUNT_SID": "AC" + "1" * 32, "TWILIO_AUTH_TOKEN": "tok"}
    s = EmulatorSettings.from_env(env)
    assert (s.account_sid, s.auth_token, s.api_key) == ("AC" + "1" * 32, "tok", DEFAULT_API_KEY)
    d = EmulatorSettings.from_env({})
    assert (d.account_sid, d.auth_token) == (DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN)
    with pytest.raises(SettingsError, match="account_sid"):
        EmulatorSettings.from_env({"TWILIO_ACCOUNT_SID": "nope"})


async def test_webhook_header_values(http: aiohttp.ClientSession, dataset: Dataset) -> None:
    """X-Twilio-Webhook-Enabled accepts true/false and rejects anything else with 400."""
    conv = next(c for c in dataset.conversations if c.service_sid == dataset.default_service.sid)
    sid = dataset.message_sids.sid(conv.no, 0)
    path = f"/v1/Conversations/{conv.sid}/Messages/{sid}"
    assert (await http.delete(path, headers={"X-Twilio-Webhook-Enabled": "yes"})).status == 400
    assert (await http.delete(path, headers={"X-Twilio-Webhook-Enabled": "false"})).status == 204


async def test_participant_delete_keeps_messages(http: aiohttp.ClientSession, emu: Running,
                                                 dataset: Dataset) -> None:
    """Deleting a participant leaves their messages in the conversation, as Twilio documents."""
    conv = next(c for c in dataset.conversations if c.service_sid == dataset.default_service.sid)
    for p in conv.participants:
        assert (await http.delete(f"/v1/Conversations/{conv.sid}/Participants/{p.sid}")
                ).status == 204
    body = await (await http.get(f"/v1/Conversations/{conv.sid}/Messages",
                                 params={"PageSize": "100"})).json()
    assert len(body["messages"]) == conv.message_count
    remaining = await (await http.get("/_emulator/resources",
                                      params={"kind": "participant",
                                              "conversation_sid": conv.sid})).json()
    assert remaining["items"] == []


async def test_request_log_can_be_switched_off(http: aiohttp.ClientSession, emu: Running
                                               ) -> None:
    """record_requests=false keeps counts but not the per-request log."""
    await http.post("/_emulator/settings", json={"record_requests": False})
    assert (await http.get("/v2/Conversations")).status == 200
    summary = await (await http.get("/_emulator/ledger/summary")).json()
    assert summary["requests"] == 1
    assert (await (await http.get("/_emulator/ledger")).json())["requests"] == []


async def test_conversation_previous_page(http: aiohttp.ClientSession, dataset: Dataset
                                          ) -> None:
    """Conversation lists page forward and back with filters kept in both URLs."""
    svc = next(s.sid for s in dataset.services if not s.is_default)
    base = f"/v1/Services/{svc}/Conversations"
    first = await (await http.get(base, params={"PageSize": "3", "State": "active"})).json()
    second = await (await http.get(first["meta"]["next_page_url"])).json()
    assert "State=active" in second["meta"]["previous_page_url"]
    back = await (await http.get(second["meta"]["previous_page_url"])).json()
    assert [c["sid"] for c in back["conversations"]] == \
        [c["sid"] for c in first["conversations"]]
