"""Structured logging: one namespaced event per line, flat key/values, IDs only.

Console output on a terminal, JSON lines otherwise. A last-line-of-defence processor replaces the
value of any field whose name suggests a secret or personal data, so a careless future log call
cannot leak one: bulkops logs IDs, counts and codes, never bodies, authors or identities.

What the command line chose (``--log-format``, ``--log-level``, ``--log-file``) wins over the
config's ``log_format``/``log_level``. With JSON chosen (``--log-format json``, or
``log_format: json``), what a command would print for a person goes out as JSON lines too
(:class:`CommandConsole`), so that nothing but JSON reaches standard output or error.
"""

from __future__ import annotations

import io
import logging
import os
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import orjson
import structlog
from rich.console import Console
from rich.table import Table
from rich.text import Text

from runner.errors import ConfigError, UntrustedFile
from runner.files import open_own

REDACTED_FIELDS = frozenset(
    {
        "body",
        "author",
        "identity",
        "address",
        "attributes",
        "friendly_name",
        "messaging_binding",
        "auth_token",
        "api_secret",
        "password",
        "authorization",
        "token",
        "secret",
    }
)


def redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Blank fields that must never be written, whoever logs them."""
    for key in event:
        if key.lower() in REDACTED_FIELDS:
            event[key] = "[redacted]"
    return event


@dataclass
class _Chosen:
    """What the command line chose, and what logging was last set up with."""

    format: str | None = None
    level: str | None = None
    file: TextIO | None = None  # --log-file, open for appending
    json: bool = False  # JSON was chosen: nothing but JSON goes to stdout and stderr


_chosen = _Chosen()


def choose(fmt: str | None, level: str | None, log_file: Path | None) -> None:
    """The command line's logging options, for the rest of the command (None: not given).

    ``log_file`` is opened for appending (created 0600, never through a link, only this user's
    own regular file); ConfigError (exit 2) names it and the fix if it cannot be."""
    release()
    _chosen.format, _chosen.level = fmt, level
    if log_file is not None:
        try:
            fd = open_own(log_file, os.O_WRONLY | os.O_APPEND, create=True)
        except UntrustedFile as exc:
            raise ConfigError(f"--log-file {log_file}: {exc.reason}; {exc.fix}") from exc
        except OSError as exc:
            raise ConfigError(
                f"--log-file {log_file}: cannot be written ({exc.strerror}); give a writable path"
            ) from exc
        _chosen.file = open(fd, "a", encoding="utf-8", buffering=1)  # noqa: SIM115  # kept open


def release() -> None:
    """Close the log file, and forget the command line's choices (the command has ended)."""
    if _chosen.file is not None:
        _chosen.file.close()
    _chosen.format = _chosen.level = _chosen.file = None
    _chosen.json = False


def json_only() -> bool:
    """Whether the logs are JSON by choice: then nothing but JSON goes to stdout and stderr."""
    return _chosen.json


def configure(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Set up structlog for the CLI: ``fmt`` is auto, console or json (the command line's
    choice, when it made one, wins over these)."""
    fmt = _chosen.format or fmt
    level = _chosen.level or level
    out = stream or _chosen.file or sys.stderr
    _chosen.json = fmt == "json"
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )


class CommandConsole(Console):
    """The console a command speaks to a person through (standard output or error): rich text
    and tables, or — when the logs are JSON by choice — the same content as JSON lines on the
    same stream, shaped like log events at ``level`` (``said``: a line of text; ``table``: its
    title, columns and rows). They are the command's output, not its logs, so ``--log-file``
    does not take them."""

    def __init__(self, *, level: str = "info", **options: Any) -> None:
        super().__init__(**options)
        self._level = level

    def event(self, name: str, *, level: str | None = None, **fields: Any) -> None:
        """One JSON line on this console's stream: ``name`` with ``fields``."""
        line = {**fields, "event": name, "level": level or self._level, "timestamp": _now()}
        self.file.write(orjson.dumps(line).decode() + "\n")
        self.file.flush()

    @property
    def is_terminal(self) -> bool:
        """Not a terminal when the logs are JSON: no live view, no colours, no prompts."""
        return not json_only() and super().is_terminal

    def print(self, *objects: Any, **options: Any) -> None:
        """Print ``objects``, or log them when the logs are JSON."""
        if not json_only():
            super().print(*objects, **options)
            return
        for thing in objects:
            if isinstance(thing, Table):
                self.event("table", **_table(thing))
            else:
                markup = options.get("markup", True) is not False
                self.event("said", text=_plain(thing, markup=markup))


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _plain(thing: object, *, markup: bool) -> str:
    """What a printed object reads as, without markup or styles."""
    if isinstance(thing, str):
        return Text.from_markup(thing).plain if markup else thing
    if isinstance(thing, Text):
        return thing.plain
    buffer = io.StringIO()
    Console(file=buffer, width=200, color_system=None).print(thing)
    return buffer.getvalue().rstrip("\n")


def _table(table: Table) -> dict[str, Any]:
    columns = [_plain(column.header, markup=True) for column in table.columns]
    cells = [[_plain(cell, markup=True) for cell in column.cells] for column in table.columns]
    return {
        "title": None if table.title is None else _plain(table.title, markup=True),
        "columns": columns,
        "rows": [list(row) for row in zip(*cells, strict=True)],
    }


def writes_json() -> bool:
    """Whether log lines are written as JSON (then nothing else may share their terminal)."""
    processors = structlog.get_config()["processors"]
    return bool(processors) and isinstance(processors[-1], structlog.processors.JSONRenderer)


@contextmanager
def written_to(stream: TextIO) -> Iterator[None]:
    """Log lines go to ``stream`` for a while: a live view that holds the terminal prints them
    above itself, where a line written straight to the terminal would be drawn over. Lines
    bound for a ``--log-file`` stay there."""
    if _chosen.file is not None:
        yield
        return
    factory = structlog.get_config()["logger_factory"]
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(stream))
    try:
        yield
    finally:
        structlog.configure(logger_factory=factory)
