"""What a resource kind is: every fact bulkops needs about one deletable thing, in one value.

Each kind lives in a module of its own (``runner/kinds/messages.py`` …) that exports ``KIND``, a
:class:`ResourceKind`; :mod:`runner.kinds.registry` finds them. Nothing else in the runner
branches on a kind: the scheduler asks the kind for its delete path and limit scope, the log for
its code, the planner for its source, discovery for its lister.

Every ID reaching a delete path has been validated against its kind's pattern
(:mod:`runner.kinds.ids`), so no input can change the path a request takes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from runner.kinds.ids import CONVERSATION_SID, Api, IdPattern, show_value, validate_id
from runner.values import Scope

if TYPE_CHECKING:
    from runner.kinds.listing import Listing, TimeWindow
    from runner.kinds.spec_model import SpecTarget

# The resolved window of a spec target's bound pair, by its stem: "where.created" gives
# created_before/created_after as a TimeWindow (times resolved once, at the job's start).
Windows = Callable[[str], "TimeWindow"]

__all__ = ["Product", "ResourceKind", "Target", "Windows", "no_scope"]


class Product(StrEnum):
    """A Twilio host: its own base URL, rate budget and in-flight cap."""

    CONVERSATIONS = "conversations"
    MEMORY = "memory"


# eq=False: a kind is a singleton, compared and hashed by identity (the hot paths hash targets).
@dataclass(frozen=True, eq=False)
class ResourceKind:
    """One deletable resource type: its names, its IDs, its delete request and its place in a run.

    ``delete_path`` and ``limit_scope`` take the target and the job's Service SID (None for the
    account's default Service). ``select`` turns a spec target's ``where`` into the listing that
    finds what it selects, given the target's resolved time windows. ``fetch_path`` (same
    arguments) is where a GET of one target answers 404 once it is gone: what ``bulkops verify``
    asks; a kind without one cannot be checked one by one.
    """

    name: str  # as reports, plan counts and metrics name it: message, conversation_v1 …
    word: str  # the `kind:` of a spec target: messages, conversations …
    api: Api | None  # for a word with two APIs (conversations), which one this kind is
    code: str  # short name in checkpoint and plan lines, to keep the log small; never changes
    log_index: int  # the log packs the kind into 3 bits (log/records): 0-7, never changes
    label: str  # human name for reports
    product: Product
    pattern: IdPattern  # its IDs; for a kind with a parent, the child's own ID
    is_async: bool  # DELETE answers 202 + Operation rather than 204
    idempotent_header: bool  # DELETE takes an Idempotency-Key header (v2 only)
    has_parent: bool  # an ID only makes sense with its conversation SID (messages, participants)
    covers_children: bool  # deleting one deletes its messages and participants (v1 conversation)
    phase: int  # discovery order: lower phases are listed first
    delete_path: Callable[[Target, str | None], str]
    limit_scope: Callable[[Target, str | None], Scope | None]
    # The spec's target model for this kind's word (a SpecTarget whose `kind` is the word), and
    # what its `where` selects: a Listing, whose `list` is this kind's lister.
    target_model: type[SpecTarget]
    select: Callable[[SpecTarget, Windows], Listing]
    fetch_path: Callable[[Target, str | None], str] | None = None
    # Its IDs live in a Conversation Service, whose SID is part of its list and delete paths
    # (the v1 kinds): a job of several Services lists and deletes it in each.
    per_service: bool = False

    def __repr__(self) -> str:
        return f"<kind {self.name}>"

    def validate(self, value: str) -> str:
        """``value`` when it is an ID of this kind; ValueError saying what it should look like."""
        return validate_id(self.pattern.key, value)

    def target(self, value: str, parent: str | None = None) -> Target:
        """Validate the separate parts of a target (as a manifest row gives them).

        ``parent`` is required for a kind with a parent and ignored for the others. Raises
        ValueError naming the first bad part.
        """
        checked = self.validate(value)
        if not self.has_parent:
            return Target(self, checked, None)
        if parent is None or parent == "":
            raise ValueError(
                f"{self.word} need their conversation SID (CH...) as well as their own"
            )
        return Target(self, checked, validate_id(CONVERSATION_SID.key, parent))

    def parse_id(self, text: str) -> Target:
        """An ID as written in a spec's ``ids`` list: ``CH…/IM…`` for a kind with a parent.

        Raises ValueError saying what the entry should look like.
        """
        if not isinstance(text, str):
            raise ValueError(f"{show_value(text)} is not an ID (expected text)")
        if not self.has_parent:
            return self.target(text)
        own = self.pattern
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
        return self.target(child, parent)


@dataclass(frozen=True, slots=True)
class Target:
    """One thing to delete. ``parent`` is the conversation SID of a message or participant;
    ``service`` the Service SID a v1 target was listed in when the job spans several Services
    (None: the job's one Service, which every delete path of the run uses).

    Build one from user input with :meth:`ResourceKind.target` or :meth:`ResourceKind.parse_id`,
    which validate every part, so a target is always safe to put in a URL.
    """

    kind: ResourceKind
    id: str
    parent: str | None = None
    service: str | None = None

    @property
    def key(self) -> str:
        """A stable key, unique across kinds, used for de-duplication and idempotency."""
        return f"{self.kind.code}:{self.id}"


def no_scope(_target: Target, _service: str | None) -> None:
    """For kinds without a per-scope limit (v2 and Memory deletes have none published)."""
    return None
