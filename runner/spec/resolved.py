"""What a job resolves to, said before and after it acts: each cutoff as written and as the
absolute UTC instant it was frozen to, the Service its v1 kinds are listed in, the account and
the hosts.

Built from the plain data a plan and a checkpoint header both carry (the canonical spec, the
frozen times, the hosts, the account), so ``plan``, the start of ``run``, ``apply``'s question
and the completion report say the same thing, and the JSON outputs carry it as data.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from runner.kinds.base import ResourceKind
from runner.kinds.registry import by_spec

__all__ = ["Cutoff", "Resolution", "resolution", "utc_text"]

_STEP = re.compile(r"([A-Za-z_]+)(?:\[([0-9]+)\])?")
_TARGET = re.compile(r"targets\[([0-9]+)\]")


def utc_text(moment: datetime) -> str:
    """``moment`` as ISO-8601 UTC with ``Z``: 2026-09-05T14:30:00Z (a run starts on a whole
    second, so its cutoffs show no fraction, and the instant shown is the one applied)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Cutoff:
    """One time bound of the job: where it is, what was written, the instant it was frozen to."""

    field: str  # its YAML path: targets[0].where.created_before
    kind: str  # the target's kind, as the spec says it: messages, conversations …
    written: str  # as the spec gave it (a relative one as written; an absolute one in UTC)
    at: datetime  # aware, UTC

    @property
    def side(self) -> str:
        """``before`` or ``after``: which side of the instant the bound keeps."""
        return "after" if self.field.endswith("_after") else "before"

    def describe(self) -> str:
        """``targets[0] messages: created_before 90d → before 2026-09-05T14:30:00Z``."""
        instant = utc_text(self.at)
        written = "" if self.written in ("", instant) else f"{self.written} → "
        target, _, name = self.field.partition(".")
        name = name.removeprefix("where.")
        return f"{target} {self.kind}: {name} {written}{self.side} {instant}"

    def to_json(self) -> dict[str, str]:
        """A JSON-ready form."""
        return {
            "field": self.field,
            "kind": self.kind,
            "written": self.written,
            "side": self.side,
            "resolved": utc_text(self.at),
        }


@dataclass(frozen=True, slots=True)
class Resolution:
    """What a job resolves to: its frozen cutoffs, the Service, the account and the hosts."""

    job: str
    frozen_at: datetime | None  # the instant relative bounds were counted back from
    cutoffs: tuple[Cutoff, ...]
    service: str | None  # the spec's `service:`; None: the account's default Service
    in_service: bool  # whether a target of the job is listed in a Conversations Service (v1)
    account_sid: str | None  # None when not known (a log from before it was recorded)
    hosts: Mapping[str, str]  # product → API origin, for the products the job uses
    # With no `service:`, the default Service's SID when it was asked for (`plan` asks).
    default_service: str | None = None

    def service_line(self) -> str | None:
        """Which Service the job's v1 kinds are listed in, and how to choose another; None when
        the job has none of them."""
        if not self.in_service:
            return None
        if self.service == "all":
            return "Services: every Service of the account (the spec's `service: all`)"
        if self.service is not None:
            plural = "s" if "," in self.service else ""
            return f"Service{plural}: {self.service} (the spec's `service:`)"
        if self.default_service is not None:
            which = f"{self.default_service} (the account's default)"
        else:
            which = "the account's default Conversations Service (/v1/Conversations)"
        return (
            f"Service: {which};\n"
            "  other Services are not listed: to purge one, set `service: IS…`"
            " (or `all`) in the spec"
        )

    def lines(self) -> list[str]:
        """The resolution as lines of plain text, for the terminal."""
        hosts = ", ".join(f"{url} ({product})" for product, url in self.hosts.items())
        out = [
            f"account: {self.account_sid or '(not recorded)'}",
            f"host: {hosts or '(not recorded)'}",
        ]
        service = self.service_line()
        if service is not None:
            out.extend(service.splitlines())
        if self.cutoffs:
            frozen = "" if self.frozen_at is None else f" at {utc_text(self.frozen_at)}"
            out.append(f"cutoffs (frozen{frozen}):")
            out.extend(f"  {cutoff.describe()}" for cutoff in self.cutoffs)
        return out

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form (the report's ``resolved``; ``-o json`` outputs carry it too)."""
        return {
            "job": self.job,
            "account_sid": self.account_sid,
            "service": None if not self.in_service else self.service or "default",
            "default_service": self.default_service,
            "hosts": dict(self.hosts),
            "frozen_at": None if self.frozen_at is None else utc_text(self.frozen_at),
            "cutoffs": [cutoff.to_json() for cutoff in self.cutoffs],
        }


def resolution(
    job: str,
    canonical: Mapping[str, Any],
    times: Mapping[str, str],
    *,
    frozen_at: str | None,
    hosts: Mapping[str, str] | None,
    account_sid: str | None,
) -> Resolution:
    """The resolution of a job from its canonical spec, its frozen ``times`` (YAML path → ISO
    text, as a plan or a checkpoint header keeps them), the ``frozen_at`` instant (ISO), the
    ``hosts`` it sends to and its account."""
    targets = canonical.get("targets")
    targets = targets if isinstance(targets, list) else []
    kinds = [_kind(t) for t in targets]
    cutoffs = []
    for path, text in sorted(times.items(), key=lambda item: _order(item[0])):
        at = _instant(text)
        if at is None:
            continue  # a header is read without trusting it: an unreadable time is left out
        index = _target_index(path)
        target = targets[index] if index is not None and index < len(targets) else None
        kind = str(target.get("kind", "")) if isinstance(target, dict) else ""
        cutoffs.append(Cutoff(path, kind, _written(canonical, path), at))
    used = {kind.product.value for kind in kinds if kind is not None}
    service = canonical.get("service")
    if isinstance(service, list):
        service = ", ".join(str(sid) for sid in service)  # several Services, as written
    return Resolution(
        job=job,
        frozen_at=_instant(frozen_at),
        cutoffs=tuple(cutoffs),
        service=service if isinstance(service, str) else None,
        in_service=any(kind is not None and kind.per_service for kind in kinds),
        account_sid=account_sid,
        hosts={p: url for p, url in (hosts or {}).items() if not kinds or p in used},
    )


def _kind(target: object) -> ResourceKind | None:
    if not isinstance(target, dict):
        return None
    try:
        return by_spec(str(target.get("kind")), target.get("api"))
    except KeyError:
        return None


def _target_index(path: str) -> int | None:
    match = _TARGET.match(path)
    return None if match is None else int(match[1])


def _order(path: str) -> tuple[int, str]:
    index = _target_index(path)
    return (-1 if index is None else index, path)


def _written(canonical: Mapping[str, Any], path: str) -> str:
    """The value at YAML ``path`` of the canonical spec, as text ('' when not there)."""
    node: Any = canonical
    for step in path.split("."):
        match = _STEP.fullmatch(step)
        if match is None or not isinstance(node, Mapping):
            return ""
        node = node.get(match[1])
        if match[2] is not None:
            if not isinstance(node, list) or int(match[2]) >= len(node):
                return ""
            node = node[int(match[2])]
    return node if isinstance(node, str) else ""


def _instant(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return moment.astimezone(UTC) if moment.tzinfo is not None else None
