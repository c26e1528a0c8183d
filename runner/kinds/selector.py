"""What a selector is: a spec word that deletes nothing of its own, but selects other kinds'.

``kind: identity`` names a person, not a resource: what it deletes are that person's messages,
participants and User, targets of existing kinds. So it is no :class:`ResourceKind` (it has no
delete path, no ID pattern, no place in the log's 3-bit kind index), but a :class:`Selector`: a
module of :mod:`runner.kinds` that exports ``SELECTOR``, found by the registry beside the kinds.
Its listing emits targets of the kinds it ``yields``; the log, limits, report and resume see only
those.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from runner.kinds.base import ResourceKind, Windows

if TYPE_CHECKING:
    from runner.kinds.listing import Listing
    from runner.kinds.spec_model import ManifestInfo, SpecTarget

__all__ = ["Selector"]


@dataclass(frozen=True, eq=False)
class Selector:
    """A spec word whose targets are other kinds' (the identity of a person …).

    ``select`` turns a spec target (at YAML path ``where``, ``targets[3]``) into its listing.
    ``check_file`` validates the target's ``from_file`` (a list of requests, not of IDs) when the
    spec is parsed: its facts, or ValueError listing every problem.
    """

    word: str  # the `kind:` of a spec target
    label: str
    yields: tuple[ResourceKind, ...]  # the kinds of the targets its listing may emit
    target_model: type[SpecTarget]
    select: Callable[[SpecTarget, Windows, str], Listing]
    check_file: Callable[[Path, str, str], ManifestInfo]

    def __repr__(self) -> str:
        return f"<selector {self.word}>"
