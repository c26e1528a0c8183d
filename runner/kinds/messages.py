"""Messages of v1 conversations (``CH…/IM…``): deleted one by one, synchronously (204).

Selected by ID, manifest, or the conversations to look in (``where.conversations``) and the
message's own creation time; listed oldest first under each conversation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal

from pydantic import model_validator

from runner.kinds.base import Product, ResourceKind, Target, Windows
from runner.kinds.ids import sid_pattern
from runner.kinds.spec_model import SpecTarget, Where, bound_order, problems_error
from runner.kinds.timespec import Bound
from runner.kinds.v1 import (
    ConversationSelector,
    ListChildren,
    conversation_scope,
    conversations_prefix,
    within_of,
)


class MessagesWhere(Where):
    """Messages in the selected conversations, optionally by the message's own creation time."""

    misplaced: ClassVar[Mapping[str, str]] = {
        "state": "state filters conversations: write it under where.conversations.state",
        "status": "messages are Conversations v1: filter conversations with where.conversations",
        "updated_before": "messages filter on created_before / created_after only",
        "updated_after": "messages filter on created_before / created_after only",
        "all": "to look in every conversation write `conversations: all`",
    }

    conversations: ConversationSelector
    created_before: Bound | None = None
    created_after: Bound | None = None

    @model_validator(mode="after")
    def _check(self) -> MessagesWhere:
        problems = bound_order(self)
        if problems:
            raise problems_error(problems)
        return self


class MessagesTarget(SpecTarget):
    """Messages (Conversations v1), by ``CH…/IM…`` IDs, manifest, or conversations to look in."""

    kind: Literal["messages"]
    where: MessagesWhere | None = None


def _delete_path(target: Target, service: str | None) -> str:
    return f"{conversations_prefix(service)}/{target.parent}/Messages/{target.id}"


def _select(target: SpecTarget, window: Windows) -> ListChildren:
    assert isinstance(target.where, MessagesWhere)
    within = within_of(target.where.conversations, window)
    return ListChildren(KIND, within, window("where.created"))


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
    target_model=MessagesTarget,
    select=_select,
    fetch_path=_delete_path,  # a GET of the resource it deletes: 404 once gone
    per_service=True,
)
