"""Structured logging: one namespaced event per line, flat key/values, IDs only.

Console output on a terminal, JSON lines otherwise. A last-line-of-defence processor replaces the
value of any field whose name suggests a secret or personal data, so a careless future log call
cannot leak one: bulkops logs IDs, counts and codes, never bodies, authors or identities.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any, TextIO

import structlog

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


def configure(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Set up structlog for the CLI: ``fmt`` is auto, console or json."""
    out = stream or sys.stderr
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


def writes_json() -> bool:
    """Whether log lines are written as JSON (then nothing else may share their terminal)."""
    processors = structlog.get_config()["processors"]
    return bool(processors) and isinstance(processors[-1], structlog.processors.JSONRenderer)


@contextmanager
def written_to(stream: TextIO) -> Iterator[None]:
    """Log lines go to ``stream`` for a while: a live view that holds the terminal prints them
    above itself, where a line written straight to the terminal would be drawn over."""
    factory = structlog.get_config()["logger_factory"]
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(stream))
    try:
        yield
    finally:
        structlog.configure(logger_factory=factory)
