"""Orchestrator v2 configurations (``conv_configuration_…``): 202 and an Operation to follow."""

from __future__ import annotations

from runner.kinds.base import Product, ResourceKind, Target, no_scope
from runner.kinds.ids import ttid_pattern


def _delete_path(target: Target, _service: str | None) -> str:
    return f"/v2/ControlPlane/Configurations/{target.id}"


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
)
