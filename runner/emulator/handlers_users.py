"""Conversations v1 Users and ParticipantConversations: who is in which conversation.

Both exist under /v1 (the account's default Conversation Service) and /v1/Services/IS..., like
every v1 route. A User is addressed by its US... SID or its identity; deleting one answers 204
and removes the User only: its participants keep their identity and messages (see
:meth:`~.store.Store.delete_user`). The spec caps PageSize at 50 on both lists, not 100.

The list envelope, paging parameters and Service lookup come from :mod:`.handlers_v1`: they are
one contract for every v1 list, and sharing them keeps these lists from drifting from the others.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from .clock import iso
from .dataset import ParticipantSpec, UserSpec
from .errors import bad_request, not_found
from .handlers_v1 import (
    TOKEN_PREFIX,
    _check_webhook_header,
    _conversation_url,
    _envelope,
    _page_number,
    _page_size,
    _service,
)
from .ledger import DeletionRecord
from .paging import keyset_page
from .responses import base_url, json_response
from .state import EMULATOR_KEY, Emulator, arrival_of, seq_of
from .store import ConversationV1, Membership

# [V1] ListUser, ListServiceUser, ListParticipantConversation: "the maximum is 50".
MAX_PAGE_SIZE = 50


def register(router: web.UrlDispatcher) -> None:
    """Add the Users and ParticipantConversations routes (default and Service-scoped)."""
    for prefix in ("/v1", "/v1/Services/{service}"):
        router.add_get(prefix + "/Users", list_users)
        router.add_get(prefix + "/Users/{sid}", fetch_user)
        router.add_delete(prefix + "/Users/{sid}", delete_user)
        router.add_get(prefix + "/ParticipantConversations", list_participant_conversations)


def _emu(request: web.Request) -> Emulator:
    return request.app[EMULATOR_KEY]


def _user_url(request: web.Request, user: UserSpec) -> str:
    if "service" in request.match_info:
        return f"{base_url(request)}/v1/Services/{user.service_sid}/Users/{user.sid}"
    return f"{base_url(request)}/v1/Users/{user.sid}"


def render_user(emu: Emulator, request: web.Request, user: UserSpec) -> dict[str, Any]:
    """A User as [V1] conversations.v1.user / service_user renders it."""
    url = _user_url(request, user)
    return {
        "sid": user.sid,
        "account_sid": emu.settings.account_sid,
        "chat_service_sid": user.service_sid,
        # The emulator has no Roles; the field is nullable.
        "role_sid": None,
        "identity": user.identity,
        "friendly_name": user.friendly_name,
        "attributes": user.attributes,
        # null unless the Service has reachability enabled, which no emulated Service has.
        "is_online": None,
        "is_notifiable": None,
        "date_created": iso(user.date_created),
        "date_updated": iso(user.date_created),
        "url": url,
        "links": {"user_conversations": f"{url}/Conversations"},
    }


def render_participant_conversation(emu: Emulator, request: web.Request, conv: ConversationV1,
                                    p: ParticipantSpec) -> dict[str, Any]:
    """One (participant, conversation) pair as [V1] participant_conversation renders it."""
    spec = conv.spec
    conversation_url = _conversation_url(request, conv)
    user_sid = (emu.store.user_identities.get((conv.service_sid, p.identity))
                if p.identity else None)
    binding = None
    if p.address:
        channel = "whatsapp" if p.address.startswith("whatsapp:") else "sms"
        binding = {"type": channel, "address": p.address, "proxy_address": p.proxy_address}
    return {
        "account_sid": emu.settings.account_sid,
        "chat_service_sid": conv.service_sid,
        "participant_sid": p.sid,
        "participant_user_sid": user_sid,
        "participant_identity": p.identity,
        "participant_messaging_binding": binding,
        "conversation_sid": spec.sid,
        "conversation_unique_name": spec.unique_name,
        "conversation_friendly_name": spec.friendly_name,
        "conversation_attributes": "{}",
        "conversation_date_created": iso(spec.date_created),
        "conversation_date_updated": iso(spec.date_updated),
        "conversation_created_by": None,
        "conversation_state": spec.state,
        "conversation_timers": {},
        "links": {"participant": f"{conversation_url}/Participants/{p.sid}",
                  "conversation": conversation_url},
    }


# ---------------------------------------------------------------------------------------- users


async def list_users(request: web.Request) -> web.Response:
    """GET .../Users in creation order."""
    emu = _emu(request)
    service = _service(request)
    size, page = _page_size(request, MAX_PAGE_SIZE), _page_number(request)
    keys = emu.store.user_index[service]
    users = emu.store.users

    def walk(after: Any, forward: bool) -> Iterator[tuple[Any, UserSpec]]:
        if forward:
            i = 0 if after is None else bisect.bisect_right(keys, after)
            while i < len(keys):
                yield keys[i], users[keys[i][1]]
                i += 1
        else:
            i = len(keys) - 1 if after is None else bisect.bisect_left(keys, after) - 1
            while i >= 0:
                yield keys[i], users[keys[i][1]]
                i -= 1

    result = keyset_page(walk, size, TOKEN_PREFIX, request.path, request.query.get("PageToken"),
                         key_of=lambda k: (float(k[0]), str(k[1])))
    items = [render_user(emu, request, u) for u in result.items]
    return _envelope(request, "users", items, [], size, page, result.next_token,
                     result.previous_token)


def _user(request: web.Request) -> UserSpec:
    key = request.match_info["sid"]
    user = _emu(request).store.user(_service(request), key)
    if user is None:
        raise not_found(f"User {key} was not found")
    return user


async def fetch_user(request: web.Request) -> web.Response:
    """GET .../Users/{sid} (SID or identity)."""
    return json_response(render_user(_emu(request), request, _user(request)))


async def delete_user(request: web.Request) -> web.Response:
    """DELETE .../Users/{sid} (SID or identity): 204; 30 actions/s per Service."""
    _check_webhook_header(request)
    emu = _emu(request)
    user = _user(request)
    # twilio-api.md section 9: user create/update/delete share the per-Service APS budget.
    emu.check_aps("service_aps", user.service_sid, arrival_of(request))
    if emu.kept(user.sid):
        return web.Response(status=204)
    emu.store.delete_user(user)
    emu.ledger.deletion(DeletionRecord("user", user.sid, None, user.service_sid,
                                       seq_of(request), "request"))
    return web.Response(status=204)


# ------------------------------------------------------------------- participant conversations


async def list_participant_conversations(request: web.Request) -> web.Response:
    """GET .../ParticipantConversations?Identity=... or ?Address=... (exactly one of them)."""
    emu = _emu(request)
    service = _service(request)
    size, page = _page_size(request, MAX_PAGE_SIZE), _page_number(request)
    given = [(name, request.query[name]) for name in ("Identity", "Address")
             if name in request.query]
    if len(given) != 1:
        raise bad_request("Specify exactly one of Identity or Address")
    name, value = given[0]
    rows = emu.store.memberships_of(service, name.lower(), value)

    def walk(after: Any, forward: bool
             ) -> Iterator[tuple[Any, tuple[ConversationV1, ParticipantSpec]]]:
        ordered = rows if forward else list(reversed(rows))
        for key, conv, p in ordered:
            if after is None or (key > after if forward else key < after):
                yield key, (conv, p)

    def key_of(raw: Any) -> Membership:
        return float(raw[0]), str(raw[1]), str(raw[2])

    filters = [given[0]]
    scope = f"{request.path}?{urlencode(filters)}"
    result = keyset_page(walk, size, TOKEN_PREFIX, scope, request.query.get("PageToken"),
                         key_of=key_of)
    items = [render_participant_conversation(emu, request, c, p) for c, p in result.items]
    return _envelope(request, "conversations", items, filters, size, page, result.next_token,
                     result.previous_token)
