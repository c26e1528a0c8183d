"""Runtime settings of the emulator: credentials, limits, faults, operation delays.

A mutable dataclass because the admin endpoint changes limits and faults mid-run (benchmarks lower a
limit to watch the runner adapt); :meth:`EmulatorSettings.update` is the one checked way to do it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

DEFAULT_ACCOUNT_SID: Final = "AC" + "e3" * 16
# Distinctive 32-character strings so a test can grep any artifact for a leaked secret.
DEFAULT_AUTH_TOKEN: Final = "emu7a3f0c9d2b8e4f1a6c5d0e9b8a7f6"
DEFAULT_API_KEY: Final = "SK" + "e5" * 16
DEFAULT_API_SECRET: Final = "emusec4b9d1e7f3a2c8b6d0e5f9a1c7b"

RetryAfterMode = Literal["seconds", "http-date", "absent"]
PRODUCTS: Final = ("conversations", "memory")
FAULT_KINDS: Final = ("500", "503", "reset", "slow", "bad_body", "20009")
MAX_RETRY_AFTER_S: Final = 1e12  # a Retry-After of 13 digits; an HTTP-date stops at 9999


class SettingsError(ValueError):
    """A setting has an unknown name or a value of the wrong type or range."""


@dataclass
class EmulatorSettings:
    """Everything that shapes the emulator's behaviour; ``None`` disables a limit."""

    account_sid: str = DEFAULT_ACCOUNT_SID
    auth_token: str = DEFAULT_AUTH_TOKEN
    api_key: str | None = DEFAULT_API_KEY
    api_secret: str | None = DEFAULT_API_SECRET
    # limits
    account_concurrency: int | None = 100
    conversation_aps: float | None = 30.0
    service_aps: float | None = 30.0
    product_rate: dict[str, tuple[float, int]] = field(default_factory=dict)
    retry_after: RetryAfterMode = "seconds"
    retry_after_s: float | None = None  # every 429 asks for this pause instead of its own wait
    # asynchronous operations
    operation_pending_s: float = 1.0
    operation_running_s: float = 1.0
    operation_failure_rate: float = 0.0
    operation_retry_after_s: float | None = None  # every 202 and Operation GET says this
    # faults: probabilities per request
    fault_500: float = 0.0
    fault_503: float = 0.0
    fault_reset: float = 0.0
    fault_slow: float = 0.0
    slow_delay_s: float = 2.0
    fault_bad_body: float = 0.0
    fault_20009: float = 0.0
    # latency added to every Twilio request, log-normal from median and p99
    latency_median_s: float = 0.0
    latency_p99_s: float = 0.0
    # IDs (SIDs, v2 and Memory ids) whose DELETE is answered as usual (204, or 202 and an
    # Operation that completes) yet leaves the resource in place: a server that loses deletes,
    # which only a check afterwards (`bulkops verify`) can catch.
    keep_resources: list[str] = field(default_factory=list)
    seed: int = 0
    # the request log can be switched off for multi-million-request benchmarks
    record_requests: bool = True

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> EmulatorSettings:
        """Settings whose credentials come from TWILIO_* variables, else the defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, var in (
            ("account_sid", "TWILIO_ACCOUNT_SID"),
            ("auth_token", "TWILIO_AUTH_TOKEN"),
            ("api_key", "TWILIO_API_KEY"),
            ("api_secret", "TWILIO_API_SECRET"),
        ):
            if env.get(var):
                values[name] = env[var]
        values.update(overrides)
        return cls(**values)

    def validate(self) -> None:
        """Raise :class:`SettingsError` naming the first bad field."""
        if not _ACCOUNT.match(self.account_sid):
            raise SettingsError(
                f"account_sid must match ^AC[0-9a-fA-F]{{32}}$: {self.account_sid!r}")
        if not self.auth_token:
            raise SettingsError("auth_token must not be empty")
        if (self.api_key is None) != (self.api_secret is None):
            raise SettingsError("api_key and api_secret must be given together")
        if self.api_key is not None and not _API_KEY.match(self.api_key):
            raise SettingsError(f"api_key must match ^SK[0-9a-fA-F]{{32}}$: {self.api_key!r}")
        if self.account_concurrency is not None and self.account_concurrency < 1:
            raise SettingsError("account_concurrency must be >= 1 or null")
        for name in ("conversation_aps", "service_aps"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise SettingsError(f"{name} must be > 0 or null")
        for product, (rate, burst) in self.product_rate.items():
            if product not in PRODUCTS:
                raise SettingsError(f"product_rate: unknown product {product!r} (use {PRODUCTS})")
            if rate <= 0 or burst < 1:
                raise SettingsError(f"product_rate[{product!r}]: rate must be > 0 and burst >= 1")
        if self.retry_after not in ("seconds", "http-date", "absent"):
            raise SettingsError("retry_after must be 'seconds', 'http-date' or 'absent'")
        if self.retry_after_s is not None and not 0 <= self.retry_after_s <= MAX_RETRY_AFTER_S:
            raise SettingsError(
                f"retry_after_s must be between 0 and {MAX_RETRY_AFTER_S:g} or null")
        if self.operation_retry_after_s is not None and self.operation_retry_after_s < 0:
            raise SettingsError("operation_retry_after_s must be >= 0 or null")
        for name in ("operation_pending_s", "operation_running_s", "slow_delay_s",
                     "latency_median_s", "latency_p99_s"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{name} must be >= 0")
        if self.latency_p99_s and self.latency_p99_s < self.latency_median_s:
            raise SettingsError("latency_p99_s must be >= latency_median_s")
        if not all(isinstance(one, str) for one in self.keep_resources):
            raise SettingsError("keep_resources must be a list of resource IDs")
        for name in ("operation_failure_rate", *(f"fault_{kind}" for kind in FAULT_KINDS)):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise SettingsError(f"{name} must be a probability between 0 and 1")

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply a partial update from JSON, all or nothing."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        hints = typing.get_type_hints(type(self))
        candidate = dataclasses.replace(
            self, product_rate=dict(self.product_rate), keep_resources=list(self.keep_resources)
        )
        for name, raw in changes.items():
            if name not in fields:
                raise SettingsError(f"unknown setting {name!r}")
            object.__setattr__(candidate, name, _coerce(name, hints[name], raw))
        candidate.validate()
        for name in changes:
            setattr(self, name, getattr(candidate, name))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view; secrets are included because the admin API is local-only."""
        data = dataclasses.asdict(self)
        data["product_rate"] = {k: [r, b] for k, (r, b) in self.product_rate.items()}
        return data


_ACCOUNT: Final = re.compile(r"^AC[0-9a-fA-F]{32}$")
_API_KEY: Final = re.compile(r"^SK[0-9a-fA-F]{32}$")


def _coerce(name: str, hint: Any, raw: Any) -> Any:
    """Check a JSON value against a field's annotation (ints are accepted for floats)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if raw is None and type(None) in options:
            return None
        non_none = [o for o in options if o is not type(None)]
        return _coerce(name, non_none[0], raw)
    if origin is Literal:
        if raw not in typing.get_args(hint):
            raise SettingsError(f"{name} must be one of {list(typing.get_args(hint))}, not {raw!r}")
        return raw
    if origin is dict:
        if not isinstance(raw, dict):
            raise SettingsError(f"{name} must be an object of product -> [rate, burst]")
        out: dict[str, tuple[float, int]] = {}
        for key, pair in raw.items():
            if (
                not isinstance(pair, list | tuple)
                or len(pair) != 2
                or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in pair)
                or not float(pair[1]).is_integer()
            ):
                raise SettingsError(f"{name}[{key!r}] must be [rate, burst] numbers")
            out[str(key)] = (float(pair[0]), int(pair[1]))
        return out
    if origin is list:
        if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
            raise SettingsError(f"{name} must be a list of strings")
        return list(raw)
    if hint is bool:
        if not isinstance(raw, bool):
            raise SettingsError(f"{name} must be a boolean, not {raw!r}")
        return raw
    if hint is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise SettingsError(f"{name} must be an integer, not {raw!r}")
        return raw
    if hint is float:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise SettingsError(f"{name} must be a number, not {raw!r}")
        return float(raw)
    if hint is str:
        if not isinstance(raw, str):
            raise SettingsError(f"{name} must be a string, not {raw!r}")
        return raw
    raise SettingsError(f"{name} cannot be changed at runtime")
