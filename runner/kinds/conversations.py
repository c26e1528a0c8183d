"""What the two conversation kinds share: one spec word (``conversations``, ``api: v1`` or
``v2``), one ``where`` filter, and one lister that reads either API's list.

The kinds themselves are :mod:`runner.kinds.conversations_v1` and
:mod:`runner.kinds.conversations_v2`: their IDs, delete requests and answers differ.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import BeforeValidator

from runner.kinds.base import Product, Target, Windows
from runner.kinds.ids import Api
from runner.kinds.listing import ListContext, Listing, Rejections, chosen, item_id
from runner.kinds.spec_model import (
    Flag,
    SpecTarget,
    Where,
    bound_order,
    filters_with_all,
    one_or_many,
)
from runner.kinds.timespec import Bound
from runner.kinds.v1 import (
    ConversationQuery,
    V1State,
    conversation_verdict,
    conversations_prefix,
    v1_conversation_pages,
)

if TYPE_CHECKING:
    from runner.kinds.base import ResourceKind

__all__ = [
    "ConversationsTarget",
    "ConversationsWhere",
    "ListConversations",
    "V2Status",
    "select_conversations",
]

V2_PAGE = 1000  # the v2 spec's maximum pageSize
V2_PATH = "/v2/Conversations"
V2Status = Literal["ACTIVE", "INACTIVE", "CLOSED"]


class ConversationsWhere(Where):
    """Conversations by state (v1) or status (v2) and by age; ``all: true`` for every one."""

    misplaced: ClassVar[Mapping[str, str]] = {
        "conversations": "conversation targets are filtered directly: use state (v1) or "
        "status (v2), created_before, created_after, updated_before, updated_after or all: true",
    }

    state: Annotated[tuple[V1State, ...], BeforeValidator(one_or_many)] | None = None
    status: Annotated[tuple[V2Status, ...], BeforeValidator(one_or_many)] | None = None
    created_before: Bound | None = None
    created_after: Bound | None = None
    updated_before: Bound | None = None
    updated_after: Bound | None = None
    all: Flag | None = None


class ConversationsTarget(SpecTarget):
    """Conversations, deleted through v1 (``CH…``, sync 204) or v2 (``conv_conversation_…``)."""

    kind: Literal["conversations"]
    api: Api = "v1"
    where: ConversationsWhere | None = None

    def _where_problems(self) -> list[tuple[str, str]]:
        where = self.where
        assert isinstance(where, ConversationsWhere)
        problems: list[tuple[str, str]] = []
        if self.api == "v1" and where.status is not None:
            problems.append(
                (
                    "where.status",
                    "is for api: v2; v1 conversations filter by state: "
                    "active, inactive, closed, initializing",
                )
            )
        if self.api == "v2" and where.state is not None:
            problems.append(
                (
                    "where.state",
                    "is for api: v1; v2 conversations filter by status: ACTIVE, INACTIVE, CLOSED",
                )
            )
        for name in ("state", "status"):
            if getattr(where, name) == ():
                problems.append((f"where.{name}", "is empty: list at least one, or leave it out"))
        problems.extend(filters_with_all(where, "conversation"))
        problems.extend(bound_order(where, "where"))
        return problems


def select_conversations(target: SpecTarget, window: Windows) -> ListConversations:
    """The listing of the conversations a ``where`` selects, through the target's API."""
    where = target.where
    assert isinstance(where, ConversationsWhere)
    api = target.api or "v1"
    states = tuple(where.state or ()) if api == "v1" else tuple(where.status or ())
    return ListConversations(
        ConversationQuery(
            api,
            tuple(str(s) for s in states),
            window("where.created"),
            window("where.updated"),
        )
    )


async def v2_conversation_pages(
    ctx: ListContext, query: ConversationQuery, rejected: Rejections, pattern_kind: ResourceKind
) -> AsyncIterator[list[str]]:
    """IDs of the v2 conversations matching ``query``, a listed page at a time."""
    params = [("status", s) for s in query.states]
    async for items in ctx.token_pages(
        Product.CONVERSATIONS, V2_PATH, "conversations", params, V2_PAGE
    ):
        before = rejected.total()
        ids: list[str] = []
        for item in items:
            cid = item_id(item, "id", pattern_kind.pattern, rejected)
            if cid is not None and chosen(
                conversation_verdict(item, query, "createdAt", "updatedAt"), rejected
            ):
                ids.append(cid)
        rejected.note(V2_PATH, before)
        yield ids


@dataclass(frozen=True, slots=True)
class ListConversations(Listing):
    """Conversations found by listing, through the API of their query."""

    query: ConversationQuery

    @property
    def kind(self) -> ResourceKind:
        """The conversation kind of the query's API."""
        # Imported here: the registry imports the kind modules, which import this module.
        from runner.kinds.registry import by_spec

        return by_spec("conversations", self.query.api)

    def path(self, service: str | None) -> str:
        """The collection it lists, as its discovery error names it."""
        return V2_PATH if self.query.api == "v2" else conversations_prefix(service)

    async def list(self, ctx: ListContext) -> None:
        """Emit the matching conversations, a listed page at a time."""
        kind = self.kind
        if self.query.api == "v1":
            pages = v1_conversation_pages(ctx, self.query, ctx.rejected)
        else:
            pages = v2_conversation_pages(ctx, self.query, ctx.rejected, kind)
        async for ids in pages:
            await ctx.emit([Target(kind, one) for one in ids])
