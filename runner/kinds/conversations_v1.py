"""Conversations deleted through v1 (``CH…``, 204): the delete takes their messages and
participants with it, so discovery lists them first and their children are *covered*."""

from __future__ import annotations

from runner.kinds.base import Product, ResourceKind, Target
from runner.kinds.conversations import ConversationsTarget, select_conversations
from runner.kinds.ids import CONVERSATION_SID
from runner.kinds.v1 import conversations_prefix, service_scope


def _delete_path(target: Target, service: str | None) -> str:
    return f"{conversations_prefix(service)}/{target.id}"


KIND = ResourceKind(
    name="conversation_v1",
    word="conversations",
    api="v1",
    code="c1",
    log_index=2,
    label="conversations (v1)",
    product=Product.CONVERSATIONS,
    pattern=CONVERSATION_SID,
    is_async=False,
    idempotent_header=False,
    has_parent=False,
    covers_children=True,
    phase=0,
    delete_path=_delete_path,
    limit_scope=service_scope,
    target_model=ConversationsTarget,
    select=select_conversations,
    fetch_path=_delete_path,  # a GET of the resource it deletes: 404 once gone
    per_service=True,
)
