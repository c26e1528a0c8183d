"""Response helpers shared by the handlers."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


def base_url(request: web.Request) -> str:
    """The emulator's own base, as the client reached it (next-page URLs are absolute on it)."""
    return f"{request.scheme}://{request.host}"


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> web.Response:
    """Compact JSON bytes with Twilio's content type."""
    return web.Response(status=status, body=json.dumps(data, separators=(",", ":")).encode(),
                        content_type="application/json", headers=headers)
