"""Conversation Memory stores (``mem_store_…``): 202 and an Operation, on the Memory host."""

from __future__ import annotations

from runner.kinds.base import Product, ResourceKind, Target, no_scope
from runner.kinds.ids import ttid_pattern


def _delete_path(target: Target, _service: str | None) -> str:
    return f"/v1/ControlPlane/Stores/{target.id}"


KIND = ResourceKind(
    name="memory_store",
    word="memory_stores",
    api=None,
    code="ms",
    log_index=5,
    label="memory stores",
    product=Product.MEMORY,
    # The Memory spec's StoreId pattern also accepts the older mem_service_ prefix.
    pattern=ttid_pattern(
        "memory_store", "Memory store ID", "mem_store_", "mem_(?:store|service)_", "mem_store_"
    ),
    is_async=True,
    idempotent_header=False,
    has_parent=False,
    covers_children=False,
    phase=3,  # last: configurations may point at stores
    delete_path=_delete_path,
    limit_scope=no_scope,
)
