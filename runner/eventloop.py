"""Which event loop a run uses: uvloop when it is installed (the ``fast`` extra), else asyncio's.

uvloop runs the same program with about a third less CPU per request (the ``overhead``
benchmark), so it is taken whenever present. ``BULKOPS_EVENT_LOOP=asyncio`` forces the standard
loop, to rule the loop out when chasing a problem.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

T = TypeVar("T")


def uvloop_in_use() -> bool:
    """Whether :func:`run` runs on uvloop."""
    if os.environ.get("BULKOPS_EVENT_LOOP", "").lower() == "asyncio":
        return False
    return importlib.util.find_spec("uvloop") is not None


def run(func: Callable[[], Awaitable[T]]) -> T:
    """``anyio.run(func)`` on asyncio, with uvloop when it is in use."""
    return anyio.run(func, backend="asyncio", backend_options={"use_uvloop": uvloop_in_use()})
