"""Twilio's classic error body and the exception handlers raise to produce it.

Every error the emulator answers on a Twilio path is ``{code, message, more_info, status}``
([V2] components.responses, [M1] TwilioError), whatever the product.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from aiohttp import web


class TwilioError(Exception):
    """An error response: HTTP status, Twilio code, message and extra headers."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        throttled_by: str | None = None,
        scope: str | None = None,
        pause_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.throttled_by = throttled_by
        self.scope = scope  # a 429's scope key (conversation or Service SID, product, account)
        self.pause_s = pause_s  # the pause its Retry-After asks for (None: no Retry-After)

    def response(self) -> web.Response:
        """Render the error as Twilio does."""
        return error_response(self.status, self.code, self.message, self.headers)


def error_body(status: int, code: int, message: str) -> bytes:
    """The JSON bytes of a Twilio error."""
    return json.dumps({
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }).encode()


def error_response(
    status: int, code: int, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A ``web.Response`` carrying a Twilio error body."""
    return web.Response(
        status=status, body=error_body(status, code, message),
        content_type="application/json", headers=headers,
    )


def not_found(what: str = "The requested resource was not found") -> TwilioError:
    """404 / 20404, Twilio's answer for an unknown (or, on v1 paths, malformed) ID."""
    return TwilioError(404, 20404, what)


def bad_request(message: str) -> TwilioError:
    """400 with code 400, the generic bad-request code of [M1]'s examples."""
    return TwilioError(400, 400, message)
