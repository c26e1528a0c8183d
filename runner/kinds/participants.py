"""Participants of v1 conversations (``CH…/MB…``): deleted one by one, synchronously (204).

Selected by ID, manifest, or the conversations to look in: participants have no filter of their
own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal

from runner.kinds.base import Product, ResourceKind, Target, Windows
from runner.kinds.ids import sid_pattern
from runner.kinds.spec_model import SpecTarget, Where
from runner.kinds.v1 import (
    ConversationSelector,
    ListChildren,
    conversation_scope,
    conversations_prefix,
    within_of,
)

_BY_CONVERSATIONS = (
    "participants can only be selected by their conversations: "
    "put the filter under where.conversations (e.g. where.conversations.created_before)"
)


class ParticipantsWhere(Where):
    """Participants of the selected conversations (participants have no filter of their own)."""

    misplaced: ClassVar[Mapping[str, str]] = {
        name: _BY_CONVERSATIONS
        for name in (
            "created_before",
            "created_after",
            "updated_before",
            "updated_after",
            "state",
            "status",
        )
    } | {"all": "to take every conversation write `conversations: all`"}

    conversations: ConversationSelector


class ParticipantsTarget(SpecTarget):
    """Participants (Conversations v1), by ``CH…/MB…`` IDs, manifest, or their conversations."""

    kind: Literal["participants"]
    where: ParticipantsWhere | None = None


def _delete_path(target: Target, service: str | None) -> str:
    return f"{conversations_prefix(service)}/{target.parent}/Participants/{target.id}"


def _select(target: SpecTarget, window: Windows) -> ListChildren:
    assert isinstance(target.where, ParticipantsWhere)
    return ListChildren(KIND, within_of(target.where.conversations, window))


KIND = ResourceKind(
    name="participant",
    word="participants",
    api=None,
    code="p",
    log_index=1,
    label="participants",
    product=Product.CONVERSATIONS,
    pattern=sid_pattern("participant", "Participant SID", "MB"),
    is_async=False,
    idempotent_header=False,
    has_parent=True,
    covers_children=False,
    phase=1,
    delete_path=_delete_path,
    limit_scope=conversation_scope,
    target_model=ParticipantsTarget,
    select=_select,
    fetch_path=_delete_path,  # a GET of the resource it deletes: 404 once gone
    per_service=True,
)
