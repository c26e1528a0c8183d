"""What bulkops can delete: each resource's product, delete path and answer style.

The catalog is pure data and path building. Every id reaching :func:`delete_path` has already
been validated against its pattern (``runner.kinds.ids``), so no input can change the path a
request takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from runner.values import Scope


class Product(StrEnum):
    """A Twilio host: its own base URL, rate budget and in-flight cap."""

    CONVERSATIONS = "conversations"
    MEMORY = "memory"


class Resource(StrEnum):
    """A deletable resource type, as the runner and its checkpoint name it."""

    MESSAGE = "message"
    PARTICIPANT = "participant"
    CONVERSATION_V1 = "conversation_v1"
    CONVERSATION_V2 = "conversation_v2"
    CONFIGURATION = "configuration"
    MEMORY_STORE = "memory_store"


@dataclass(frozen=True, slots=True)
class ResourceInfo:
    """Static facts about one resource type."""

    product: Product
    is_async: bool  # DELETE answers 202 + Operation rather than 204
    idempotent_header: bool  # DELETE takes an Idempotency-Key header (v2 only)
    code: str  # short name in checkpoint records, to keep the log small
    label: str  # human name for reports


CATALOG: dict[Resource, ResourceInfo] = {
    Resource.MESSAGE: ResourceInfo(Product.CONVERSATIONS, False, False, "m", "messages"),
    Resource.PARTICIPANT: ResourceInfo(Product.CONVERSATIONS, False, False, "p", "participants"),
    Resource.CONVERSATION_V1: ResourceInfo(
        Product.CONVERSATIONS, False, False, "c1", "conversations (v1)"
    ),
    Resource.CONVERSATION_V2: ResourceInfo(
        Product.CONVERSATIONS, True, True, "c2", "conversations (v2)"
    ),
    Resource.CONFIGURATION: ResourceInfo(Product.CONVERSATIONS, True, True, "cf", "configurations"),
    Resource.MEMORY_STORE: ResourceInfo(Product.MEMORY, True, False, "ms", "memory stores"),
}

BY_CODE: dict[str, Resource] = {info.code: res for res, info in CATALOG.items()}


@dataclass(frozen=True, slots=True)
class Target:
    """One thing to delete. ``parent`` is the conversation SID of a message or participant."""

    resource: Resource
    id: str
    parent: str | None = None

    @property
    def key(self) -> str:
        """A stable key, unique across resources, used for de-duplication and idempotency."""
        return f"{CATALOG[self.resource].code}:{self.id}"


def conversations_prefix(service: str | None) -> str:
    """The v1 collection path, Service-scoped when the job names a Service."""
    return f"/v1/Services/{service}/Conversations" if service else "/v1/Conversations"


def delete_path(target: Target, service: str | None) -> str:
    """The path of the DELETE request for ``target``."""
    res = target.resource
    if res is Resource.MESSAGE:
        return f"{conversations_prefix(service)}/{target.parent}/Messages/{target.id}"
    if res is Resource.PARTICIPANT:
        return f"{conversations_prefix(service)}/{target.parent}/Participants/{target.id}"
    if res is Resource.CONVERSATION_V1:
        return f"{conversations_prefix(service)}/{target.id}"
    if res is Resource.CONVERSATION_V2:
        return f"/v2/Conversations/{target.id}"
    if res is Resource.CONFIGURATION:
        return f"/v2/ControlPlane/Configurations/{target.id}"
    return f"/v1/ControlPlane/Stores/{target.id}"


def limit_key(target: Target, service: str | None) -> Scope | None:
    """The key of Twilio's per-scope action limit this delete counts against, if any.

    Twilio allows 30 actions/s per conversation for message and participant deletes and 30/s per
    Service for conversation deletes; v2 and Memory deletes have no published per-scope limit.
    """
    if target.resource in (Resource.MESSAGE, Resource.PARTICIPANT):
        assert target.parent is not None  # a message or participant always has its conversation
        return Scope("conversation", target.parent)
    if target.resource is Resource.CONVERSATION_V1:
        return Scope("service", service or "default")
    return None
