"""Conversations deleted through v2 (``conv_conversation_…``): 202 and an Operation to follow."""

from __future__ import annotations

from runner.kinds.base import Product, ResourceKind, Target, no_scope
from runner.kinds.conversations import ConversationsTarget, select_conversations
from runner.kinds.ids import ttid_pattern


def _delete_path(target: Target, _service: str | None) -> str:
    return f"/v2/Conversations/{target.id}"


KIND = ResourceKind(
    name="conversation_v2",
    word="conversations",
    api="v2",
    code="c2",
    log_index=3,
    label="conversations (v2)",
    product=Product.CONVERSATIONS,
    pattern=ttid_pattern("conversation_v2", "v2 Conversation ID", "conv_conversation_"),
    is_async=True,
    idempotent_header=True,
    has_parent=False,
    covers_children=False,
    phase=1,
    delete_path=_delete_path,
    limit_scope=no_scope,
    target_model=ConversationsTarget,
    select=select_conversations,
    fetch_path=_delete_path,  # a GET of the resource it deletes: 404 once gone
)
