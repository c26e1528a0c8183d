"""Conversation Users (``US…``): deleted one by one, synchronously (204), in the job's Service.

Selected by ID, manifest, or age (``where``: created and updated bounds, or ``all: true``),
filtered here on each User's own timestamps: the list has no date filter. A User's delete
removes the User only (its participants keep their identity), so nothing is covered by it, and
it counts against the per-Service limit of 30 actions/s that Twilio documents for user deletes.
Users are listed last, after every conversation.

A User's identity, friendly name and attributes are personal data: only the ``US…`` SID is
read from a list reply, and only it reaches the log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

from runner.kinds.base import Product, ResourceKind, Target, Windows
from runner.kinds.ids import sid_pattern
from runner.kinds.listing import (
    ANY_TIME,
    ListContext,
    Listing,
    TimeWindow,
    belongs,
    chosen,
    item_id,
    windows,
)
from runner.kinds.spec_model import Flag, SpecTarget, Where, bound_order, filters_with_all
from runner.kinds.timespec import Bound
from runner.kinds.v1 import service_scope, v1_prefix

PAGE = 50  # the spec caps PageSize at 50 on the Users list, not 100


def users_path(service: str | None) -> str:
    """The Users collection of the job's Service (the account's default one without it)."""
    return f"{v1_prefix(service)}/Users"


class UsersWhere(Where):
    """Users by age; ``all: true`` for every User of the Service."""

    misplaced: ClassVar[Mapping[str, str]] = {
        "identity": "users are selected by age or all: true; list their SIDs (US...) in ids",
        "state": "users have no state: filter by created_* / updated_* or all: true",
        "conversations": "users are not selected by conversation: filter by created_* / "
        "updated_* or all: true",
    }

    created_before: Bound | None = None
    created_after: Bound | None = None
    updated_before: Bound | None = None
    updated_after: Bound | None = None
    all: Flag | None = None


class UsersTarget(SpecTarget):
    """Conversation Users (v1), by ``US…`` SIDs, manifest or age, in the job's Service."""

    kind: Literal["users"]
    where: UsersWhere | None = None

    def _where_problems(self) -> list[tuple[str, str]]:
        assert isinstance(self.where, UsersWhere)
        return filters_with_all(self.where, "user") + bound_order(self.where, "where")


@dataclass(frozen=True, slots=True)
class ListUsers(Listing):
    """The Users of the job's Service whose timestamps lie in both windows."""

    created: TimeWindow = ANY_TIME
    updated: TimeWindow = ANY_TIME

    @property
    def kind(self) -> ResourceKind:
        """Users."""
        return KIND

    def path(self, service: str | None) -> str:
        """The collection it lists, as its discovery error names it."""
        return users_path(service)

    async def list(self, ctx: ListContext) -> None:
        """Emit the selected Users, a listed page at a time."""
        path = users_path(ctx.service)
        bounds = (("date_created", self.created), ("date_updated", self.updated))
        rejected = ctx.rejected
        async for page in ctx.v1_pages(path, "users", [("PageSize", str(PAGE))]):
            before = rejected.total()
            selected: list[Target] = []
            for item in page:
                sid = item_id(item, "sid", KIND.pattern, rejected)
                if (
                    sid is not None
                    and belongs(item, "chat_service_sid", ctx.service, rejected)
                    and chosen(windows(item, bounds), rejected)
                ):
                    selected.append(Target(KIND, sid))
            rejected.note(path, before)
            await ctx.emit(selected)


def _delete_path(target: Target, service: str | None) -> str:
    return f"{users_path(service)}/{target.id}"


def _select(target: SpecTarget, window: Windows) -> ListUsers:
    return ListUsers(window("where.created"), window("where.updated"))


KIND = ResourceKind(
    name="user",
    word="users",
    api=None,
    code="u",
    log_index=6,
    label="users",
    product=Product.CONVERSATIONS,
    pattern=sid_pattern("user", "User SID", "US"),
    is_async=False,
    idempotent_header=False,
    has_parent=False,
    covers_children=False,
    phase=4,  # last: after every conversation
    delete_path=_delete_path,
    limit_scope=service_scope,
    target_model=UsersTarget,
    select=_select,
    fetch_path=_delete_path,  # a GET of the resource it deletes: 404 once gone
    per_service=True,
)
