"""What can be deleted: the resource kinds, their products and delete paths, and ID patterns."""

from __future__ import annotations

from runner.kinds.catalog import CATALOG, Product, Resource, Target
from runner.kinds.ids import ID_PATTERNS, Api, Kind, TargetId, parse_target_id, validate_id

__all__ = [
    "CATALOG",
    "ID_PATTERNS",
    "Api",
    "Kind",
    "Product",
    "Resource",
    "Target",
    "TargetId",
    "parse_target_id",
    "validate_id",
]
