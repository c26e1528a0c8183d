"""Conversation Memory stores (``mem_store_…``): 202 and an Operation, on the Memory host.

Selected by ID, manifest, or ``where: {all: true}``: the store list returns bare IDs, with
nothing to filter on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

from runner.kinds.base import Product, ResourceKind, Target, Windows, no_scope
from runner.kinds.ids import ttid_pattern
from runner.kinds.listing import ListContext, Listing, listed_id
from runner.kinds.spec_model import Flag, SpecTarget, Where

PATH = "/v1/ControlPlane/Stores"
PAGE = 100  # Memory's ControlPlanePageSize maximum

_STORES_ONLY_ALL = (
    "the Memory store list returns bare IDs, so stores can only be selected with `all: true` "
    "(or by ids / from_file)"
)


class MemoryStoresWhere(Where):
    """Every Memory store (``all: true``): the store list has no filter."""

    misplaced: ClassVar[Mapping[str, str]] = {
        name: _STORES_ONLY_ALL
        for name in (
            "created_before",
            "created_after",
            "updated_before",
            "updated_after",
            "state",
            "status",
        )
    }

    all: Flag | None = None


class MemoryStoresTarget(SpecTarget):
    """Conversation Memory stores (async Operation), by ID, manifest, or ``all: true``."""

    kind: Literal["memory_stores"]
    where: MemoryStoresWhere | None = None

    def _where_problems(self) -> list[tuple[str, str]]:
        assert isinstance(self.where, MemoryStoresWhere)
        if self.where.all is not True:
            return [("where", f"selects nothing: {_STORES_ONLY_ALL}")]
        return []


@dataclass(frozen=True, slots=True)
class ListStores(Listing):
    """Every Memory store (the list returns bare IDs; there is nothing to filter on)."""

    @property
    def kind(self) -> ResourceKind:
        """Memory stores."""
        return KIND

    def path(self, service: str | None) -> str:
        """The collection it lists, as its discovery error names it."""
        return PATH

    async def list(self, ctx: ListContext) -> None:
        """Emit every store, a listed page at a time."""
        rejected = ctx.rejected
        async for items in ctx.token_pages(Product.MEMORY, PATH, "stores", [], PAGE):
            before = rejected.total()
            stores = [listed_id(i, KIND.pattern, rejected) for i in items]
            rejected.note(PATH, before)
            await ctx.emit([Target(KIND, i) for i in stores if i is not None])


def _delete_path(target: Target, _service: str | None) -> str:
    return f"{PATH}/{target.id}"


def _select(target: SpecTarget, window: Windows) -> ListStores:
    return ListStores()


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
    target_model=MemoryStoresTarget,
    select=_select,
    fetch_path=_delete_path,  # a GET of the resource it deletes: 404 once gone
)
