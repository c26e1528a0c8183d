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
from typing import Literal

__all__ = [
    "CONVERSATION_SID",
    "ID_PATTERNS",
    "SERVICE_SID",
    "Api",
    "IdPattern",
    "is_operation_id",
    "show_value",
    "sid_pattern",
    "ttid_pattern",
    "validate_id",
]

Api = Literal["v1", "v2"]


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


# Every pattern by key. The kinds' own patterns join it as their modules are imported (through
# the builders below), so that a message can say which kind a misplaced ID belongs to.
ID_PATTERNS: dict[str, IdPattern] = {}


def _known(pattern: IdPattern) -> IdPattern:
    if ID_PATTERNS.setdefault(pattern.key, pattern) is not pattern:
        raise ValueError(f"two ID patterns are named {pattern.key!r}")
    return pattern


def sid_pattern(key: str, name: str, prefix: str) -> IdPattern:
    """A Twilio SID: two letters and 32 hex digits."""
    return _known(
        IdPattern(
            key,
            name,
            prefix,
            f"{prefix} followed by 32 hex digits",
            re.compile(prefix + r"[0-9a-fA-F]{32}"),
        )
    )


def ttid_pattern(
    key: str,
    name: str,
    prefix: str,
    prefix_regex: str | None = None,
    prefix_words: str | None = None,
) -> IdPattern:
    """A type-tagged ID of the v2 and Memory APIs: a prefix and 26 base-32 characters."""
    return _known(
        IdPattern(
            key,
            name,
            prefix,
            f"{prefix_words or prefix} followed by 26 lower-case letters and digits, the first 0-7",
            re.compile((prefix_regex or prefix) + r"[0-7][0-9a-z]{25}"),
        )
    )


# The IDs that are no kind of their own: a parent (conversations), a scope, the credentials.
CONVERSATION_SID = sid_pattern("conversation_v1", "Conversation SID", "CH")
SERVICE_SID = sid_pattern("service", "Service SID", "IS")
sid_pattern("account", "Account SID", "AC")
sid_pattern("api_key", "API Key SID", "SK")

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
