"""Time bounds in job specs: absolute instants, or durations counted back from the start of a job.

A bound is written either as an ISO-8601 date (``2026-01-31``, midnight UTC), an ISO-8601 datetime
(``2026-01-31T12:00:00Z`` or with an offset; a datetime without an offset is taken as UTC, never as
the host's local time, so a spec means the same on every machine), or as a duration counted back
from now: a positive integer and a unit (``45s``, ``30min``, ``12h``, ``90d``, ``2w``, ``3mo``,
``1y``) or an ISO-8601 duration (``P3M``, ``P1Y2M``, ``PT12H``). Months and years are calendar
ones (``3mo`` before 31 May is 28 February, not 90 days back), counted with dateutil's
``relativedelta``. A bare ``m`` is refused in a bound: in a retention field a person who writes
``3m`` may mean three months as well as three minutes, and guessing wrong deletes 89 days of data.

Durations given on the command line (:func:`duration_seconds`: ``--max-duration``,
``--min-interval``, ``--max-age``) are lengths of time, not dates: there ``m`` is minutes, and
calendar units, which have no fixed length, are refused.

Relative bounds are resolved ONCE, when a job starts (:func:`resolve_times`), and the result is kept
in the checkpoint (:meth:`ResolvedTimes.to_json`), so a resume the next day selects exactly what the
first run selected.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

import isodate
from dateutil.relativedelta import relativedelta
from pydantic import GetCoreSchemaHandler
from pydantic_core import PydanticCustomError, core_schema

from runner.kinds.ids import show_value

__all__ = [
    "Bound",
    "HasBounds",
    "Lookback",
    "ResolvedTimes",
    "duration_seconds",
    "parse_bound",
    "resolve_times",
    "window_is_empty",
]

# `m` is matched so that it can be refused with the fix, `min` before it so that it is not.
_DURATION = re.compile(r"([0-9]+)(s|min|mo|m|h|d|w|y)")
_EXACT_SECONDS = {"s": 1, "min": 60, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_MONTHS = {"mo": 1, "y": 12}
# What a bound accepts, for the messages that refuse one.
BOUND_UNITS = (
    "a whole number and a unit (s, min, h, d, w, mo = calendar months, y = calendar years) "
    "or ISO-8601 (P3M, P1Y2M, PT12H)"
)
# Far enough back for any retention policy, near enough that now minus it never overflows datetime.
_MAX_LOOKBACK_DAYS = 36525  # 100 years of 365.25 days
_DAYS_PER_MONTH = 365.25 / 12
_LOOKS_LIKE_DATE = re.compile(r"[0-9]{4}-")


@dataclass(frozen=True, slots=True)
class Lookback:
    """A duration counted back from now: calendar ``months`` (a year is 12), then an ``exact``
    length of time."""

    months: int = 0
    exact: timedelta = timedelta(0)

    def back_from(self, now: datetime) -> datetime:
        """``now`` minus this duration: the months on the calendar (31 May minus a month is
        30 April), then the exact part."""
        return now - relativedelta(months=self.months) - self.exact

    @property
    def shortest(self) -> timedelta:
        """The least this can reach back, whatever the start (months of 28 days)."""
        return timedelta(days=28 * self.months) + self.exact

    @property
    def longest(self) -> timedelta:
        """The most this can reach back, whatever the start (months of 31 days)."""
        return timedelta(days=31 * self.months) + self.exact


@dataclass(frozen=True, slots=True)
class Bound:
    """A time bound as written in a spec: ``absolute`` (aware, UTC) or ``ago`` (a duration)."""

    text: str
    absolute: datetime | None = None
    ago: Lookback | None = None

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
        return self.ago.back_from(now.astimezone(UTC))

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


def window_is_empty(after: Bound, before: Bound) -> bool:
    """Whether nothing can lie after ``after`` and before ``before``, whatever the start of the
    job (one absolute and one relative bound: only the start can tell, so False)."""
    if after.absolute is not None and before.absolute is not None:
        return after.absolute >= before.absolute
    if after.ago is not None and before.ago is not None:
        # `after: 1mo, before: 30d` is empty only in some months: refused only when it always is.
        return after.ago.longest <= before.ago.shortest
    return False


def _validate_bound(value: object) -> Bound:
    if isinstance(value, Bound):
        return value
    if not isinstance(value, str):
        # YAML numbers land here: `created_before: 90` has no unit.
        shown = show_value(value)
        detail = f"{shown} is not a date or a duration like 90d; a duration is {BOUND_UNITS}"
        raise PydanticCustomError("bulkops", "{detail}", {"detail": detail})
    try:
        return parse_bound(value)
    except ValueError as exc:
        raise PydanticCustomError("bulkops", "{detail}", {"detail": str(exc)}) from None


def parse_bound(text: str) -> Bound:
    """Parse a bound; raises ValueError saying what a bound looks like."""
    stripped = text.strip()
    shown = show_value(text)
    match = _DURATION.fullmatch(stripped)
    if match is not None and match[2] == "m":
        raise ValueError(
            f"{shown} is ambiguous: did you mean {match[1]}mo (months) or {match[1]}min "
            f"(minutes)? A duration is {BOUND_UNITS}"
        )
    if match is not None:
        return Bound(stripped, ago=_checked(shown, _unit_lookback(int(match[1]), match[2])))
    if stripped.startswith("P"):
        return Bound(stripped, ago=_checked(shown, _iso_lookback(shown, stripped)))
    if stripped.startswith("-") and (
        _DURATION.fullmatch(stripped[1:]) or stripped[1:].startswith("P")
    ):
        raise ValueError(
            f"{shown} is not a date or a duration like 90d "
            "(durations count back from now and cannot be negative)"
        )
    try:
        if len(stripped) == 10:
            moment = datetime.combine(date.fromisoformat(stripped), datetime.min.time())
        else:
            moment = datetime.fromisoformat(stripped)
    except ValueError as exc:
        if _LOOKS_LIKE_DATE.match(stripped):
            raise ValueError(f"{shown} is not a valid date: {exc}") from None
        raise ValueError(
            f"{shown} is not a date or a duration like 90d; a duration is {BOUND_UNITS}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return Bound(stripped, absolute=moment.astimezone(UTC))


def _unit_lookback(count: int, unit: str) -> Lookback | None:
    """``count`` of ``unit`` as a Lookback, or None when it reaches back too far to build."""
    if unit in _MONTHS:
        months = count * _MONTHS[unit]
        return Lookback(months=months) if months <= 12 * 100 else None
    seconds = count * _EXACT_SECONDS[unit]
    return (
        Lookback(exact=timedelta(seconds=seconds))
        if seconds // 86400 <= _MAX_LOOKBACK_DAYS
        else None
    )


def _iso_lookback(shown: str, text: str) -> Lookback:
    """An ISO-8601 duration (``P3M``, ``P1Y2M``, ``PT12H``) as a Lookback."""
    try:
        parsed = isodate.parse_duration(text)
    except OverflowError:
        raise ValueError(f"{shown} reaches back more than 100 years") from None
    except (ValueError, ArithmeticError):
        # isodate says which designator it missed; the person needs the accepted forms.
        raise ValueError(
            f"{shown} is not an ISO-8601 duration; a duration is {BOUND_UNITS}"
        ) from None
    if isinstance(parsed, timedelta):
        return Lookback(exact=parsed)
    months = Decimal(parsed.years) * 12 + Decimal(parsed.months)
    if months != months.to_integral_value():
        raise ValueError(
            f"{shown} has a fraction of a month or year, which the calendar cannot count: "
            "give whole months (P2M rather than P1.5M), or days"
        )
    return Lookback(months=int(months), exact=parsed.tdelta)


def _checked(shown: str, lookback: Lookback | None) -> Lookback:
    """``lookback`` if it counts back by a positive amount within 100 years."""
    if lookback is None or (
        lookback.months * _DAYS_PER_MONTH + lookback.exact / timedelta(days=1) > _MAX_LOOKBACK_DAYS
    ):
        raise ValueError(f"{shown} reaches back more than 100 years")
    if lookback.months < 0 or lookback.exact < timedelta(0):
        raise ValueError(
            f"{shown} is not a date or a duration like 90d "
            "(durations count back from now and cannot be negative)"
        )
    if lookback.shortest == timedelta(0):
        raise ValueError(
            f"{shown} is a zero duration: a relative bound counts back from now "
            "and needs at least 1 unit (to select everything, leave the bound out)"
        )
    return lookback


def duration_seconds(text: str) -> float:
    """A length of time given on the command line (``--max-duration 4h``), in seconds; raises
    ValueError naming the accepted units.

    Not a bound: ``m`` is minutes here, as in every scheduler's vocabulary, and months and years
    are refused, since a calendar month is no fixed number of seconds."""
    stripped = text.strip()
    shown = show_value(text)
    match = _DURATION.fullmatch(stripped)
    if match is not None and int(match[1]) == 0:
        raise ValueError(f"{shown} is a zero duration: give at least 1 unit")
    if match is None or match[2] in _MONTHS:
        raise ValueError(
            f"{shown} is not a duration like 45m, 6h or 1d: a whole number and one of "
            "s, m or min (minutes), h, d, w"
            + (" (months and years have no fixed length: give days)" if match else "")
        )
    lookback = _checked(shown, _unit_lookback(int(match[1]), match[2]))
    return lookback.exact.total_seconds()


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
