"""Reading list replies without trusting them: envelopes, next pages, loops and page order.

Pure functions and small state machines; discovery calls them on every reply it gets. A reply
they cannot vouch for raises :class:`~runner.errors.BadListing` naming the listing, which fails
that source (exit 1) instead of crashing the run, looping forever or following the server
somewhere the job never pointed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from yarl import URL

from runner.errors import BadListing

# Pages per listing (one collection, or one conversation's messages). 100,000 pages hold 10M v1
# items at 100 a page and 100M v2 items at 1,000: past any real collection, while a server that
# mints a fresh cursor forever is stopped after a bounded number of GETs.
MAX_PAGES = 100_000


@dataclass(frozen=True, slots=True)
class Page:
    """One list reply: its raw items (each still to be vetted) and the cursor to the next."""

    items: list[Any]
    next: str | None  # v1: next_page_url; v2 and Memory: nextToken


def read_envelope(path: str, body: Any, key: str, next_field: str) -> Page:
    """The items and next cursor of a list reply ``{key: [...], "meta": {...}}``.

    Raises BadListing when the reply is not that shape: not an object, ``meta`` not an object,
    ``meta.key`` naming another list, the list missing or not a list, or a cursor not text.
    """
    if not isinstance(body, dict):
        raise BadListing(path, "the reply is not a JSON object")
    meta = body.get("meta")
    if not isinstance(meta, dict):
        raise BadListing(path, "the reply's meta is not an object")
    named = meta.get("key", key)
    if named != key:
        # Another resource's list (a next page elsewhere, a misrouted reply): none of its IDs
        # belong in this listing's URLs.
        raise BadListing(path, f"the reply lists something other than {key}")
    items = body.get(key)
    if not isinstance(items, list):
        raise BadListing(path, f"the reply has no list of {key}")
    cursor = meta.get(next_field)
    if cursor is not None and not isinstance(cursor, str):
        raise BadListing(path, f"the reply's meta.{next_field} is not text")
    return Page(items, cursor or None)


def next_page_url(path: str, value: str) -> str:
    """A v1 ``next_page_url`` that may be followed from a listing of ``path``.

    It must be an absolute http(s) URL without credentials in it, on exactly ``path`` (only the
    query may change): a next page on another path or resource is refused, as is anything yarl
    cannot read. The origin is checked by the client, which knows the configured hosts.
    """
    try:
        url = URL(value)
        absolute = url.absolute and url.scheme in ("http", "https") and bool(url.host)
        port = url.port  # reading it raises for a port out of range
    except (ValueError, TypeError) as exc:
        raise BadListing(path, "the next page URL cannot be read") from exc
    if not absolute or port is None:
        raise BadListing(path, "the next page URL is not an absolute http(s) URL")
    if url.user is not None or url.password is not None:
        # Never echoed: it carries credentials.
        raise BadListing(path, "the next page URL carries credentials; refused")
    if url.raw_path != URL(path).raw_path:
        raise BadListing(path, "the next page URL points at another path; refused")
    return value


class PageGuard:
    """Counts the pages of one listing and remembers every cursor it was given.

    A cursor seen twice (the same next URL or token again: a loop, however long its cycle) or
    more than ``max_pages`` pages is a BadListing, so a server cannot keep a listing going
    forever. Cursors are kept as 64-bit hashes (a collision only ends a listing early, as an
    error, never silently).
    """

    def __init__(self, path: str, max_pages: int | None = None) -> None:
        self._path = path
        self._max = MAX_PAGES if max_pages is None else max_pages
        self._seen: set[int] = set()
        self.pages = 0

    def page(self) -> None:
        """Count one more page requested; raise BadListing past the bound."""
        self.pages += 1
        if self.pages > self._max:
            raise BadListing(self._path, f"more than {self._max:,} pages; stopped listing")

    def follow(self, cursor: str) -> str:
        """Return ``cursor`` when it was never given before in this listing; raise BadListing."""
        digest = hash(cursor)
        if digest in self._seen:
            raise BadListing(self._path, "the server gave the same next page twice (a loop)")
        self._seen.add(digest)
        return cursor
