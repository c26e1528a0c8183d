"""What the Conversations v1 kinds share: the collection paths, Service-scoped when the job names
a Service; the per-scope limits Twilio documents for v1 deletes; the conversations a message or
participant target looks in (``where.conversations``); and the listing of v1 conversations and
of their children.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import anyio
from anyio.abc import ObjectReceiveStream
from pydantic import BeforeValidator, Discriminator, Tag, model_validator

from runner.errors import BadListing
from runner.kinds.base import Target
from runner.kinds.ids import CONVERSATION_SID, Api, show_value
from runner.kinds.listing import (
    ANY_TIME,
    AscendingCheck,
    ListContext,
    Listing,
    Rejections,
    TimeWindow,
    belongs,
    chosen,
    item_id,
    parse_time,
    windows,
)
from runner.kinds.spec_model import (
    ConversationSid,
    SpecModel,
    bound_order,
    custom_error,
    one_or_many,
    problems_error,
)
from runner.kinds.timespec import Bound
from runner.values import Scope

if TYPE_CHECKING:
    from runner.kinds.base import ResourceKind

__all__ = [
    "SELECTOR_TAGS",
    "V1_PAGE",
    "ConversationFilter",
    "ConversationQuery",
    "ConversationSelector",
    "ListChildren",
    "V1State",
    "conversation_scope",
    "conversation_verdict",
    "conversations_prefix",
    "service_scope",
    "v1_conversation_pages",
    "v1_prefix",
]

V1_PAGE = 100  # the v1 spec's maximum PageSize
V1State = Literal["active", "inactive", "closed", "initializing"]


def v1_prefix(service: str | None) -> str:
    """The root of v1 collections: ``/v1`` or ``/v1/Services/IS…``."""
    return f"/v1/Services/{service}" if service else "/v1"


def conversations_prefix(service: str | None) -> str:
    """The v1 conversation collection path, Service-scoped when the job names a Service."""
    return f"{v1_prefix(service)}/Conversations"


def conversation_scope(target: Target, _service: str | None) -> Scope:
    """Twilio allows 30 actions/s per conversation for message and participant deletes."""
    assert target.parent is not None  # a message or participant always has its conversation
    return Scope("conversation", target.parent)


def service_scope(_target: Target, service: str | None) -> Scope:
    """Twilio allows 30 actions/s per Service for conversation and user deletes."""
    return Scope("service", service or "default")


# --- the conversations a message or participant target looks in --------------------------------


class ConversationFilter(SpecModel):
    """Which v1 conversations to look in, for message and participant targets."""

    misplaced: ClassVar[Mapping[str, str]] = {
        "status": "v1 conversations filter by state: active, inactive, closed, initializing",
        "all": "to look in every conversation write `conversations: all`",
    }

    state: Annotated[tuple[V1State, ...], BeforeValidator(one_or_many)] | None = None
    created_before: Bound | None = None
    created_after: Bound | None = None
    updated_before: Bound | None = None
    updated_after: Bound | None = None

    @model_validator(mode="after")
    def _check(self) -> ConversationFilter:
        if all(getattr(self, name) is None for name in type(self).model_fields):
            raise custom_error(
                "an empty filter selects every conversation: write `conversations: all` to say so"
            )
        if self.state == ():
            raise problems_error([("state", "is empty: list at least one state, or leave it out")])
        problems = bound_order(self)
        if problems:
            raise problems_error(problems)
        return self


def _selector_tag(value: object) -> str | None:
    if isinstance(value, str):
        # A single SID is a list of one; any other word is a misspelt `all`.
        return "sids" if value.startswith("CH") else "all"
    if isinstance(value, list | tuple):
        return "sids"
    if isinstance(value, Mapping | ConversationFilter):
        return "filter"
    return None


def _must_be_all(value: object) -> object:
    if value != "all":
        raise custom_error(
            f"{show_value(value)} is not 'all', a list of Conversation SIDs (CH...) "
            "or a conversation filter {state, created_before, ...}"
        )
    return value


def _sid_list(value: object) -> object:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple) and not value:
        raise custom_error("is empty: list at least one Conversation SID, or write `all`")
    return value


_SELECTOR_HELP = (
    "expected 'all', a list of Conversation SIDs (CH...), "
    "or a conversation filter {state, created_before, ...}"
)

ConversationSelector = Annotated[
    Annotated[Literal["all"], BeforeValidator(_must_be_all), Tag("all")]
    | Annotated[tuple[ConversationSid, ...], BeforeValidator(_sid_list), Tag("sids")]
    | Annotated[ConversationFilter, Tag("filter")],
    Discriminator(
        _selector_tag,
        custom_error_type="bulkops",
        custom_error_message=_SELECTOR_HELP,
        custom_error_context={"detail": _SELECTOR_HELP},
    ),
]

# Union tags pydantic puts in error locations under where.conversations (the spec's error
# translation drops them from YAML paths).
SELECTOR_TAGS: dict[str, object] = {
    "all": Literal["all"],
    "sids": tuple[ConversationSid, ...],
    "filter": ConversationFilter,
}


@dataclass(frozen=True, slots=True)
class ConversationQuery:
    """Conversations by state and age (v1 states are lower-case, v2 statuses upper-case)."""

    api: Api
    states: tuple[str, ...] = ()
    created: TimeWindow = ANY_TIME
    updated: TimeWindow = ANY_TIME


def within_of(
    selector: str | tuple[str, ...] | ConversationFilter,
    window: Callable[[str], TimeWindow],
) -> tuple[str, ...] | ConversationQuery | None:
    """What a ``where.conversations`` selector means once its times are resolved."""
    if isinstance(selector, ConversationFilter):
        return ConversationQuery(
            "v1",
            tuple(selector.state or ()),
            window("where.conversations.created"),
            window("where.conversations.updated"),
        )
    if isinstance(selector, tuple):
        return tuple(selector)
    return None


# --- listing ---------------------------------------------------------------------------------


def conversation_verdict(
    item: dict[str, Any], query: ConversationQuery, created: str, updated: str
) -> bool | None:
    """Whether a listed conversation matches ``query``; None when a field it needs is unknown."""
    # Both APIs' state filters are sent to the server and checked again here: a server that
    # ignores State/status must not make a closed-only job delete active conversations.
    times = windows(item, ((created, query.created), (updated, query.updated)))
    if times is False:
        return False
    if query.states:
        state = item.get("state" if query.api == "v1" else "status")
        if not isinstance(state, str):
            return None
        if state not in query.states:
            return False
    return times


async def v1_conversation_pages(
    ctx: ListContext, query: ConversationQuery, rejected: Rejections
) -> AsyncIterator[list[str]]:
    """SIDs of the v1 conversations matching ``query``, a listed page at a time; what it leaves
    out is counted in ``rejected``."""
    path = conversations_prefix(ctx.service)
    states: tuple[str | None, ...] = query.states or (None,)
    for state in states:
        params = [("PageSize", str(V1_PAGE))]
        if state:
            params.append(("State", state))
        async for page in ctx.v1_pages(path, "conversations", params):
            before = rejected.total()
            sids: list[str] = []
            for item in page:
                sid = item_id(item, "sid", CONVERSATION_SID, rejected)
                if sid is not None:
                    ctx.saw_attributes(sid, item.get("attributes"))
                if (
                    sid is not None
                    and belongs(item, "chat_service_sid", ctx.service, rejected)
                    and chosen(
                        conversation_verdict(item, query, "date_created", "date_updated"),
                        rejected,
                    )
                ):
                    sids.append(sid)
            rejected.note(path, before)
            yield sids


@dataclass(frozen=True, slots=True)
class ListChildren(Listing):
    """Messages or participants of some v1 conversations: all, a list, or those matching a query."""

    children: ResourceKind  # messages or participants
    within: tuple[str, ...] | ConversationQuery | None  # None = every conversation
    created: TimeWindow = ANY_TIME  # messages only

    @property
    def kind(self) -> ResourceKind:
        """The kind of the targets it selects."""
        return self.children

    def path(self, service: str | None) -> str:
        """The collection it lists, as its discovery error names it."""
        return f"{conversations_prefix(service)}/*/{self.segment}"

    @property
    def segment(self) -> str:
        """The children's collection under a conversation: Messages or Participants."""
        return self.children.word.capitalize()

    def conversations(self) -> tuple[str, ...] | None:
        """The only conversations whose children it may select, or None if not limited so."""
        return self.within if isinstance(self.within, tuple) else None

    async def list(self, ctx: ListContext) -> None:
        """Drain several conversations at once, so that deletes interleave across them: one
        conversation alone is capped at 30 deletes/s, the account at far more."""
        send, receive = anyio.create_memory_object_stream[str](ctx.fanout)
        listed = ctx.listed
        async with anyio.create_task_group() as tg:
            for _ in range(ctx.fanout):
                tg.start_soon(self._drain, ctx, receive.clone())
            receive.close()
            async with send:
                try:
                    async for sid in self._parents(ctx):
                        if not ctx.skip(sid) and not (listed is not None and listed.done(sid)):
                            await send.send(sid)
                except BadListing as exc:
                    # Raised here, in the group's own body, it would reach the caller wrapped
                    # in an exception group: counted instead, and the conversations already
                    # sent are still drained.
                    ctx.rejected.failed(exc)

    async def _parents(self, ctx: ListContext) -> AsyncIterator[str]:
        within = self.within
        if isinstance(within, tuple):
            for sid in within:
                yield sid
        else:
            query = within if within is not None else ConversationQuery("v1")
            async for sids in v1_conversation_pages(ctx, query, ctx.rejected):
                for sid in sids:
                    yield sid

    async def _drain(self, ctx: ListContext, parents: ObjectReceiveStream[str]) -> None:
        async with parents:
            async for sid in parents:
                try:
                    left_out = await self._children_of(ctx, sid)
                except BadListing as exc:
                    # One conversation's listing cannot be followed: the others still are, and
                    # the source ends as a discovery error naming it.
                    ctx.rejected.failed(exc)
                    continue
                # A conversation with anything left out is not recorded as listed, so a resume
                # lists it again.
                if ctx.listed is not None and not left_out:
                    await ctx.listed.record(sid)

    async def _children_of(self, ctx: ListContext, sid: str) -> int:
        """Emit what one conversation's children select; return how many items it left out."""
        rejected = ctx.rejected
        ordered = self.children.name == "message"  # messages can be listed oldest first
        path = f"{conversations_prefix(ctx.service)}/{sid}/{self.segment}"
        params = [("PageSize", str(V1_PAGE))]
        order: AscendingCheck | None = None
        if ordered:
            params.append(("Order", "asc"))
            if self.created.before is not None:
                order = AscendingCheck(self.created.before)
        bounds = (("date_created", self.created),)
        left_out = 0
        async with aclosing(ctx.v1_pages(path, self.segment.lower(), params)) as pages:
            async for page in pages:
                before = rejected.total()
                selected: list[Target] = []
                times: list[datetime | None] = []
                for item in page:
                    is_dict = isinstance(item, dict)
                    times.append(parse_time(item.get("date_created")) if is_dict else None)
                    child = item_id(item, "sid", self.children.pattern, rejected)
                    if (
                        child is not None
                        and belongs(item, "conversation_sid", sid, rejected)
                        and belongs(item, "chat_service_sid", ctx.service, rejected)
                        and chosen(windows(item, bounds), rejected)
                    ):
                        # The parent is the conversation listed, never one the item names.
                        selected.append(Target(self.children, child, sid))
                rejected.note(path, before)
                left_out += rejected.total() - before  # no await since `before`: this page's
                await ctx.emit(selected)
                # Messages asked for oldest first: once the order is shown and a whole page is
                # past the cutoff, so is everything after it.
                if order is not None and order.page_ends_listing(times):
                    break
        return left_out
