"""The admin API under /_emulator: ledger, resources, settings and the emulated clock.

Outside Twilio's namespace, unauthenticated and local-only: tests and benchmarks use it to prove
"each selected target deleted exactly once, nothing else touched" and to change limits mid-run.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from .clock import iso
from .ledger import KINDS
from .responses import json_response
from .settings import SettingsError
from .state import EMULATOR_KEY, Emulator

LIFTS_PAUSES = frozenset({"account_concurrency", "conversation_aps", "service_aps",
                          "product_rate", "retry_after", "retry_after_s"})


def register(router: web.UrlDispatcher) -> None:
    """Add the admin routes."""
    router.add_get("/_emulator/ledger", ledger)
    router.add_get("/_emulator/ledger/summary", summary)
    router.add_get("/_emulator/resources", resources)
    router.add_get("/_emulator/settings", get_settings)
    router.add_post("/_emulator/settings", post_settings)
    router.add_post("/_emulator/clock", advance_clock)


def _emu(request: web.Request) -> Emulator:
    emu = request.app[EMULATOR_KEY]
    emu.settle()
    return emu


def _error(message: str) -> web.Response:
    return json_response({"error": message}, status=400)


def remaining(emu: Emulator) -> dict[str, int]:
    """How many resources of each kind still exist."""
    s = emu.store
    return {
        "conversations_v1": len(s.conversations),
        "messages": s.message_count,
        "participants": s.participant_count,
        "conversations_v2": len(s.conversations_v2),
        "configurations": len(s.configurations),
        "memory_stores": len(s.stores),
        "users": len(s.users),
    }


def _operations(emu: Emulator) -> list[dict[str, Any]]:
    now = emu.monotonic()
    return [
        {"id": op.id, "kind": op.kind, "resource_id": op.resource_id,
         "status": op.status(now).value, "idempotency_key": op.idempotency_key,
         "request_seq": op.request_seq}
        for op in emu.operations.operations.values()
    ]


def _summary(emu: Emulator) -> dict[str, Any]:
    led = emu.ledger
    return {
        "requests": led.request_count,
        "deletions": dict(led.deleted_by_kind),
        "operations": len(emu.operations.operations),
        "replays": len(led.replays),
        "throttled": dict(led.throttled),
        "sent_during_pause": dict(led.sent_during_pause),
        "faults": dict(led.faults),
        "remaining": remaining(emu),
        "in_flight": emu.concurrency.in_flight,
        # which event loop serves (a bench says which loop each side ran)
        "loop": type(asyncio.get_running_loop()).__module__.partition(".")[0],
    }


async def ledger(request: web.Request) -> web.Response:
    """GET /_emulator/ledger[?since=SEQ] (``since`` filters the request log only)."""
    emu = _emu(request)
    try:
        since = int(request.query.get("since", "0"))
    except ValueError:
        return _error("since must be an integer request sequence number")
    led = emu.ledger
    return json_response({
        "requests": led.requests_json(since),
        "deletions": led.deletions_json(),
        "operations": _operations(emu),
        "replays": led.replays_json(),
        "throttled": dict(led.throttled),
        "sent_during_pause": dict(led.sent_during_pause),
        "faults": dict(led.faults),
        "remaining": remaining(emu),
    })


async def summary(request: web.Request) -> web.Response:
    """GET /_emulator/ledger/summary: counts only, cheap on big runs."""
    return json_response(_summary(_emu(request)))


async def resources(request: web.Request) -> web.Response:
    """GET /_emulator/resources?kind=KIND: every live resource with non-PII metadata."""
    emu = _emu(request)
    kind = request.query.get("kind")
    s = emu.store
    # Optional narrowing for big datasets (a million messages render to ~200 MB of JSON).
    only = request.query.get("conversation_sid")
    conversations = list(s.conversations.values())
    if only is not None:
        conversations = [c for c in conversations if c.sid == only]
    items: list[dict[str, Any]]
    if kind == "conversation_v1":
        items = [{"sid": c.sid, "service_sid": c.service_sid, "state": c.spec.state,
                  "date_created": iso(c.spec.date_created),
                  "date_updated": iso(c.spec.date_updated),
                  "default_service": c.service_sid == s.default_service_sid}
                 for c in conversations]
    elif kind == "message":
        items = [{"sid": s.message_sid(c, i), "conversation_sid": c.sid,
                  "service_sid": c.service_sid, "date_created": iso(s.message_date(c, i))}
                 for c in conversations for i in s.iter_messages(c)]
    elif kind == "participant":
        items = [{"sid": p.sid, "conversation_sid": c.sid, "service_sid": c.service_sid}
                 for c in conversations for p in c.participants.values()]
    elif kind == "conversation_v2":
        items = [{"id": c.id, "status": c.status, "createdAt": iso(c.created),
                  "updatedAt": iso(c.updated), "configurationId": c.configuration_id}
                 for c in s.conversations_v2.values()]
    elif kind == "configuration":
        items = [{"id": c.id, "createdAt": iso(c.created), "updatedAt": iso(c.updated)}
                 for c in s.configurations.values()]
    elif kind == "memory_store":
        items = [{"id": st.id} for st in s.stores.values()]
    elif kind == "user":
        items = [{"sid": u.sid, "service_sid": u.service_sid, "date_created": iso(u.date_created)}
                 for u in s.users.values()]
    elif kind == "service":
        items = [{"sid": sv.sid, "default": sv.is_default} for sv in s.services.values()]
    else:
        return _error(f"kind must be one of {', '.join((*KINDS, 'service'))}, not {kind!r}")
    return json_response({"kind": kind, "items": items})


async def get_settings(request: web.Request) -> web.Response:
    """GET /_emulator/settings."""
    return json_response(_emu(request).settings.to_json())


async def post_settings(request: web.Request) -> web.Response:
    """POST /_emulator/settings with a partial JSON object; 400 names the bad key."""
    emu = _emu(request)
    try:
        changes = json.loads(await request.read() or b"null")
    except ValueError:
        return _error("body must be a JSON object of setting -> value")
    if not isinstance(changes, dict):
        return _error("body must be a JSON object of setting -> value")
    try:
        emu.settings.update(changes)
    except SettingsError as exc:
        return _error(str(exc))
    if "seed" in changes:
        emu.faults.reseed(emu.settings.seed)
    if {"conversation_aps", "service_aps", "product_rate"} & set(changes):
        emu.conversation_buckets.clear()
        emu.service_buckets.clear()
        emu.product_buckets.clear()
    if LIFTS_PAUSES & set(changes):
        # A server whose limits changed no longer holds its clients to the pauses it asked for.
        emu.pauses.clear()
    return json_response(emu.settings.to_json())


async def advance_clock(request: web.Request) -> web.Response:
    """POST /_emulator/clock {"advance_s": N}: move the emulated wall clock forward."""
    emu = _emu(request)
    try:
        body = json.loads(await request.read() or b"null")
    except ValueError:
        return _error('body must be JSON like {"advance_s": 86400}')
    value = body.get("advance_s") if isinstance(body, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 \
            or set(body) != {"advance_s"}:
        return _error('body must be {"advance_s": N} with N >= 0 seconds')
    emu.clock.advance(float(value))
    return json_response({"offset_s": emu.clock.offset_s, "now": iso(emu.clock.now())})
