"""Legal holds: the ``exclude:`` of a job spec (and of the config), and the hold-file format.

A hold names what is never touched: a v1 conversation (never deleted, nor its messages and
participants) or a v2 conversation (never deleted). A hold file is a list legal maintains, one ID a
line (a CSV whose first column is the ID; ``#`` comments, blank lines and an ``id`` header are
skipped). It is untrusted input: its size is bounded and every ID is checked against the kinds'
patterns, and an error names the file, the line and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, PrivateAttr

from runner.errors import SpecError, UntrustedFile
from runner.files import read_regular_bounded
from runner.kinds.ids import ID_PATTERNS, show_value
from runner.kinds.spec_model import SpecModel, custom_error

__all__ = [
    "HOLD_FILE_MAX_BYTES",
    "HOLD_KINDS",
    "AttributeHold",
    "ExcludeSpec",
    "HoldSpec",
    "check_hold_files",
    "merge_holds",
    "parse_hold_file",
    "read_hold_file",
]

# The ID kinds a hold can name: a conversation, v1 or v2.
HOLD_KINDS = ("conversation_v1", "conversation_v2")

# A hold list is thousands of IDs at most; a larger file is not one (and must not fill memory).
HOLD_FILE_MAX_BYTES = 8 * 1024 * 1024


def hold_id(value: str) -> str:
    """``value`` when it is the ID of a conversation a hold can name; ValueError otherwise."""
    if isinstance(value, str) and any(ID_PATTERNS[k].matches(value) for k in HOLD_KINDS):
        return value
    raise ValueError(
        f"{show_value(value)} is not a conversation ID a hold can name"
        " (CH + 32 hex digits, or conv_conversation_...)"
    )


def _checked_hold_id(value: str) -> str:
    try:
        return hold_id(value)
    except ValueError as exc:
        raise custom_error(str(exc)) from None


def _checked_attributes(value: object) -> object:
    """A mapping of attribute names to JSON scalars, with at least one: an empty match would
    hold every v1 conversation (the job would delete none of them)."""
    if isinstance(value, Mapping):
        if not value:
            raise custom_error(
                "is empty: name at least one attribute and its value, e.g. {legal_hold: true}"
            )
        for key, one in value.items():
            if isinstance(one, Mapping | list | tuple):
                raise custom_error(
                    f"{show_value(key)}: {show_value(one)} is not a single value; an attribute"
                    " hold matches text, a number, true/false or null"
                )
    return value


class AttributeHold(SpecModel):
    """``where:``: v1 conversations whose attributes (a JSON object) hold every key: value."""

    attributes: Annotated[
        dict[str, str | int | float | bool | None], BeforeValidator(_checked_attributes)
    ]


class ExcludeSpec(SpecModel):
    """``exclude:`` — what a job never touches (see the module docstring)."""

    conversations: tuple[
        Annotated[str, Field(min_length=1), AfterValidator(_checked_hold_id)], ...
    ] = ()
    from_file: str | None = None
    where: AttributeHold | None = None

    _base: Path | None = PrivateAttr(default=None)

    def listed(self) -> frozenset[str]:
        """The conversations listed inline (checked when the spec was parsed)."""
        return frozenset(self.conversations)

    def attach_base(self, base: Path) -> None:
        """Record the directory ``from_file`` is relative to (the spec's, or the config's)."""
        # A private attribute: where the file was found belongs to the parsed spec, not its YAML.
        self._base = base

    def resolved(self) -> HoldSpec:
        """What this exclude holds, with its hold file's path made absolute."""
        files: tuple[Path, ...] = ()
        if self.from_file is not None:
            path = Path(self.from_file)
            if not path.is_absolute():
                path = (self._base or Path.cwd()) / path
            files = (path,)
        wheres = () if self.where is None else (tuple(sorted(self.where.attributes.items())),)
        return HoldSpec(self.listed(), files, wheres)


AttributeMatch = tuple[tuple[str, str | int | float | bool | None], ...]


@dataclass(frozen=True, slots=True)
class HoldSpec:
    """Every hold of a job, resolved: listed conversations, hold files (absolute paths, read by
    the run), and ``where.attributes`` matches (a v1 conversation whose attributes hold every
    key: value of any one of them is held)."""

    listed: frozenset[str] = frozenset()
    files: tuple[Path, ...] = ()
    wheres: tuple[AttributeMatch, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.listed or self.files or self.wheres)


def merge_holds(*holds: HoldSpec | None) -> HoldSpec | None:
    """The holds of a spec and of the config together (a hold in either holds); None if none."""
    present = [h for h in holds if h]
    if not present:
        return None
    return HoldSpec(
        frozenset().union(*(h.listed for h in present)),
        tuple(dict.fromkeys(p for h in present for p in h.files)),
        tuple(dict.fromkeys(w for h in present for w in h.wheres)),
    )


def parse_hold_file(name: str, data: bytes) -> frozenset[str]:
    """The IDs a hold file lists; SpecError naming ``name``, the line and the fix otherwise."""
    if len(data) > HOLD_FILE_MAX_BYTES:
        raise SpecError(
            f"{name}: the hold file is larger than {HOLD_FILE_MAX_BYTES} bytes;"
            " a hold list is one conversation ID a line: split or trim it"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SpecError(
            f"{name}: the hold file is not UTF-8 text (byte {e.start}); save it as UTF-8"
        ) from None
    held: set[str] = set()
    first = True  # the first line that is not a comment or blank may be a header (id, sid)
    for number, line in enumerate(text.splitlines(), start=1):
        value = line.split(",", 1)[0].strip().strip('"')
        if not value or value.startswith("#"):
            continue
        header, first = first and value.lower() in {"id", "sid"}, False
        if header:
            continue
        try:
            held.add(hold_id(value))
        except ValueError as e:
            raise SpecError(f"{name}, line {number}: {e}; fix the ID or remove the line") from None
    return frozenset(held)


def read_hold_file(path: Path, display: str | None = None) -> frozenset[str]:
    """Read and parse the hold file at ``path`` (at most :data:`HOLD_FILE_MAX_BYTES`); SpecError
    naming it (as ``display``, the path the spec wrote) on any problem."""
    name = display or str(path)
    try:
        data = read_regular_bounded(path, HOLD_FILE_MAX_BYTES)
    except UntrustedFile as e:
        raise SpecError(f"{name}: {e.reason}: a hold file is one conversation ID a line") from None
    except FileNotFoundError:
        raise SpecError(f"{name}: no such hold file; fix the path in from_file") from None
    except OSError as e:
        raise SpecError(f"{name}: the hold file cannot be read ({e.strerror})") from None
    return parse_hold_file(name, data)


def check_hold_files(data: Mapping[Any, Any], base_dir: Path, where: str = "exclude") -> list[str]:
    """Problems with the hold file the raw spec (or config) data names under ``where``, read
    relative to ``base_dir``; checked even when other parts are invalid, like manifests."""
    exclude = data.get(where)
    written = exclude.get("from_file") if isinstance(exclude, Mapping) else None
    if not isinstance(written, str) or not written.strip():
        return []
    path = Path(written) if Path(written).is_absolute() else base_dir / written
    try:
        read_hold_file(path, written)
    except SpecError as e:
        return [f"{where}.from_file: {p}" for p in e.problems]
    return []
