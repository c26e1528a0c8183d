"""Every resource kind, found by module: adding a kind is adding one module to this package.

Like anyio's backends, each kind is a module of :mod:`runner.kinds` exporting ``KIND`` (a
:class:`~runner.kinds.base.ResourceKind`); this module imports them all once and checks that
they can live together: names, log codes and spec words unique, and each kind's ``log_index``
unique and below 8, because the checkpoint replay packs it into 3 bits and old logs depend on
each index keeping its meaning.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable

import runner.kinds as _package
from runner.kinds.base import ResourceKind
from runner.kinds.ids import Api

__all__ = [
    "BY_CODE",
    "KINDS",
    "MAX_KINDS",
    "KindRegistryError",
    "by_code",
    "by_name",
    "by_spec",
    "check_kinds",
    "spec_words",
]

MAX_KINDS = 8  # log_index takes 3 bits in the replay's packed state (log/records)


class KindRegistryError(Exception):
    """The kind modules contradict each other (a programming error, found at import)."""


def check_kinds(kinds: Iterable[ResourceKind]) -> tuple[ResourceKind, ...]:
    """``kinds`` ordered by ``log_index``, once they are shown to fit together."""
    ordered = sorted(kinds, key=lambda k: k.log_index)
    for label, facet in (
        ("name", lambda k: k.name),
        ("log code", lambda k: k.code),
        ("log_index", lambda k: k.log_index),
        ("spec word and api", lambda k: (k.word, k.api)),
    ):
        seen: dict[object, ResourceKind] = {}
        for kind in ordered:
            other = seen.setdefault(facet(kind), kind)
            if other is not kind:
                raise KindRegistryError(
                    f"kinds {other.name} and {kind.name} have the same {label} {facet(kind)!r}"
                )
    for kind in ordered:
        if not 0 <= kind.log_index < MAX_KINDS:
            raise KindRegistryError(
                f"kind {kind.name} has log_index {kind.log_index}: the log keeps a kind in 3 bits, "
                f"so at most {MAX_KINDS} kinds (indexes 0-{MAX_KINDS - 1}) can exist"
            )
    for word in sorted({k.word for k in ordered}):
        sharing = [k for k in ordered if k.word == word]
        if len(sharing) > 1 and any(k.api is None for k in sharing):
            raise KindRegistryError(f"kind word {word!r} has several kinds, not all with an api")
        if len({k.target_model for k in sharing}) > 1:
            # The spec tells targets apart by their word alone: one model per word.
            raise KindRegistryError(f"the kinds of word {word!r} have different spec models")
    return tuple(ordered)


def _discover() -> tuple[ResourceKind, ...]:
    found: list[ResourceKind] = []
    for info in pkgutil.iter_modules(_package.__path__, _package.__name__ + "."):
        module = importlib.import_module(info.name)
        kind = getattr(module, "KIND", None)
        if isinstance(kind, ResourceKind):
            found.append(kind)
    return check_kinds(found)


KINDS: tuple[ResourceKind, ...] = _discover()
"""Every kind, in ``log_index`` order (the order of reports and tables)."""

BY_CODE: dict[str, ResourceKind] = {k.code: k for k in KINDS}
_BY_NAME: dict[str, ResourceKind] = {k.name: k for k in KINDS}
_BY_SPEC: dict[tuple[str, Api | None], ResourceKind] = {(k.word, k.api): k for k in KINDS}


def by_code(code: str) -> ResourceKind:
    """The kind a log or plan line names by its code (KeyError for an unknown one)."""
    return BY_CODE[code]


def by_name(name: str) -> ResourceKind:
    """The kind of this name (``message``, ``conversation_v1``); KeyError for an unknown one."""
    return _BY_NAME[name]


def by_spec(word: str, api: str | None = None) -> ResourceKind:
    """The kind a spec target names: its ``kind`` word and, for conversations, its ``api``
    (v1 when left out). KeyError for an unknown word."""
    kind = _BY_SPEC.get((word, api)) or _BY_SPEC.get((word, None))  # type: ignore[arg-type]
    if kind is not None:
        return kind
    apis = sorted(str(a) for w, a in _BY_SPEC if w == word and a is not None)
    if not apis:
        raise KeyError(word)
    return _BY_SPEC[(word, "v1" if "v1" in apis else apis[0])]  # type: ignore[index]


def spec_words() -> list[str]:
    """The ``kind`` words a spec may use, in log order, each once."""
    return list(dict.fromkeys(k.word for k in KINDS))
