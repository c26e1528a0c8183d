"""Messages of v1 conversations (``CH…/IM…``): deleted one by one, synchronously (204)."""

from __future__ import annotations

from runner.kinds.base import Product, ResourceKind, Target
from runner.kinds.ids import sid_pattern
from runner.kinds.v1 import conversation_scope, conversations_prefix


def _delete_path(target: Target, service: str | None) -> str:
    return f"{conversations_prefix(service)}/{target.parent}/Messages/{target.id}"


KIND = ResourceKind(
    name="message",
    word="messages",
    api=None,
    code="m",
    log_index=0,
    label="messages",
    product=Product.CONVERSATIONS,
    pattern=sid_pattern("message", "Message SID", "IM"),
    is_async=False,
    idempotent_header=False,
    has_parent=True,
    covers_children=False,
    phase=1,
    delete_path=_delete_path,
    limit_scope=conversation_scope,
)
