"""Which event loop a command runs on, and running it there: the one place that calls
``anyio.run`` for the commands that drive the engine (``run``, ``resume``, ``apply``, ``plan``,
``verify``, ``demo``, and the check of a log against its spec).

``--loop auto`` (the default) takes uvloop when it can be imported on this platform (it is a
dependency of bulkops everywhere but Windows, which uvloop does not support) and asyncio's own
loop otherwise; ``--loop asyncio`` or ``--loop uvloop`` says which. uvloop asked for but not
importable is bad input (exit 2, before any request). anyio stays on its asyncio backend either
way (aiolimiter is asyncio-only): uvloop is an asyncio event loop, which anyio starts through
``backend_options={"use_uvloop": True}``.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio

from runner.errors import ConfigError

__all__ = ["ASYNCIO", "LOOPS", "UVLOOP", "choose", "chosen", "run", "running", "uvloop_usable"]

ASYNCIO = "asyncio"
UVLOOP = "uvloop"
LOOPS = ("auto", ASYNCIO, UVLOOP)  # what --loop accepts
# What a person without uvloop is told to do (uvloop has no Windows build).
INSTALL_UVLOOP = "pip install uvloop (Linux and macOS)"

T = TypeVar("T")


def uvloop_usable() -> bool:
    """Whether uvloop can run here: not Windows, and importable (a broken build, or a module
    blocked out, counts as missing)."""
    if sys.platform == "win32":
        return False
    try:
        import uvloop  # noqa: F401  (imported to see that it can be)
    except ImportError:
        return False
    return True


@dataclass
class _Choice:
    name: str | None = None  # asyncio or uvloop once chosen; None: `auto` on first use


_choice = _Choice()


def choose(asked: str = "auto") -> str:
    """Resolve ``--loop`` (``auto``, ``asyncio`` or ``uvloop``) for the rest of the command and
    return the loop it names; ConfigError (exit 2, nothing sent) for an unknown name or for
    uvloop when it cannot be imported, naming the fix."""
    if asked not in LOOPS:
        raise ConfigError(f"--loop {asked!r}: choose one of {', '.join(LOOPS)}")
    if asked == UVLOOP and not uvloop_usable():
        raise ConfigError(
            "--loop uvloop: uvloop is not installed (or cannot be imported) in this Python; "
            f"{INSTALL_UVLOOP}, or run with --loop asyncio (or --loop auto)"
        )
    if asked == "auto":
        asked = UVLOOP if uvloop_usable() else ASYNCIO
    _choice.name = asked
    return asked


def chosen() -> str:
    """The loop the command runs on (``auto``'s when nothing was chosen)."""
    return _choice.name or choose()


def run(function: Callable[..., Awaitable[T]], *args: object) -> T:
    """``function(*args)`` to its end on the chosen loop, under anyio's asyncio backend."""
    return anyio.run(
        function, *args, backend="asyncio", backend_options={"use_uvloop": chosen() == UVLOOP}
    )


def running() -> str:
    """The loop this code runs on now: ``uvloop`` or ``asyncio`` (what the run_finished line,
    the log's footer and the report say)."""
    module = type(asyncio.get_running_loop()).__module__
    return UVLOOP if module.partition(".")[0] == UVLOOP else ASYNCIO
