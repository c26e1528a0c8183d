"""Orchestrator v2 configurations (``conv_configuration_…``): 202 and an Operation to follow.

Selected by ID, manifest, or age (``where``), filtered here: the list has no date filter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

from runner.kinds.base import Product, ResourceKind, Target, Windows, no_scope
from runner.kinds.ids import ttid_pattern
from runner.kinds.listing import (
    ANY_TIME,
    ListContext,
    Listing,
    TimeWindow,
    chosen,
    item_id,
    windows,
)
from runner.kinds.spec_model import Flag, SpecTarget, Where, bound_order, filters_with_all
from runner.kinds.timespec import Bound

PATH = "/v2/ControlPlane/Configurations"
PAGE = 1000  # the v2 spec's maximum pageSize


class ConfigurationsWhere(Where):
    """Configurations by age; ``all: true`` for every one."""

    misplaced: ClassVar[Mapping[str, str]] = {
        "state": "configurations have no state: filter by created_* / updated_* or all: true",
        "status": "configurations have no status: filter by created_* / updated_* or all: true",
    }

    created_before: Bound | None = None
    created_after: Bound | None = None
    updated_before: Bound | None = None
    updated_after: Bound | None = None
    all: Flag | None = None


class ConfigurationsTarget(SpecTarget):
    """Orchestrator v2 configurations (async Operation), by ID, manifest or age."""

    kind: Literal["configurations"]
    where: ConfigurationsWhere | None = None

    def _where_problems(self) -> list[tuple[str, str]]:
        assert isinstance(self.where, ConfigurationsWhere)
        return filters_with_all(self.where, "configuration") + bound_order(self.where, "where")


@dataclass(frozen=True, slots=True)
class ListConfigurations(Listing):
    """v2 configurations by age (filtered client-side: the list has no date filter)."""

    created: TimeWindow = ANY_TIME
    updated: TimeWindow = ANY_TIME

    @property
    def kind(self) -> ResourceKind:
        """Configurations."""
        return KIND

    def path(self, service: str | None) -> str:
        """The collection it lists, as its discovery error names it."""
        return PATH

    async def list(self, ctx: ListContext) -> None:
        """Emit the configurations in the windows, a listed page at a time."""
        bounds = (("createdAt", self.created), ("updatedAt", self.updated))
        rejected = ctx.rejected
        async for items in ctx.token_pages(Product.CONVERSATIONS, PATH, "configurations", [], PAGE):
            before = rejected.total()
            selected: list[Target] = []
            for item in items:
                cid = item_id(item, "id", KIND.pattern, rejected)
                if cid is not None and chosen(windows(item, bounds), rejected):
                    selected.append(Target(KIND, cid))
            rejected.note(PATH, before)
            await ctx.emit(selected)


def _delete_path(target: Target, _service: str | None) -> str:
    return f"{PATH}/{target.id}"


def _select(target: SpecTarget, window: Windows) -> ListConfigurations:
    return ListConfigurations(window("where.created"), window("where.updated"))


KIND = ResourceKind(
    name="configuration",
    word="configurations",
    api=None,
    code="cf",
    log_index=4,
    label="configurations",
    product=Product.CONVERSATIONS,
    # The spec gives configurations no pattern; its examples use conv_configuration_ and
    # cfg_configuration_, so any lower-case word before _configuration_ is accepted.
    pattern=ttid_pattern(
        "configuration",
        "Configuration ID",
        "conv_configuration_",
        "[a-z]+_configuration_",
        "a prefix such as conv_configuration_",
    ),
    is_async=True,
    idempotent_header=True,
    has_parent=False,
    covers_children=False,
    # After conversations; before Memory stores, which configurations may point at.
    phase=2,
    delete_path=_delete_path,
    limit_scope=no_scope,
    target_model=ConfigurationsTarget,
    select=_select,
    fetch_path=_delete_path,  # a GET of the resource it deletes: 404 once gone
)
