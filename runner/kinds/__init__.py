"""What can be deleted: one module per resource kind, found by the registry, and ID patterns."""

from __future__ import annotations

from runner.kinds.base import Product, ResourceKind, Target
from runner.kinds.ids import ID_PATTERNS, Api, validate_id
from runner.kinds.registry import KINDS, by_code, by_name, by_spec

__all__ = [
    "ID_PATTERNS",
    "KINDS",
    "Api",
    "Product",
    "ResourceKind",
    "Target",
    "by_code",
    "by_name",
    "by_spec",
    "validate_id",
]
