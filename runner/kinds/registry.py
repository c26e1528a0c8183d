"""Every resource kind, found by module: adding a kind is adding one module to this package.

Like anyio's backends, each kind is a module of :mod:`runner.kinds` exporting ``KIND`` (a
:class:`~runner.kinds.base.ResourceKind`); this module imports them all once and checks that
they can live together: names, log codes and spec words unique, and each kind's ``log_index``
unique and below 8, because the checkpoint replay packs it into 3 bits and old logs depend on
each index keeping its meaning. A module may export ``SELECTOR`` instead (a
:class:`~runner.kinds.selector.Selector`: a spec word whose targets are other kinds'); its word
is a spec word like a kind's.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable

import runner.kinds as _package
from runner.kinds.base import ResourceKind
from runner.kinds.ids import Api
from runner.kinds.selector import Selector
from runner.kinds.spec_model import SpecTarget

__all__ = [
    "BY_CODE",
    "KINDS",
    "MAX_KINDS",
    "SELECTORS",
    "KindRegistryError",
    "by_code",
    "by_name",
    "by_spec",
    "check_kinds",
    "check_selectors",
    "selector_of",
    "spec_words",
    "target_models",
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


def check_selectors(
    selectors: Iterable[Selector], kinds: Iterable[ResourceKind]
) -> tuple[Selector, ...]:
    """``selectors`` by word, once no two share a word and none takes a kind's."""
    taken = {k.word: repr(k) for k in kinds}
    ordered = sorted(selectors, key=lambda s: s.word)
    for selector in ordered:
        other = taken.setdefault(selector.word, repr(selector))
        if other != repr(selector):
            raise KindRegistryError(f"{other} and {selector!r} have the same spec word")
    return tuple(ordered)


def _discover() -> tuple[tuple[ResourceKind, ...], tuple[Selector, ...]]:
    found: list[ResourceKind] = []
    selectors: list[Selector] = []
    for info in pkgutil.iter_modules(_package.__path__, _package.__name__ + "."):
        module = importlib.import_module(info.name)
        kind = getattr(module, "KIND", None)
        if isinstance(kind, ResourceKind):
            found.append(kind)
        selector = getattr(module, "SELECTOR", None)
        if isinstance(selector, Selector):
            selectors.append(selector)
    kinds = check_kinds(found)
    return kinds, check_selectors(selectors, kinds)


KINDS, SELECTORS = _discover()
"""Every kind, in ``log_index`` order (the order of reports and tables); every selector."""

BY_CODE: dict[str, ResourceKind] = {k.code: k for k in KINDS}
_BY_NAME: dict[str, ResourceKind] = {k.name: k for k in KINDS}
_BY_SPEC: dict[tuple[str, Api | None], ResourceKind] = {(k.word, k.api): k for k in KINDS}
_SELECTORS: dict[str, Selector] = {s.word: s for s in SELECTORS}


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


def selector_of(word: str) -> Selector | None:
    """The selector a spec target's ``kind`` word names, or None for a kind's word."""
    return _SELECTORS.get(word)


def spec_words() -> list[str]:
    """The ``kind`` words a spec may use, in log order, each once; then the selectors'."""
    return list(dict.fromkeys([*(k.word for k in KINDS), *_SELECTORS]))


def target_models() -> dict[str, type[SpecTarget]]:
    """The spec's target model of each ``kind`` word (the conversation kinds share one)."""
    return {
        **{k.word: k.target_model for k in KINDS},
        **{s.word: s.target_model for s in SELECTORS},
    }
