"""Conversation Orchestrator v2: list, fetch and async-delete Conversations and Configurations,
and the Operations endpoint.

An async DELETE answers 202 with Operation-Id, Retry-After and Location headers and
``{statusUrl, related}``. Idempotency-Key: malformed -> 400; the same key on the same request
within 24 h (emulated clock) replays the original 202 byte for byte and creates nothing; the same
key on another request -> 409 / 20409 naming the original Operation in X-Conflicting-Resource-Id.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from aiohttp import web

from .clock import iso
from .dataset import ConfigurationSpec, ConversationV2Spec
from .errors import TwilioError, bad_request, not_found
from .ids import CONFIGURATION_ID, CONVERSATION_V2_ID, IDEMPOTENCY_KEY, STORE_ID, V2_OPERATION_ID
from .ledger import ReplayRecord
from .operations import Operation, OperationStatus
from .paging import Walker, keyset_page
from .responses import base_url, json_response
from .state import EMULATOR_KEY, Emulator, seq_of
from .store import SortedIds

T = TypeVar("T")
IDEMPOTENCY_TTL_S = 86_400.0
STATUSES = ("ACTIVE", "INACTIVE", "CLOSED")
TOKEN_PREFIX = ""


def register(router: web.UrlDispatcher) -> None:
    """Add the v2 routes."""
    router.add_get("/v2/Conversations", list_conversations)
    router.add_get("/v2/Conversations/{sid}", fetch_conversation)
    router.add_delete("/v2/Conversations/{sid}", delete_conversation)
    router.add_get("/v2/ControlPlane/Configurations", list_configurations)
    router.add_get("/v2/ControlPlane/Configurations/{sid}", fetch_configuration)
    router.add_delete("/v2/ControlPlane/Configurations/{sid}", delete_configuration)
    router.add_get("/v2/ControlPlane/Operations/{sid}", fetch_operation)


def _emu(request: web.Request) -> Emulator:
    return request.app[EMULATOR_KEY]


def page_size(request: web.Request, name: str, maximum: int) -> int:
    """A token-style ``pageSize`` (default 50, 1..maximum)."""
    raw = request.query.get(name, "50")
    try:
        size = int(raw)
    except ValueError:
        raise bad_request(f"{name} must be an integer, not {raw!r}") from None
    if not 1 <= size <= maximum:
        raise bad_request(f"{name} must be between 1 and {maximum}")
    return size


def walk_sorted(
    order: SortedIds, table: Mapping[str, T], accept: Callable[[T], bool] | None = None
) -> Walker[T]:
    """A keyset walker over a sorted ID list (TTIDs sort by creation time)."""
    keys = order.keys

    def walk(after: Any, forward: bool) -> Iterator[tuple[Any, T]]:
        if forward:
            i = 0 if after is None else bisect.bisect_right(keys, after)
            while i < len(keys):
                item = table[keys[i]]
                if accept is None or accept(item):
                    yield keys[i], item
                i += 1
        else:
            i = len(keys) - 1 if after is None else bisect.bisect_left(keys, after) - 1
            while i >= 0:
                item = table[keys[i]]
                if accept is None or accept(item):
                    yield keys[i], item
                i -= 1

    return walk


def token_meta(key: str, count: int, next_token: str | None, previous_token: str | None
               ) -> dict[str, Any]:
    """The token envelope's meta; absent tokens are omitted, not null ([M1] forbids null)."""
    meta: dict[str, Any] = {"key": key, "pageSize": count}
    if next_token is not None:
        meta["nextToken"] = next_token
    if previous_token is not None:
        meta["previousToken"] = previous_token
    return meta


def render_conversation(emu: Emulator, c: ConversationV2Spec) -> dict[str, Any]:
    return {
        "id": c.id,
        "accountId": emu.settings.account_sid,
        "configurationId": c.configuration_id,
        "status": c.status,
        "name": c.name,
        "createdAt": iso(c.created),
        "updatedAt": iso(c.updated),
    }


def render_configuration(c: ConfigurationSpec) -> dict[str, Any]:
    return {
        "id": c.id,
        "displayName": c.display_name,
        "description": c.description,
        "conversationGroupingType": "GROUP_BY_PARTICIPANT_ADDRESSES",
        "memoryStoreId": c.memory_store_id,
        "memoryExtractionEnabled": False,
        "createdAt": iso(c.created),
        "updatedAt": iso(c.updated),
        "version": 1,
    }


async def list_conversations(request: web.Request) -> web.Response:
    """GET /v2/Conversations?status=A&status=B&pageSize=&pageToken="""
    emu = _emu(request)
    size = page_size(request, "pageSize", 1000)
    statuses = request.query.getall("status", [])
    for status in statuses:
        if status not in STATUSES:
            raise bad_request(f"status must be one of {', '.join(STATUSES)}")
    channel = request.query.get("channelId")
    wanted = set(statuses)

    def accept(c: ConversationV2Spec) -> bool:
        # No seeded conversation has channels, so a channelId filter matches nothing.
        return channel is None and (not wanted or c.status in wanted)

    scope = f"v2c:{','.join(sorted(wanted))}:{channel or ''}"
    result = keyset_page(walk_sorted(emu.store.v2_order, emu.store.conversations_v2, accept),
                         size, TOKEN_PREFIX, scope, request.query.get("pageToken"))
    return json_response({
        "conversations": [render_conversation(emu, c) for c in result.items],
        "meta": token_meta("conversations", len(result.items), result.next_token,
                           result.previous_token),
    })


async def list_configurations(request: web.Request) -> web.Response:
    """GET /v2/ControlPlane/Configurations?memoryStoreId=&pageSize=&pageToken="""
    emu = _emu(request)
    size = page_size(request, "pageSize", 1000)
    store = request.query.get("memoryStoreId")
    if store is not None and not STORE_ID.match(store):
        raise bad_request("memoryStoreId must match ^mem_(store|service)_[0-7][0-9a-z]{25}$")
    result = keyset_page(
        walk_sorted(emu.store.configuration_order, emu.store.configurations,
                    None if store is None else (lambda c: c.memory_store_id == store)),
        size, TOKEN_PREFIX, f"cfg:{store or ''}", request.query.get("pageToken"))
    return json_response({
        "configurations": [render_configuration(c) for c in result.items],
        "meta": token_meta("configurations", len(result.items), result.next_token,
                           result.previous_token),
    })


def _conversation_id(request: web.Request) -> str:
    cid = request.match_info["sid"]
    if not CONVERSATION_V2_ID.match(cid):
        raise bad_request(f"Invalid conversation id {cid!r}")
    if cid not in _emu(request).store.conversations_v2:
        raise not_found(f"Conversation {cid} was not found")
    return cid


def _configuration_id(request: web.Request) -> str:
    cid = request.match_info["sid"]
    # The configuration paths declare no 400, so a malformed ID is simply not found.
    if not CONFIGURATION_ID.match(cid) or cid not in _emu(request).store.configurations:
        raise not_found(f"Configuration {cid} was not found")
    return cid


async def fetch_conversation(request: web.Request) -> web.Response:
    """GET /v2/Conversations/{id}: the conversation until its deletion completes, then 404."""
    emu = _emu(request)
    return json_response(
        render_conversation(emu, emu.store.conversations_v2[_conversation_id(request)]))


async def fetch_configuration(request: web.Request) -> web.Response:
    """GET /v2/ControlPlane/Configurations/{id}: until its deletion completes, then 404."""
    emu = _emu(request)
    return json_response(
        render_configuration(emu.store.configurations[_configuration_id(request)]))


def idempotency_key(request: web.Request) -> str | None:
    """The request's Idempotency-Key, or 400 when it is not a UUID."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not IDEMPOTENCY_KEY.match(key):
        raise bad_request(
            "Idempotency-Key must be a UUID, e.g. 01890a5d-aa0f-7c80-b8e6-0242ac140004")
    return key


def replay(request: web.Request, key: str | None) -> web.Response | None:
    """The original response for a repeated key, 409 for a key reused elsewhere, else None."""
    if key is None:
        return None
    emu = _emu(request)
    found = emu.idempotency.get(key)
    if found is None:
        return None
    fingerprint, stamp, op_id, status, headers, body = found
    if emu.clock.now() - stamp > IDEMPOTENCY_TTL_S:
        del emu.idempotency[key]
        return None
    if fingerprint != f"{request.method} {request.path}":
        raise TwilioError(409, 20409, "Idempotency-Key was already used for a different request",
                          headers={"X-Conflicting-Resource-Id": op_id})
    emu.ledger.replays.append(ReplayRecord(key, op_id, seq_of(request)))
    return web.Response(status=status, body=body, headers=headers,
                        content_type="application/json")


def conflict_if_pending(emu: Emulator, resource_id: str) -> None:
    """409 while a deletion of ``resource_id`` is pending."""
    pending = emu.operations.pending_by_resource.get(resource_id)
    if pending is not None:
        raise TwilioError(409, 20409, f"A deletion of {resource_id} is already in progress",
                          headers={"X-Conflicting-Resource-Id": pending})


def accepted(request: web.Request, op: Operation, path: str, body: dict[str, Any],
             key: str | None) -> web.Response:
    """The 202 of an async delete; remembered for Idempotency-Key replays."""
    emu = _emu(request)
    location = f"{base_url(request)}{path}/{op.id}"
    body = {"statusUrl": location, **body}
    headers = {"Operation-Id": op.id, "Location": location,
               "Retry-After": emu.operation_retry_after(op, op.created_mono)}
    response = json_response(body, status=202, headers=headers)
    if key is not None:
        assert isinstance(response.body, bytes)
        emu.idempotency[key] = (f"{request.method} {request.path}", emu.clock.now(), op.id, 202,
                                headers, response.body)
    return response


async def delete_conversation(request: web.Request) -> web.Response:
    """DELETE /v2/Conversations/{id}: 202 and an Operation."""
    key = idempotency_key(request)
    replayed = replay(request, key)
    if replayed is not None:
        return replayed
    emu = _emu(request)
    cid = _conversation_id(request)
    conflict_if_pending(emu, cid)
    op = emu.new_operation("conversation_v2", cid, "proc_job_", key, seq_of(request))
    return accepted(request, op, "/v2/ControlPlane/Operations",
                    {"related": {"conversationId": cid}}, key)


async def delete_configuration(request: web.Request) -> web.Response:
    """DELETE /v2/ControlPlane/Configurations/{id}: 202 and an Operation."""
    key = idempotency_key(request)
    replayed = replay(request, key)
    if replayed is not None:
        return replayed
    emu = _emu(request)
    cid = _configuration_id(request)
    conflict_if_pending(emu, cid)
    op = emu.new_operation("configuration", cid, "proc_job_", key, seq_of(request))
    return accepted(request, op, "/v2/ControlPlane/Operations",
                    {"related": {"configurationId": cid}}, key)


def render_operation(request: web.Request, emu: Emulator, op: Operation) -> dict[str, Any]:
    status = op.status(emu.monotonic())
    terminal = status in (OperationStatus.COMPLETED, OperationStatus.FAILED)
    related = {"conversation_v2": "conversationId", "configuration": "configurationId"}[op.kind]
    url = f"{base_url(request)}/v2/ControlPlane/Operations/{op.id}"
    error = None
    if status is OperationStatus.FAILED:
        error = {"type": "https://www.twilio.com/docs/errors/20500",
                 "title": "Internal Server Error", "status": 500,
                 "detail": f"The deletion of {op.resource_id} failed; the resource was kept.",
                 "instance": url}
    return {
        "operationId": op.id,
        "status": status.value,
        "createdAt": iso(op.created_wall),
        "completedAt": iso(op.finished_wall()) if terminal else None,
        "statusUrl": url,
        "error": error,
        "related": {related: op.resource_id},
    }


async def fetch_operation(request: web.Request) -> web.Response:
    """GET /v2/ControlPlane/Operations/{id}."""
    emu = _emu(request)
    op_id = request.match_info["sid"]
    if not V2_OPERATION_ID.match(op_id):
        raise bad_request(f"Invalid operation id {op_id!r}")
    op = emu.operations.get(op_id, emu.clock.now())
    if op is None or op.kind == "memory_store":
        raise not_found(f"Operation {op_id} was not found")
    headers = {}
    if op.status(emu.monotonic()) in (OperationStatus.PENDING, OperationStatus.RUNNING):
        headers["Retry-After"] = emu.operation_retry_after(op, emu.monotonic())
    return json_response(render_operation(request, emu, op), headers=headers)
