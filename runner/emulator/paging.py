"""Keyset pagination shared by every list: opaque tokens that name the last item served.

A page token carries (direction, key of the boundary item, scope). The next page starts strictly
after the last key served, so deleting what was listed never makes the next page skip an item, as
an offset would. A token used on another list (other path or filters) is rejected.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .errors import bad_request

T = TypeVar("T")
# A walker yields (key, item) in list order ("forward") or reverse, strictly after ``key``.
Walker = Callable[[Any, bool], Iterator[tuple[Any, T]]]


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of items plus the tokens to its neighbours."""

    items: list[T]
    next_token: str | None
    previous_token: str | None


def _digest(scope: str) -> str:
    """A short fingerprint of the list a token belongs to (path and filters)."""
    return hashlib.blake2b(scope.encode(), digest_size=6).hexdigest()


def encode_token(prefix: str, direction: str, key: Any, scope: str) -> str:
    """An opaque, URL-safe token."""
    raw = json.dumps([direction, key, _digest(scope)], separators=(",", ":")).encode()
    return prefix + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(prefix: str, token: str, scope: str) -> tuple[str, Any]:
    """(direction, key) of a token; 400 when it is malformed or belongs to another list."""
    if not token.startswith(prefix):
        raise bad_request("Invalid page token")
    body = token[len(prefix):]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        direction, key, token_scope = json.loads(raw)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise bad_request("Invalid page token") from exc
    if direction not in ("n", "p") or token_scope != _digest(scope):
        raise bad_request("Invalid page token: it belongs to another list or other filters")
    return direction, key


def keyset_page(
    walk: Walker[T], size: int, prefix: str, scope: str, token: str | None,
    key_of: Callable[[Any], Any] = lambda k: k,
) -> Page[T]:
    """Serve ``size`` items from the position a token names (or the start)."""
    direction, key = ("n", None) if token is None else decode_token(prefix, token, scope)
    key = None if key is None else key_of(key)
    forward = direction == "n"
    taken: list[tuple[Any, T]] = []
    for pair in walk(key, forward):
        taken.append(pair)
        if len(taken) == size:
            break
    if not forward:
        taken.reverse()
    if not taken:
        return Page([], None, None)
    first_key, last_key = taken[0][0], taken[-1][0]
    has_next = next(walk(last_key, True), None) is not None
    has_prev = next(walk(first_key, False), None) is not None
    return Page(
        [item for _, item in taken],
        encode_token(prefix, "n", last_key, scope) if has_next else None,
        encode_token(prefix, "p", first_key, scope) if has_prev else None,
    )
