"""Identifier patterns, and the one gate every ID passes before it may appear in a URL.

Every pattern is anchored and matched with :func:`re.fullmatch` (``$`` alone would accept a
trailing newline), and none admits ``/``, ``%``, ``.``, ``?``, ``#`` or whitespace, so no ID a
user writes can change the path a request goes to. The patterns come from Twilio's specs (see
``shared/twilio-api.md`` §6); where the spec gives none (v2 configurations) the examples set the
shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

__all__ = [
    "ID_PATTERNS",
    "Api",
    "IdPattern",
    "Kind",
    "TargetId",
    "id_kind_for",
    "parse_target_id",
    "show_value",
    "target_id",
    "validate_id",
]

Api = Literal["v1", "v2"]


class Kind(StrEnum):
    """What a job target deletes; the value is the word written in the job spec."""

    MESSAGES = "messages"
    PARTICIPANTS = "participants"
    CONVERSATIONS = "conversations"
    CONFIGURATIONS = "configurations"
    MEMORY_STORES = "memory_stores"

    @property
    def has_parent(self) -> bool:
        """Whether an ID of this kind only makes sense with its conversation SID."""
        return self in (Kind.MESSAGES, Kind.PARTICIPANTS)


@dataclass(frozen=True, slots=True)
class IdPattern:
    """A named, anchored ID pattern and the words that describe it to a user."""

    key: str
    name: str
    prefix: str
    shape: str
    regex: re.Pattern[str]

    def matches(self, value: str) -> bool:
        """Whether ``value`` is entirely an ID of this kind."""
        return self.regex.fullmatch(value) is not None


def _sid(key: str, name: str, prefix: str) -> IdPattern:
    return IdPattern(
        key,
        name,
        prefix,
        f"{prefix} followed by 32 hex digits",
        re.compile(prefix + r"[0-9a-fA-F]{32}"),
    )


def _ttid(key: str, name: str, prefix: str, prefix_regex: str, prefix_words: str) -> IdPattern:
    return IdPattern(
        key,
        name,
        prefix,
        f"{prefix_words} followed by 26 lower-case letters and digits, the first 0-7",
        re.compile(prefix_regex + r"[0-7][0-9a-z]{25}"),
    )


ID_PATTERNS: dict[str, IdPattern] = {
    p.key: p
    for p in (
        _sid("conversation_v1", "Conversation SID", "CH"),
        _sid("message", "Message SID", "IM"),
        _sid("participant", "Participant SID", "MB"),
        _sid("service", "Service SID", "IS"),
        _sid("account", "Account SID", "AC"),
        _sid("api_key", "API Key SID", "SK"),
        _ttid(
            "conversation_v2",
            "v2 Conversation ID",
            "conv_conversation_",
            "conv_conversation_",
            "conv_conversation_",
        ),
        # The spec gives configurations no pattern; its examples use conv_configuration_ and
        # cfg_configuration_, so any lower-case word before _configuration_ is accepted.
        _ttid(
            "configuration",
            "Configuration ID",
            "conv_configuration_",
            "[a-z]+_configuration_",
            "a prefix such as conv_configuration_",
        ),
        # The Memory spec's StoreId pattern also accepts the older mem_service_ prefix.
        _ttid(
            "memory_store", "Memory store ID", "mem_store_", "mem_(?:store|service)_", "mem_store_"
        ),
    )
}

# Longer values are cut in messages: they are never valid, and an error line should stay readable.
_SHOW_MAX = 60


def show_value(value: object) -> str:
    """``repr`` of a user value for an error message, shortened when it is long."""
    text = repr(value)
    if len(text) > _SHOW_MAX:
        return text[: _SHOW_MAX - 4] + "...'"
    return text


# Operation ids have no published pattern (v2 and Memory mint their own); these characters are
# all either uses, and none of them can step out of the Operations path they are put into.
OPERATION_ID = re.compile(r"[A-Za-z0-9_-]{1,512}")


def is_operation_id(value: object) -> bool:
    """Whether ``value`` can name an Operation in a status path (from a 202 or a log line)."""
    return isinstance(value, str) and OPERATION_ID.fullmatch(value) is not None


def validate_id(kind_key: str, value: str) -> str:
    """Return ``value`` when it is an ID of ``kind_key`` (a key of :data:`ID_PATTERNS`).

    Raises ValueError saying what the ID should look like and, when the value is a valid ID of
    another kind, which kind that is (a Service SID given where a Conversation SID belongs).
    """
    pattern = ID_PATTERNS[kind_key]
    if not isinstance(value, str):
        raise ValueError(f"{show_value(value)} is not a {pattern.name} ({pattern.shape})")
    if pattern.matches(value):
        return value
    message = f"{show_value(value)} is not a {pattern.name} ({pattern.shape})"
    other = next((p for p in ID_PATTERNS.values() if p.key != kind_key and p.matches(value)), None)
    if other is not None:
        message += (
            f"; {other.prefix}... is a {other.name}; a {pattern.name} starts with {pattern.prefix}"
        )
    elif value.strip() != value:
        message += "; remove the surrounding spaces"
    raise ValueError(message)


@dataclass(frozen=True, slots=True)
class TargetId:
    """One thing to delete: its kind, its ID, and for messages and participants its conversation.

    Build these with :func:`parse_target_id` or :func:`target_id`, which validate every part, so
    a ``TargetId`` is always safe to put in a URL.
    """

    kind: Kind
    id: str
    conversation_sid: str | None = None

    @property
    def api(self) -> Api | None:
        """For conversations, the API that deletes it (v2 IDs look nothing like v1 SIDs)."""
        if self.kind is not Kind.CONVERSATIONS:
            return None
        return "v2" if self.id.startswith("conv_") else "v1"

    @property
    def key(self) -> str:
        """A stable, unique text key (``kind:ID`` or ``kind:CH…/ID``) for checkpoints."""
        if self.conversation_sid is None:
            return f"{self.kind.value}:{self.id}"
        return f"{self.kind.value}:{self.conversation_sid}/{self.id}"


def id_kind_for(kind: Kind, api: Api | None = None) -> str:
    """The :data:`ID_PATTERNS` key of the IDs a target of ``kind`` (and ``api``) deletes."""
    match kind:
        case Kind.MESSAGES:
            return "message"
        case Kind.PARTICIPANTS:
            return "participant"
        case Kind.CONVERSATIONS:
            return "conversation_v2" if api == "v2" else "conversation_v1"
        case Kind.CONFIGURATIONS:
            return "configuration"
        case Kind.MEMORY_STORES:
            return "memory_store"


def target_id(
    kind: Kind, value: str, conversation_sid: str | None = None, *, api: Api | None = None
) -> TargetId:
    """Validate the separate parts of a target (as a manifest row gives them) into a TargetId.

    ``conversation_sid`` is required for messages and participants and ignored for other kinds.
    Raises ValueError naming the first bad part.
    """
    checked = validate_id(id_kind_for(kind, api), value)
    if not kind.has_parent:
        return TargetId(kind, checked, None)
    if conversation_sid is None or conversation_sid == "":
        raise ValueError(f"{kind.value} need their conversation SID (CH...) as well as their own")
    return TargetId(kind, checked, validate_id("conversation_v1", conversation_sid))


def parse_target_id(kind: Kind, text: str, *, api: Api | None = None) -> TargetId:
    """Parse an ID as written in a spec's ``ids`` list: ``CH…/IM…`` for messages and participants.

    Raises ValueError saying what the entry should look like.
    """
    if not isinstance(text, str):
        raise ValueError(f"{show_value(text)} is not an ID (expected text)")
    if not kind.has_parent:
        return target_id(kind, text, api=api)
    own = ID_PATTERNS[id_kind_for(kind)]
    parent, sep, child = text.partition("/")
    if not sep or "/" in child:
        if own.matches(text):
            raise ValueError(
                f"{show_value(text)} needs its conversation: write it as CH.../{own.prefix}... "
                f"(conversation SID / {own.name})"
            )
        raise ValueError(
            f"{show_value(text)} is not CH.../{own.prefix}... "
            f"(a Conversation SID, '/', a {own.name})"
        )
    return target_id(kind, child, parent, api=api)
