"""Response helpers shared by the handlers."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web


def base_url(request: web.Request) -> str:
    """The emulator's own base, as the client reached it (next-page URLs are absolute on it)."""
    return f"{request.scheme}://{request.host}"


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> web.Response:
    """Compact JSON bytes with Twilio's content type (UTF-8, as Twilio's own: orjson, which
    renders a page of a listing about ten times faster than the json module)."""
    return web.Response(status=status, body=orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS),
                        content_type="application/json", headers=headers)
