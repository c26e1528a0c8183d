"""What every kind's part of the job spec is made of: the target base, its filters, its errors.

Each kind module defines its spec target (a :class:`SpecTarget` whose ``kind`` is the kind's word)
and its ``where`` filter (a :class:`Where`) from these; :mod:`runner.spec.jobspec` makes the
union of targets from the registry and translates pydantic's errors into YAML paths. A validator
that finds problems raises :func:`custom_error` (one message) or :func:`problems_error` (several,
each at a sub-path), and the message reaches the user exactly as written here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    PrivateAttr,
    Strict,
    model_validator,
)
from pydantic_core import PydanticCustomError

from runner.kinds.base import Target
from runner.kinds.ids import Api, validate_id
from runner.kinds.timespec import Bound, window_is_empty

if TYPE_CHECKING:
    from runner.kinds.base import ResourceKind

__all__ = [
    "ConversationSid",
    "Flag",
    "Float",
    "Int",
    "ManifestInfo",
    "ServiceSid",
    "SpecModel",
    "SpecTarget",
    "Text",
    "Where",
    "bound_order",
    "checked_id",
    "custom_error",
    "filters_with_all",
    "join_path",
    "one_or_many",
    "problems_error",
]

Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Flag = Annotated[bool, Strict()]
Text = Annotated[str, Strict()]


def join_path(path: str, sub: str) -> str:
    """``path`` and ``sub`` as one YAML path (``targets[0]`` + ``where`` = ``targets[0].where``)."""
    if not path:
        return sub
    if not sub:
        return path
    return path + sub if sub.startswith("[") else f"{path}.{sub}"


def custom_error(detail: str) -> PydanticCustomError:
    """A validation error whose message is ``detail`` exactly."""
    return PydanticCustomError("bulkops", "{detail}", {"detail": detail})


def problems_error(problems: list[tuple[str, str]]) -> PydanticCustomError:
    """Several problems found by one validator, each at a sub-path of the value validated."""
    summary = "; ".join(f"{sub}: {message}" if sub else message for sub, message in problems)
    return PydanticCustomError(
        "bulkops", "{detail}", {"detail": summary, "problems": tuple(problems)}
    )


class SpecModel(BaseModel):
    """Base of every spec model: frozen, and an unknown key is an error."""

    # Frozen: a parsed spec is a value, shared by the planner and workers without copies.
    model_config = ConfigDict(frozen=True, extra="forbid")


def checked_id(kind_key: str) -> AfterValidator:
    """A validator that accepts only IDs of ``kind_key`` (a key of ``ID_PATTERNS``)."""

    def check(value: str) -> str:
        try:
            return validate_id(kind_key, value)
        except ValueError as exc:
            raise custom_error(str(exc)) from None

    return AfterValidator(check)


def one_or_many(value: object) -> object:
    """A single value as a list of one (a ``BeforeValidator``)."""
    # `state: closed` and `state: [closed, inactive]` both mean a set of states.
    return [value] if isinstance(value, str) else value


ConversationSid = Annotated[Text, checked_id("conversation_v1")]
ServiceSid = Annotated[Text, checked_id("service")]


def bound_order(where: BaseModel, prefix: str = "") -> list[tuple[str, str]]:
    """Problems where an ``_after`` bound is not before its ``_before`` bound (nothing matches)."""
    problems: list[tuple[str, str]] = []
    for stem in ("created", "updated"):
        after: Bound | None = getattr(where, f"{stem}_after", None)
        before: Bound | None = getattr(where, f"{stem}_before", None)
        if after is None or before is None:
            continue
        if window_is_empty(after, before):
            problems.append(
                (
                    join_path(prefix, f"{stem}_after"),
                    f"{after.text!r} is not earlier than {stem}_before {before.text!r}: "
                    "nothing can match",
                )
            )
    return problems


def filters_with_all(where: BaseModel, kind_words: str) -> list[tuple[str, str]]:
    """The shared rule: a where either names its filters or says `all: true`, not both, not none."""
    filters = [n for n in type(where).model_fields if n != "all" and getattr(where, n) is not None]
    flag: bool | None = getattr(where, "all", None)
    if flag and filters:
        return [
            (
                "where.all",
                f"`all: true` selects every {kind_words}; remove it, "
                f"or remove the filters ({', '.join(filters)})",
            )
        ]
    if not flag and not filters:
        valid = [n for n in type(where).model_fields if n != "all"]
        also = f"; otherwise filter by {', '.join(valid)}" if valid else ""
        return [
            (
                "where",
                f"selects nothing in particular: to delete every {kind_words} write `all: true`"
                + also,
            )
        ]
    return []


class Where(SpecModel):
    """Base of the per-kind discovery filters (``where``)."""

    def bounds(self, prefix: str) -> Iterator[tuple[str, Bound]]:
        """Every time bound in this filter, by YAML path under ``prefix``."""
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, Bound):
                yield f"{prefix}.{name}", value
            elif isinstance(value, BaseModel):  # a nested filter (where.conversations)
                for sub in type(value).model_fields:
                    bound = getattr(value, sub)
                    if isinstance(bound, Bound):
                        yield f"{prefix}.{name}.{sub}", bound


@dataclass(frozen=True, slots=True)
class ManifestInfo:
    """What validation learnt about a manifest: its row count and the SHA-256 of its bytes."""

    count: int
    sha256: str


class SpecTarget(SpecModel):
    """One thing a job deletes: a kind, and exactly one selector (ids, from_file or where).

    Each kind module subclasses it (``MessagesTarget`` …), narrowing ``kind`` to its word and
    ``where`` to its filter; the registry makes the spec's union of targets from those.
    """

    misplaced: ClassVar[Mapping[str, str]] = {
        "id": "write ids: [...] (a list)",
        "file": "write from_file: <path>",
        "filter": "write where: {...}",
    }

    kind: Text
    api: Api | None = None
    ids: tuple[Text, ...] | None = None
    from_file: Text | None = None
    where: Where | None = None

    # Set by parse_spec once the manifest has been read; not part of the YAML.
    _manifest: ManifestInfo | None = PrivateAttr(default=None)
    _manifest_path: Path | None = PrivateAttr(default=None)
    _rows: Callable[[], Iterator[Target]] | None = PrivateAttr(default=None)

    @property
    def manifest(self) -> ManifestInfo | None:
        """Row count and SHA-256 of the ``from_file`` manifest, once validated by parse_spec."""
        return self._manifest

    @property
    def manifest_path(self) -> Path | None:
        """The ``from_file`` path resolved against the spec's directory (None before parsing)."""
        return self._manifest_path

    @property
    def resource_kind(self) -> ResourceKind:
        """The kind of resource this target deletes (for conversations, the one of its api)."""
        # Imported here: the registry imports the kind modules, which import this module.
        from runner.kinds.registry import by_spec

        return by_spec(self.kind, self.api)

    def attach_manifest(
        self, info: ManifestInfo, path: Path, rows: Callable[[], Iterator[Target]]
    ) -> None:
        """Record the validated ``from_file`` manifest and how to stream its rows again."""
        # Private attributes: the manifest's facts belong to the parsed target, not to its YAML.
        self._manifest = info
        self._manifest_path = path
        self._rows = rows

    def explicit_ids(self) -> list[Target]:
        """The ``ids`` list parsed into targets (empty for other selectors)."""
        return [self.resource_kind.parse_id(text) for text in self.ids or ()]

    def iter_manifest(self) -> Iterator[Target]:
        """Stream the ``from_file`` rows, re-checked, failing if the file changed since parsing."""
        if self._rows is None:
            raise ValueError("this target has no validated manifest")
        return self._rows()

    def _where_problems(self) -> list[tuple[str, str]]:
        return []

    @model_validator(mode="after")
    def _check(self) -> SpecTarget:
        problems: list[tuple[str, str]] = []
        given = [n for n in ("ids", "from_file", "where") if getattr(self, n) is not None]
        if not given:
            problems.append(
                ("", "says nothing to delete: give exactly one of ids, from_file, where")
            )
        elif len(given) > 1:
            problems.append(
                ("", f"gives {' and '.join(given)}: give exactly one of ids, from_file, where")
            )
        if self.kind != "conversations" and self.api is not None:
            problems.append(
                (
                    "api",
                    f"applies only to kind conversations: remove it "
                    f"({self.kind} have a single API)",
                )
            )
        if self.ids is not None and not self.ids:
            problems.append(("ids", "is empty: list at least one ID, or use from_file or where"))
        for index, text in enumerate(self.ids or ()):
            try:
                self.resource_kind.parse_id(text)
            except ValueError as exc:
                problems.append((f"ids[{index}]", str(exc)))
        if self.from_file is not None and not self.from_file.strip():
            problems.append(("from_file", "is empty: give the path of a .csv or .jsonl manifest"))
        if self.where is not None:
            problems.extend(self._where_problems())
        if problems:
            raise problems_error(problems)
        return self
