"""An internal error: an exception bulkops did not expect, turned into a record of where it was.

Deliberate errors (the tree in :mod:`runner.errors`) are handled where they arise; anything else
reaching the top of a run is a bug of bulkops (or a server answer it failed to classify). Such a
fault stops the run (exit 8, resumable) and is described by *where* it happened — the stage in
words, the exception's type and the innermost bulkops line — never by its message or locals:
an exception's text may quote a response body, an identity or a URL with credentials.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import CodeType, TracebackType

import structlog

from runner.errors import InputError

log = structlog.get_logger("bulkops.internal")

PACKAGE_ROOT = Path(__file__).resolve().parent


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame of a traceback, without its source text or locals."""

    file: str
    line: int
    function: str


@dataclass(frozen=True, slots=True)
class InternalFault:
    """Where an unexpected exception happened: stage, type and place, nothing of its text."""

    stage: str  # in words: "a deletion worker", "the checkpoint writer", …
    error_type: str  # "RuntimeError", or "module.Name" outside builtins
    place: str  # "runner.engine.scheduler:412": the innermost line of bulkops that it went through
    frames: tuple[Frame, ...]
    others: int = 0  # further unexpected exceptions raised with it (a group), not described
    # The text of a deliberate input error raised where nothing expected it (a manifest edited
    # mid-run): bulkops composes those to be shown, from the user's own input.
    detail: str | None = None

    def describe(self) -> str:
        """What failed, in one clause: '<type> in <stage> at <place>'."""
        said = f" ({self.detail})" if self.detail else ""
        return f"{self.error_type} in {self.stage} at {self.place}{said}"

    def log(self) -> None:
        """The ``internal_error`` event: the full traceback as frames (file, line, function)."""
        log.error(
            "internal_error",
            stage=self.stage,
            error_type=self.error_type,
            place=self.place,
            frames=[{"file": f.file, "line": f.line, "function": f.function} for f in self.frames],
            others=self.others,
        )


def leaves(exc: BaseException) -> list[BaseException]:
    """The leaf exceptions of ``exc`` (itself, unless it is a group), in order."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def diagnose(
    exc: BaseException, stages: Mapping[CodeType, str], default: str = "the run"
) -> InternalFault:
    """Describe ``exc`` (or the first leaf of a group): the stage is that of the innermost
    function of ``stages`` the traceback passes through, else ``default``."""
    found = leaves(exc)
    first = found[0]
    # A leaf raised in a task carries only that task's frames; the groups around it carry the
    # frames of the task groups' owners, outermost first.
    chain = _chain(exc)
    frames = [frame for level in chain for frame in _walk(level.__traceback__)]
    stage = default
    for code, _line in frames:
        stage = stages.get(code, stage)
    place = "unknown"
    for code, line in frames:
        module = _module_of(code.co_filename)
        if module is not None:
            place = f"{module}:{line}"
    kind = type(first)
    error_type = kind.__qualname__
    if kind.__module__ != "builtins":
        error_type = f"{kind.__module__}.{error_type}"
    summary = [entry for level in chain for entry in traceback.extract_tb(level.__traceback__)]
    return InternalFault(
        stage=stage,
        error_type=error_type,
        place=place,
        frames=tuple(Frame(_shown(s.filename), s.lineno or 0, s.name) for s in summary),
        others=len(found) - 1,
        detail="; ".join(first.problems) if isinstance(first, InputError) else None,
    )


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the groups inside it down to its first leaf, outermost first."""
    chain = [exc]
    while isinstance(chain[-1], BaseExceptionGroup):
        chain.append(chain[-1].exceptions[0])
    return chain


def _walk(tb: TracebackType | None) -> Iterable[tuple[CodeType, int]]:
    while tb is not None:
        yield tb.tb_frame.f_code, tb.tb_lineno
        tb = tb.tb_next


def _module_of(filename: str) -> str | None:
    """``runner.x.y`` for a file of this package, else None."""
    try:
        relative = Path(filename).resolve().relative_to(PACKAGE_ROOT)
    except ValueError:
        return None
    parts = [PACKAGE_ROOT.name, *relative.with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _shown(filename: str) -> str:
    """A frame's file as a module path inside bulkops, else its base name: a log shipped off
    the machine need not carry the installation's directory layout."""
    module = _module_of(filename)
    return f"{module.replace('.', '/')}.py" if module is not None else Path(filename).name
