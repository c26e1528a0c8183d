"""Validate every exchange the emulator serves against Twilio's OpenAPI specs (openapi-core).

Rules, each documented in docs/emulator.md:
- a request the emulator accepted (status < 400) must be valid for the spec;
- a response whose status the spec declares for the operation must match it;
- an error the spec does not declare (every v1 error, 401 anywhere, 405, ...) must still be
  Twilio's classic error body, checked against [M1]'s ``TwilioError`` schema;
- a response carrying an injected bad-body fault is skipped: it is off-spec on purpose.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from aiohttp import web
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from runner.emulator.state import PLAN_KEY

OAI = Path("/work/shared/twilio-oai")
CONVERSATIONS_HOST = "https://conversations.twilio.com"
MEMORY_HOST = "https://memory.twilio.com"


@cache
def specs() -> dict[str, OpenAPI]:
    """The three specs, loaded once per test session."""
    return {
        "v1": OpenAPI.from_file_path(str(OAI / "twilio_conversations_v1.json")),
        "v2": OpenAPI.from_file_path(str(OAI / "twilio_conversations_v2.json")),
        "memory": OpenAPI.from_file_path(str(OAI / "twilio_memory_v1.yaml")),
    }


@cache
def raw_specs() -> dict[str, dict[str, Any]]:
    return {
        "v1": json.loads((OAI / "twilio_conversations_v1.json").read_text()),
        "v2": json.loads((OAI / "twilio_conversations_v2.json").read_text()),
        "memory": yaml.safe_load((OAI / "twilio_memory_v1.yaml").read_text()),
    }


def twilio_error_schema() -> dict[str, Any]:
    """[M1]'s TwilioError, the strictest statement of the classic error body."""
    schema = dict(raw_specs()["memory"]["components"]["schemas"]["TwilioError"])
    schema["required"] = ["code", "message", "more_info", "status"]
    return schema


def spec_name(path: str) -> str:
    if path.startswith("/v1/ControlPlane/"):
        return "memory"
    return "v2" if path.startswith("/v2/") else "v1"


def _template(name: str, path: str) -> str | None:
    """The spec path template that matches ``path``."""
    parts = path.strip("/").split("/")
    for template in raw_specs()[name]["paths"]:
        tparts = template.strip("/").split("/")
        if len(tparts) == len(parts) and all(
            t.startswith("{") or t == p for t, p in zip(tparts, parts, strict=True)
        ):
            return str(template)
    return None


def declared_statuses(name: str, path: str, method: str) -> set[str]:
    template = _template(name, path)
    if template is None:
        return set()
    op = raw_specs()[name]["paths"][template].get(method.lower())
    return set(op["responses"]) if op else set()


@dataclass
class Exchange:
    """One request and its response, as seen at the outermost middleware."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    status: int
    response_headers: dict[str, str]
    body: bytes
    content_type: str


@dataclass
class SpecChecker:
    """Collects and validates exchanges; ``problems`` must be empty at the end of a test."""

    exchanges: int = 0
    problems: list[str] = field(default_factory=list)
    # Identical exchanges (a list polled 2,000 times) are validated once.
    _seen: set[tuple[Any, ...]] = field(default_factory=set)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        if request.path.startswith("/_emulator"):
            return response
        plan = request.get(PLAN_KEY)
        transport = request.transport
        if (plan is not None and (plan.bad_body or plan.reset)) or transport is None \
                or transport.is_closing():
            return response
        body = response.body if isinstance(response, web.Response) else b""
        self.check(Exchange(
            request.method, request.path, list(request.query.items()),
            dict(request.headers), response.status, dict(response.headers),
            bytes(body) if isinstance(body, bytes | bytearray) else b"",
            response.content_type if response.status != 204 else "",
        ))
        return response

    def check(self, ex: Exchange) -> None:
        self.exchanges += 1
        fingerprint = (ex.method, ex.path, tuple(ex.query), ex.status, ex.body,
                       tuple(sorted((k, v) for k, v in ex.response_headers.items()
                                    if k not in ("Date", "Twilio-Concurrent-Requests"))))
        if fingerprint in self._seen:
            return
        self._seen.add(fingerprint)
        name = spec_name(ex.path)
        host = MEMORY_HOST if name == "memory" else CONVERSATIONS_HOST
        request = MockRequest(host, ex.method.lower(), ex.path, args=ex.query,  # type: ignore[arg-type]
                              headers=ex.headers, content_type="")
        where = f"{ex.method} {ex.path}?{ex.query} -> {ex.status}"
        if ex.status < 400:
            try:
                specs()[name].validate_request(request)
            except Exception as exc:  # openapi-core raises a family of validation errors
                self.problems.append(f"{where}: request invalid: {exc!r}")
        if str(ex.status) in declared_statuses(name, ex.path, ex.method):
            response = MockResponse(ex.body, ex.status, ex.response_headers, ex.content_type)
            try:
                specs()[name].validate_response(request, response)
            except Exception as exc:
                detail = getattr(exc, "__cause__", None)
                self.problems.append(f"{where}: response invalid: {exc!r} {detail!r}")
        elif ex.status >= 400:
            try:
                jsonschema.validate(json.loads(ex.body), twilio_error_schema())
            except (ValueError, jsonschema.ValidationError) as exc:
                self.problems.append(f"{where}: error body is not Twilio's: {exc}")
        else:
            self.problems.append(f"{where}: success status not declared by the spec")
