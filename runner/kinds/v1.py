"""What the Conversations v1 kinds share: the collection path, Service-scoped when the job names
a Service, and the per-scope limits Twilio documents for v1 deletes."""

from __future__ import annotations

from runner.kinds.base import Target
from runner.values import Scope

__all__ = ["conversation_scope", "conversations_prefix", "service_scope", "v1_prefix"]


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
