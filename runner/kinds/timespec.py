"""Time bounds in job specs: absolute instants, or durations counted back from the start of a job.

A bound is written either as an ISO-8601 date (``2026-01-31``, midnight UTC), an ISO-8601 datetime
(``2026-01-31T12:00:00Z`` or with an offset; a datetime without an offset is taken as UTC, never as
the host's local time, so a spec means the same on every machine), or as a duration counted back
from now: a positive integer and a unit, ``45s``, ``30m``, ``12h``, ``90d`` or ``2w``.

Relative bounds are resolved ONCE, when a job starts (:func:`resolve_times`), and the result is kept
in the checkpoint (:meth:`ResolvedTimes.to_json`), so a resume the next day selects exactly what the
first run selected.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from pydantic import GetCoreSchemaHandler
from pydantic_core import PydanticCustomError, core_schema

from runner.kinds.ids import show_value

__all__ = ["Bound", "HasBounds", "ResolvedTimes", "parse_bound", "resolve_times"]

_DURATION = re.compile(r"([0-9]+)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# Far enough back for any retention policy, near enough that now minus it never overflows datetime.
_MAX_LOOKBACK = timedelta(days=365 * 100)
_LOOKS_LIKE_DATE = re.compile(r"[0-9]{4}-")


@dataclass(frozen=True, slots=True)
class Bound:
    """A time bound as written in a spec: ``absolute`` (aware, UTC) or ``ago`` (a duration)."""

    text: str
    absolute: datetime | None = None
    ago: timedelta | None = None

    @property
    def is_relative(self) -> bool:
        """Whether the bound depends on when the job starts."""
        return self.ago is not None

    def resolve(self, now: datetime) -> datetime:
        """The instant this bound means for a job started at ``now`` (aware), in UTC."""
        if self.absolute is not None:
            return self.absolute
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        assert self.ago is not None  # the constructor paths set exactly one of the two
        return now.astimezone(UTC) - self.ago

    def canonical(self) -> str:
        """A stable text form: the UTC instant for absolute bounds, the duration as written else."""
        if self.absolute is not None:
            return self.absolute.isoformat().replace("+00:00", "Z")
        return self.text

    def __str__(self) -> str:
        return self.text

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        # Parse with our own messages; pydantic's datetime errors would not mention durations.
        return core_schema.no_info_plain_validator_function(
            _validate_bound,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda b: b.canonical(), when_used="always"
            ),
        )


def _validate_bound(value: object) -> Bound:
    if isinstance(value, Bound):
        return value
    if not isinstance(value, str):
        # YAML numbers land here: `created_before: 90` has no unit.
        raise PydanticCustomError(
            "bulkops",
            "{detail}",
            {"detail": f"{show_value(value)} is not a date or a duration like 90d"},
        )
    try:
        return parse_bound(value)
    except ValueError as exc:
        raise PydanticCustomError("bulkops", "{detail}", {"detail": str(exc)}) from None


def parse_bound(text: str) -> Bound:
    """Parse a bound; raises ValueError saying what a bound looks like."""
    stripped = text.strip()
    match = _DURATION.fullmatch(stripped)
    if match is not None:
        count, unit = int(match[1]), match[2]
        if count == 0:
            raise ValueError(
                f"{show_value(text)} is a zero duration: a relative bound counts back from now "
                "and needs at least 1 unit (to select everything, leave the bound out)"
            )
        seconds = count * _UNIT_SECONDS[unit]
        if seconds > _MAX_LOOKBACK.total_seconds():
            raise ValueError(f"{show_value(text)} reaches back more than 100 years")
        return Bound(stripped, ago=timedelta(seconds=seconds))
    if stripped.startswith("-") and _DURATION.fullmatch(stripped[1:]):
        raise ValueError(
            f"{show_value(text)} is not a date or a duration like 90d "
            "(durations count back from now and cannot be negative)"
        )
    try:
        if len(stripped) == 10:
            moment = datetime.combine(date.fromisoformat(stripped), datetime.min.time())
        else:
            moment = datetime.fromisoformat(stripped)
    except ValueError as exc:
        if _LOOKS_LIKE_DATE.match(stripped):
            raise ValueError(f"{show_value(text)} is not a valid date: {exc}") from None
        raise ValueError(f"{show_value(text)} is not a date or a duration like 90d") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return Bound(stripped, absolute=moment.astimezone(UTC))


class HasBounds(Protocol):
    """Anything that can list its time bounds by YAML path (a parsed job spec)."""

    def bounds(self) -> Iterable[tuple[str, Bound]]:
        """Every bound with its YAML path, e.g. ``targets[0].where.created_before``."""
        ...


@dataclass(frozen=True)
class ResolvedTimes:
    """The bounds of a job resolved at its start, keyed by YAML path; frozen in the checkpoint."""

    times: Mapping[str, datetime]

    @classmethod
    def at(cls, spec: HasBounds, now: datetime) -> ResolvedTimes:
        """Resolve every bound of ``spec`` against ``now`` (see :func:`resolve_times`)."""
        return cls(resolve_times(spec, now))

    def get(self, target_index: int, field: str) -> datetime | None:
        """The resolved bound of target ``target_index`` at ``field``, or None if it has none.

        ``field`` is the path inside the target: ``where.created_before``,
        ``where.conversations.updated_after``; a bare ``created_before`` means
        ``where.created_before``.
        """
        if not field.startswith("where."):
            field = "where." + field
        return self.times.get(f"targets[{target_index}].{field}")

    def to_json(self) -> dict[str, str]:
        """A JSON-ready dict of ISO-8601 UTC strings."""
        return {path: moment.isoformat() for path, moment in self.times.items()}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> ResolvedTimes:
        """Rebuild from :meth:`to_json` output; raises ValueError on anything else."""
        times: dict[str, datetime] = {}
        for path, text in data.items():
            if not isinstance(text, str):
                raise ValueError(f"resolved time {path!r} is not text")
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is None:
                raise ValueError(f"resolved time {path!r} has no time zone")
            times[path] = moment.astimezone(UTC)
        return cls(times)


def resolve_times(spec: HasBounds, now: datetime) -> dict[str, datetime]:
    """Resolve every bound of ``spec`` (absolute ones too) against ``now``, an aware datetime.

    Keys are YAML paths such as ``targets[0].where.created_before``; values are aware UTC.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return {path: bound.resolve(now) for path, bound in spec.bounds()}
