"""Conversation Memory v1: list Stores (bare IDs), fetch and async-delete a Store, Operations.

Memory has no Idempotency-Key. Its OperationStatus schema forbids extra properties and carries
``result`` (when COMPLETED) and ``error`` with a ``code`` (when FAILED).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from aiohttp import web

from .clock import iso
from .dataset import StoreSpec
from .errors import bad_request, not_found
from .handlers_v2 import accepted, conflict_if_pending, page_size, token_meta, walk_sorted
from .ids import STORE_ID
from .operations import OperationStatus
from .paging import keyset_page
from .responses import base_url, json_response
from .state import EMULATOR_KEY, Emulator, seq_of

DELETE_MESSAGE = "Memory Store deletion request accepted for processing."


def register(router: web.UrlDispatcher) -> None:
    """Add the Memory routes (before v1's, though their paths never clash)."""
    router.add_get("/v1/ControlPlane/Stores", list_stores)
    router.add_get("/v1/ControlPlane/Stores/{store}", fetch_store)
    router.add_delete("/v1/ControlPlane/Stores/{store}", delete_store)
    router.add_get("/v1/ControlPlane/Operations/{op}", fetch_operation)


def _emu(request: web.Request) -> Emulator:
    return request.app[EMULATOR_KEY]


async def list_stores(request: web.Request) -> web.Response:
    """GET /v1/ControlPlane/Stores?pageSize=&pageToken=&orderBy=ASC|DESC (default DESC)."""
    emu = _emu(request)
    size = page_size(request, "pageSize", 100)
    order = request.query.get("orderBy", "DESC")
    if order not in ("ASC", "DESC"):
        raise bad_request("orderBy must be ASC or DESC")
    token = request.query.get("pageToken")
    if token is not None and len(token) > 4096:
        raise bad_request("pageToken is longer than 4096 characters")
    base_walk = walk_sorted(emu.store.store_order, emu.store.stores)

    def walk(after: Any, forward: bool) -> Iterator[tuple[Any, StoreSpec]]:
        # TTIDs sort by creation, so DESC (the default) walks the sorted list backwards.
        return base_walk(after, forward == (order == "ASC"))

    result = keyset_page(walk, size, "", f"stores:{order}", token)
    return json_response({
        "stores": [s.id for s in result.items],
        "meta": token_meta("stores", len(result.items), result.next_token, result.previous_token),
    })


def _store_id(request: web.Request) -> str:
    sid = request.match_info["store"]
    if not STORE_ID.match(sid):
        raise bad_request("storeId must match ^mem_(store|service)_[0-7][0-9a-z]{25}$")
    if sid not in _emu(request).store.stores:
        raise not_found(f"Memory Store {sid} was not found")
    return sid


async def fetch_store(request: web.Request) -> web.Response:
    """GET /v1/ControlPlane/Stores/{storeId}."""
    emu = _emu(request)
    spec = emu.store.stores[_store_id(request)]
    return json_response(
        {"id": spec.id, "displayName": spec.display_name, "description": spec.description,
         "status": "ACTIVE", "intelligenceServiceId": None, "version": 1},
        headers={"ETag": f'"{spec.id}-1"'},
    )


async def delete_store(request: web.Request) -> web.Response:
    """DELETE /v1/ControlPlane/Stores/{storeId}: 202 {message, statusUrl}."""
    emu = _emu(request)
    sid = _store_id(request)
    conflict_if_pending(emu, sid)
    op = emu.new_operation("memory_store", sid, "mem_operation_", None, seq_of(request))
    return accepted(request, op, "/v1/ControlPlane/Operations", {"message": DELETE_MESSAGE}, None)


async def fetch_operation(request: web.Request) -> web.Response:
    """GET /v1/ControlPlane/Operations/{operationId} in Memory's OperationStatus schema."""
    emu = _emu(request)
    op_id = request.match_info["op"]
    if len(op_id) > 512:
        raise bad_request("operationId is longer than 512 characters")
    op = emu.operations.get(op_id, emu.clock.now())
    if op is None or op.kind != "memory_store":
        raise not_found(f"Operation {op_id} was not found")
    now = emu.monotonic()
    status = op.status(now)
    url = f"{base_url(request)}/v1/ControlPlane/Operations/{op.id}"
    body: dict[str, Any] = {"operationId": op.id, "status": status.value,
                            "createdAt": iso(op.created_wall), "statusUrl": url}
    headers = {"Operation-Id": op.id}
    if status in (OperationStatus.COMPLETED, OperationStatus.FAILED):
        body["completedAt"] = iso(op.finished_wall())
    else:
        headers["Retry-After"] = emu.operation_retry_after(op, now)
    if status is OperationStatus.COMPLETED:
        body["result"] = {"type": "RESOURCE_ID", "id": op.resource_id}
    elif status is OperationStatus.FAILED:
        body["error"] = {"type": "https://www.twilio.com/docs/errors/20500",
                         "title": "Internal Server Error", "code": 20500,
                         "detail": f"The deletion of {op.resource_id} failed; the store was kept."}
    return json_response(body, headers=headers)
