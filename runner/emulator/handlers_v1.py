"""Conversations v1: list / fetch / delete Conversations, Messages and Participants.

Every route exists twice: under /v1/Conversations (the account's default Conversation Service, as
in Twilio) and under /v1/Services/IS.../Conversations. A conversation is only reachable through
its own Service. DELETE answers 204 with an empty body; a malformed or unknown SID is 404/20404.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from .clock import iso, parse_iso
from .dataset import ParticipantSpec, ServiceSpec
from .errors import TwilioError, bad_request, not_found
from .ids import MESSAGE_SID, PARTICIPANT_SID, SERVICE_SID
from .ledger import CascadeRecord, DeletionRecord
from .paging import keyset_page
from .responses import base_url, json_response
from .state import EMULATOR_KEY, Emulator, arrival_of, plan_of, seq_of
from .store import ConversationV1

STATES = ("initializing", "inactive", "active", "closed")
TOKEN_PREFIX = "PT"


def register(router: web.UrlDispatcher) -> None:
    """Add every v1 route (both the default and the Service-scoped form)."""
    router.add_get("/v1/Services", list_services)
    router.add_get("/v1/Configuration", fetch_configuration)
    for prefix in ("/v1", "/v1/Services/{service}"):
        router.add_get(prefix + "/Conversations", list_conversations)
        router.add_get(prefix + "/Conversations/{sid}", fetch_conversation)
        router.add_delete(prefix + "/Conversations/{sid}", delete_conversation)
        router.add_get(prefix + "/Conversations/{conv}/Messages", list_messages)
        router.add_get(prefix + "/Conversations/{conv}/Messages/{sid}", fetch_message)
        router.add_delete(prefix + "/Conversations/{conv}/Messages/{sid}", delete_message)
        router.add_get(prefix + "/Conversations/{conv}/Participants", list_participants)
        router.add_get(prefix + "/Conversations/{conv}/Participants/{sid}", fetch_participant)
        router.add_delete(prefix + "/Conversations/{conv}/Participants/{sid}",
                          delete_participant)


# ---------------------------------------------------------------------------------------- helpers


def _emu(request: web.Request) -> Emulator:
    return request.app[EMULATOR_KEY]


def _service(request: web.Request) -> str:
    """The Service SID a path addresses (the default one for /v1/Conversations)."""
    emu = _emu(request)
    service = request.match_info.get("service")
    if service is None:
        return emu.store.default_service_sid
    if not SERVICE_SID.match(service) or service not in emu.store.services:
        raise not_found(f"Service {service} was not found")
    return service


def _conversation(request: web.Request, key: str = "conv") -> ConversationV1:
    emu = _emu(request)
    conv = emu.store.conversation(_service(request), request.match_info[key])
    if conv is None:
        raise not_found(f"Conversation {request.match_info[key]} was not found")
    return conv


def _check_webhook_header(request: web.Request) -> None:
    """X-Twilio-Webhook-Enabled, when sent, must be one of the spec's enum values."""
    value = request.headers.get("X-Twilio-Webhook-Enabled")
    if value is not None and value not in ("true", "false"):
        raise bad_request("X-Twilio-Webhook-Enabled must be true or false")


def _page_size(request: web.Request, maximum: int = 100) -> int:
    raw = request.query.get("PageSize", "50")
    try:
        size = int(raw)
    except ValueError:
        raise bad_request(f"PageSize must be an integer, not {raw!r}") from None
    if not 1 <= size <= maximum:
        raise bad_request(f"PageSize must be between 1 and {maximum}")
    return size


def _page_number(request: web.Request) -> int:
    raw = request.query.get("Page", "0")
    try:
        page = int(raw)
    except ValueError:
        raise bad_request(f"Page must be an integer, not {raw!r}") from None
    if page < 0:
        raise bad_request("Page must be >= 0")
    return page


def _envelope(
    request: web.Request, key: str, items: list[dict[str, Any]], filters: list[tuple[str, str]],
    size: int, page: int, next_token: str | None, previous_token: str | None,
) -> web.Response:
    """The exact v1 list envelope; every URL is absolute and carries every filter."""
    root = base_url(request) + request.path

    def url(page_no: int, token: str | None) -> str:
        params = [*filters, ("PageSize", str(size)), ("Page", str(page_no))]
        if token is not None:
            params.append(("PageToken", token))
        return f"{root}?{urlencode(params)}"

    meta = {
        "page": page,
        "page_size": size,
        "first_page_url": url(0, None),
        "previous_page_url": url(max(page - 1, 0), previous_token) if previous_token else None,
        "url": url(page, request.query.get("PageToken")),
        "next_page_url": url(page + 1, next_token) if next_token else None,
        "key": key,
    }
    return json_response({key: items, "meta": meta})


def _links(base: str, names: tuple[str, ...]) -> dict[str, str]:
    return {name.lower(): f"{base}/{name}" for name in names}


def _conversation_url(request: web.Request, conv: ConversationV1) -> str:
    if "service" in request.match_info:
        return f"{base_url(request)}/v1/Services/{conv.service_sid}/Conversations/{conv.sid}"
    return f"{base_url(request)}/v1/Conversations/{conv.sid}"


def render_conversation(emu: Emulator, request: web.Request, conv: ConversationV1
                        ) -> dict[str, Any]:
    spec = conv.spec
    url = _conversation_url(request, conv)
    return {
        "sid": spec.sid,
        "account_sid": emu.settings.account_sid,
        "chat_service_sid": spec.service_sid,
        "messaging_service_sid": None,
        "friendly_name": spec.friendly_name,
        "unique_name": spec.unique_name,
        "attributes": spec.attributes,
        "state": spec.state,
        "date_created": iso(spec.date_created),
        "date_updated": iso(spec.date_updated),
        "timers": {},
        "bindings": None,
        "url": url,
        "links": {"participants": f"{url}/Participants", "messages": f"{url}/Messages",
                  "webhooks": f"{url}/Webhooks"},
    }


def render_message(emu: Emulator, request: web.Request, conv: ConversationV1, index: int
                   ) -> dict[str, Any]:
    author, body, created, participant_sid = emu.store.message_content(conv, index)
    sid = emu.store.message_sid(conv, index)
    url = f"{_conversation_url(request, conv)}/Messages/{sid}"
    created_at = iso(created)
    return {
        "sid": sid,
        "account_sid": emu.settings.account_sid,
        "conversation_sid": conv.sid,
        "index": index,
        "author": author,
        "body": body,
        "media": None,
        "attributes": "{}",
        "participant_sid": participant_sid,
        "date_created": created_at,
        "date_updated": created_at,
        "delivery": None,
        "content_sid": None,
        "url": url,
        "links": {"delivery_receipts": f"{url}/Receipts",
                  "channel_metadata": f"{url}/ChannelMetadata"},
    }


def render_participant(emu: Emulator, request: web.Request, conv: ConversationV1,
                       p: ParticipantSpec) -> dict[str, Any]:
    binding = None
    if p.address:
        binding = {"type": "sms", "address": p.address, "proxy_address": p.proxy_address}
    return {
        "sid": p.sid,
        "account_sid": emu.settings.account_sid,
        "conversation_sid": conv.sid,
        "identity": p.identity,
        "attributes": "{}",
        "messaging_binding": binding,
        "role_sid": None,
        "date_created": iso(p.date_created),
        "date_updated": iso(p.date_created),
        "url": f"{_conversation_url(request, conv)}/Participants/{p.sid}",
        "last_read_message_index": None,
        "last_read_timestamp": None,
    }


def render_service(request: web.Request, emu: Emulator, svc: ServiceSpec) -> dict[str, Any]:
    url = f"{base_url(request)}/v1/Services/{svc.sid}"
    return {
        "sid": svc.sid,
        "account_sid": emu.settings.account_sid,
        "friendly_name": svc.friendly_name,
        "date_created": iso(svc.date_created),
        "date_updated": iso(svc.date_created),
        "url": url,
        "links": {"conversations": f"{url}/Conversations"},
    }


# ------------------------------------------------------------------------------------- services


async def list_services(request: web.Request) -> web.Response:
    """GET /v1/Services (the default Service is listed too)."""
    emu = _emu(request)
    size, page = _page_size(request), _page_number(request)
    services = sorted(emu.store.services.values(), key=lambda s: s.sid)

    def walk(after: Any, forward: bool) -> Iterator[tuple[Any, ServiceSpec]]:
        ordered = services if forward else list(reversed(services))
        for svc in ordered:
            if after is None or (svc.sid > after if forward else svc.sid < after):
                yield svc.sid, svc

    result = keyset_page(walk, size, TOKEN_PREFIX, "services", request.query.get("PageToken"))
    items = [render_service(request, emu, s) for s in result.items]
    return _envelope(request, "services", items, [], size, page, result.next_token,
                     result.previous_token)


async def fetch_configuration(request: web.Request) -> web.Response:
    """GET /v1/Configuration: the account's defaults, as conversations.v1.configuration renders
    them (the emulator has no Messaging Service and no timers: those fields are nullable)."""
    emu = _emu(request)
    url = f"{base_url(request)}/v1/Configuration"
    return json_response({
        "account_sid": emu.settings.account_sid,
        "default_chat_service_sid": emu.store.default_service_sid,
        "default_messaging_service_sid": None,
        "default_inactive_timer": None,
        "default_closed_timer": None,
        "url": url,
        "links": {"service": f"{base_url(request)}/v1/Services/{emu.store.default_service_sid}",
                  "webhooks": f"{url}/Webhooks"},
    })


# -------------------------------------------------------------------------------- conversations


async def list_conversations(request: web.Request) -> web.Response:
    """GET .../Conversations with State, StartDate, EndDate (a date filter sorts newest first)."""
    emu = _emu(request)
    service = _service(request)
    size, page = _page_size(request), _page_number(request)
    filters: list[tuple[str, str]] = []
    state = request.query.get("State")
    if state is not None:
        if state not in STATES:
            raise bad_request(f"State must be one of {', '.join(STATES)}")
        filters.append(("State", state))
    start = end = None
    for name in ("StartDate", "EndDate"):
        raw = request.query.get(name)
        if raw is None:
            continue
        parsed = parse_iso(raw)
        if parsed is None:
            raise bad_request(f"{name} must be an ISO 8601 date, e.g. 2024-01-31T00:00:00Z")
        filters.append((name, raw))
        if name == "StartDate":
            start = parsed
        else:
            end = parsed
    newest_first = start is not None or end is not None
    keys = emu.store.service_index[service]
    conversations = emu.store.conversations

    def walk(after: Any, forward: bool) -> Iterator[tuple[Any, ConversationV1]]:
        ascending = forward != newest_first
        if ascending:
            i = 0 if after is None else bisect.bisect_right(keys, after)
            if start is not None:
                i = max(i, bisect.bisect_left(keys, (start, "")))
            while i < len(keys):
                key = keys[i]
                if end is not None and key[0] > end:
                    return
                conv = conversations[key[1]]
                if state is None or conv.spec.state == state:
                    yield key, conv
                i += 1
        else:
            i = len(keys) - 1 if after is None else bisect.bisect_left(keys, after) - 1
            if end is not None:
                i = min(i, bisect.bisect_right(keys, (end, "\x7f")) - 1)
            while i >= 0:
                key = keys[i]
                if start is not None and key[0] < start:
                    return
                conv = conversations[key[1]]
                if state is None or conv.spec.state == state:
                    yield key, conv
                i -= 1

    scope = f"{request.path}?{urlencode(filters)}"
    result = keyset_page(walk, size, TOKEN_PREFIX, scope, request.query.get("PageToken"),
                         key_of=lambda k: (float(k[0]), str(k[1])))
    items = [render_conversation(emu, request, c) for c in result.items]
    return _envelope(request, "conversations", items, filters, size, page, result.next_token,
                     result.previous_token)


async def fetch_conversation(request: web.Request) -> web.Response:
    """GET .../Conversations/{sid} (SID or unique_name)."""
    emu = _emu(request)
    return json_response(render_conversation(emu, request, _conversation(request, "sid")))


async def delete_conversation(request: web.Request) -> web.Response:
    """DELETE .../Conversations/{sid}: 204, cascading to messages and participants."""
    _check_webhook_header(request)
    emu = _emu(request)
    conv = _conversation(request, "sid")
    emu.check_aps("service_aps", conv.service_sid, arrival_of(request))
    if plan_of(request).error_20009:
        emu.ledger.faults["20009"] += 1
        raise TwilioError(409, 20009, "Cannot delete this resource before it is complete")
    if emu.kept(conv.sid):
        return web.Response(status=204)
    seq = seq_of(request)
    messages, participants = emu.store.delete_conversation(conv)
    emu.ledger.deletion(DeletionRecord("conversation_v1", conv.sid, conv.sid, conv.service_sid,
                                       seq, "request"))
    grid, number = emu.store.message_sids, conv.spec.no
    emu.ledger.cascade(CascadeRecord(conv.sid, conv.service_sid, seq,
                                     lambda position: grid.sid(number, position),
                                     messages, participants))
    return web.Response(status=204)


# ------------------------------------------------------------------------------------- messages


async def list_messages(request: web.Request) -> web.Response:
    """GET .../Messages with Order=asc|desc (case-insensitive, as Twilio's examples show)."""
    emu = _emu(request)
    conv = _conversation(request)
    size, page = _page_size(request), _page_number(request)
    order_raw = request.query.get("Order")
    filters: list[tuple[str, str]] = []
    descending = False
    if order_raw is not None:
        if order_raw.lower() not in ("asc", "desc"):
            raise bad_request("Order must be asc or desc")
        descending = order_raw.lower() == "desc"
        filters.append(("Order", order_raw))
    alive = conv.messages

    def walk(after: Any, forward: bool) -> Iterator[tuple[Any, int]]:
        ascending = forward != descending
        if ascending:
            pos = alive.next_at_or_after(0 if after is None else int(after) + 1)
            while pos is not None:
                yield pos, pos
                pos = alive.next_at_or_after(pos + 1)
        else:
            pos = alive.prev_at_or_before(alive.size - 1 if after is None else int(after) - 1)
            while pos is not None:
                yield pos, pos
                pos = alive.prev_at_or_before(pos - 1)

    scope = f"{request.path}?{urlencode(filters)}"
    result = keyset_page(walk, size, TOKEN_PREFIX, scope, request.query.get("PageToken"))
    items = [render_message(emu, request, conv, i) for i in result.items]
    return _envelope(request, "messages", items, filters, size, page, result.next_token,
                     result.previous_token)


def _message_index(request: web.Request, conv: ConversationV1) -> int:
    sid = request.match_info["sid"]
    index = _emu(request).store.message_position(conv, sid) if MESSAGE_SID.match(sid) else None
    if index is None:
        raise not_found(f"Message {sid} was not found")
    return index


async def fetch_message(request: web.Request) -> web.Response:
    """GET .../Messages/{sid}."""
    conv = _conversation(request)
    return json_response(render_message(_emu(request), request, conv,
                                        _message_index(request, conv)))


async def delete_message(request: web.Request) -> web.Response:
    """DELETE .../Messages/{sid}: 204; 30 actions/s per conversation."""
    _check_webhook_header(request)
    emu = _emu(request)
    conv = _conversation(request)
    index = _message_index(request, conv)
    emu.check_aps("conversation_aps", conv.sid, arrival_of(request))
    sid = emu.store.message_sid(conv, index)
    if emu.kept(sid):
        return web.Response(status=204)
    emu.store.delete_message(conv, index)
    emu.ledger.deletion(DeletionRecord("message", sid, conv.sid, conv.service_sid,
                                       seq_of(request), "request"))
    return web.Response(status=204)


# --------------------------------------------------------------------------------- participants


async def list_participants(request: web.Request) -> web.Response:
    """GET .../Participants in creation order."""
    emu = _emu(request)
    conv = _conversation(request)
    size, page = _page_size(request), _page_number(request)
    ordered = sorted(conv.participants.values(), key=lambda p: (p.date_created, p.sid))

    def walk(after: Any, forward: bool) -> Iterator[tuple[Any, ParticipantSpec]]:
        seq = ordered if forward else list(reversed(ordered))
        for p in seq:
            key = (p.date_created, p.sid)
            if after is None or (key > after if forward else key < after):
                yield key, p

    result = keyset_page(walk, size, TOKEN_PREFIX, request.path, request.query.get("PageToken"),
                         key_of=lambda k: (float(k[0]), str(k[1])))
    items = [render_participant(emu, request, conv, p) for p in result.items]
    return _envelope(request, "participants", items, [], size, page, result.next_token,
                     result.previous_token)


def _participant(request: web.Request, conv: ConversationV1) -> ParticipantSpec:
    key = request.match_info["sid"]
    p = _emu(request).store.participant(conv, key)
    if p is None:
        raise not_found(f"Participant {key} was not found")
    return p


async def fetch_participant(request: web.Request) -> web.Response:
    """GET .../Participants/{sid} (SID or identity)."""
    conv = _conversation(request)
    return json_response(render_participant(_emu(request), request, conv,
                                            _participant(request, conv)))


async def delete_participant(request: web.Request) -> web.Response:
    """DELETE .../Participants/{sid}: 204; 30 actions/s per conversation."""
    _check_webhook_header(request)
    emu = _emu(request)
    conv = _conversation(request)
    sid = request.match_info["sid"]
    # The spec documents a 34-character SID for delete (identity is a fetch-only convenience).
    p = conv.participants.get(sid) if PARTICIPANT_SID.match(sid) else None
    if p is None:
        raise not_found(f"Participant {sid} was not found")
    emu.check_aps("conversation_aps", conv.sid, arrival_of(request))
    if emu.kept(p.sid):
        return web.Response(status=204)
    emu.store.delete_participant(conv, p.sid)
    emu.ledger.deletion(DeletionRecord("participant", p.sid, conv.sid, conv.service_sid,
                                       seq_of(request), "request"))
    return web.Response(status=204)
