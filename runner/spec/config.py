"""Runtime configuration: where to send requests, as whom, where to keep checkpoints, how to log.

The config file (YAML, optional) names environment variables; the secrets themselves come from the
environment, read when :func:`load_config` is called, never at import time. Credentials written in
the file are accepted so a quick test still works, but each one adds a warning to
:attr:`Config.warnings` (the warning never repeats the secret).

Precedence: ``BULKOPS_CONVERSATIONS_URL`` / ``BULKOPS_MEMORY_URL`` over ``base_urls`` in the file
over Twilio's hosts; for each credential, a value written in the file over its environment
variable. With both API key variables set, the API key and secret are used instead of the auth
token.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError

from runner.errors import ConfigError
from runner.files import read_input
from runner.kinds.ids import ID_PATTERNS
from runner.spec.holds import ExcludeSpec, HoldSpec, check_hold_files
from runner.spec.problems import describe_validation_error
from runner.spec.yaml_input import load_yaml

__all__ = [
    "DEFAULT_CONVERSATIONS_URL",
    "DEFAULT_MEMORY_URL",
    "BaseUrls",
    "Config",
    "Credentials",
    "LogFormat",
    "LogLevel",
    "Secret",
    "check_base_url",
    "configured_checkpoint_dir",
    "load_config",
]

DEFAULT_CONVERSATIONS_URL = "https://conversations.twilio.com"
DEFAULT_MEMORY_URL = "https://memory.twilio.com"
URL_ENV = {"conversations": "BULKOPS_CONVERSATIONS_URL", "memory": "BULKOPS_MEMORY_URL"}

LogFormat = Literal["auto", "console", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]
Text = Annotated[str, Strict()]


class Secret:
    """A secret string whose ``str`` and ``repr`` are ``***``, so no log or traceback shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the Authorization header and nothing else."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class Credentials:
    """Who bulkops authenticates as: an auth token, or an API key (``SK…``) and its secret."""

    account_sid: str
    username: str  # the Account SID with an auth token, the API key SID with an API key
    password: Secret
    method: Literal["auth_token", "api_key"]

    def basic_auth(self) -> tuple[str, str]:
        """(username, password) for HTTP Basic authentication."""
        return self.username, self.password.reveal()


@dataclass(frozen=True, slots=True)
class BaseUrls:
    """Scheme and host of each product, without a trailing slash."""

    conversations: str = DEFAULT_CONVERSATIONS_URL
    memory: str = DEFAULT_MEMORY_URL


@dataclass(frozen=True, slots=True)
class Config:
    """The resolved configuration of one bulkops process."""

    credentials: Credentials
    base_urls: BaseUrls
    checkpoint_dir: Path
    log_format: LogFormat = "auto"
    log_level: LogLevel = "info"
    # A resumed run starts from the pace its log recorded, trusted half as much after each
    # half-life since it was recorded (0: never, every resume learns the pace from scratch).
    resume_half_life_s: float = 300.0
    source: Path | None = None
    warnings: tuple[str, ...] = field(default=())
    # Legal holds every job run with this config honours, beside its own exclude: (issue 13 §1).
    holds: HoldSpec | None = None


# --- the file's schema -------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _CredentialsSection(_Model):
    misplaced: ClassVar[Mapping[str, str]] = {
        "token": "write auth_token_env: <name of the variable holding the token>",
        "password": "write auth_token_env or api_secret_env: <name of a variable>",
    }

    account_sid_env: Text = "TWILIO_ACCOUNT_SID"
    auth_token_env: Text = "TWILIO_AUTH_TOKEN"
    api_key_env: Text = "TWILIO_API_KEY"
    api_secret_env: Text = "TWILIO_API_SECRET"
    # Accepted with a warning: secrets belong in the environment, not in a file.
    account_sid: Text | None = None
    auth_token: Text | None = None
    api_key: Text | None = None
    api_secret: Text | None = None


class _BaseUrlsSection(_Model):
    conversations: Text = DEFAULT_CONVERSATIONS_URL
    memory: Text = DEFAULT_MEMORY_URL


class _PacingSection(_Model):
    resume_half_life_s: Annotated[float, Strict(), Field(ge=0, le=86_400)] = 300.0


class _ConfigFile(_Model):
    misplaced: ClassVar[Mapping[str, str]] = {
        "targets": "targets belong in the job spec, not in the config file",
        "limits": "limits belong in the job spec, not in the config file",
    }

    credentials: _CredentialsSection = _CredentialsSection()
    base_urls: _BaseUrlsSection = _BaseUrlsSection()
    checkpoint_dir: Text = "checkpoints"
    log_format: LogFormat = "auto"
    log_level: LogLevel = "info"
    holds: ExcludeSpec | None = None
    pacing: _PacingSection = _PacingSection()


# --- checks ------------------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_base_url(value: str, where: str) -> str:
    """Validate a base URL and return it without a trailing slash; ValueError names ``where``.

    Only ``scheme://host[:port]`` is accepted; plain http only to a loopback host, so nothing
    secret crosses a network unencrypted.
    """
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError(f"{where}: is not a URL like https://conversations.twilio.com") from None
    # Never echo a URL that carries credentials.
    shown = repr(value) if "@" not in value else "the URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"{where}: {shown} is not a URL like https://conversations.twilio.com "
            "(http or https, with a host)"
        )
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            f"{where}: the URL must not contain credentials: "
            "they come from the environment variables named in credentials"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(
            f"{where}: {shown} has a path, query or fragment: give only scheme, host and port "
            f"(e.g. {parts.scheme}://{parts.netloc})"
        )
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ValueError(
            f"{where}: {shown} uses plain http to a host that is not loopback: use https:// "
            "(plain http is allowed only to 127.0.0.1, ::1 and localhost)"
        )
    del port  # read only so a bad port fails above
    return f"{parts.scheme}://{parts.netloc}"


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_DEFAULT_ENV = {
    "account_sid": "TWILIO_ACCOUNT_SID",
    "auth_token": "TWILIO_AUTH_TOKEN",
    "api_key": "TWILIO_API_KEY",
    "api_secret": "TWILIO_API_SECRET",
}


def looks_like_variable_name(value: str) -> bool:
    """Whether ``value`` may be shown as the name of an environment variable.

    A pasted secret must never be echoed, so a value of the shape of one — no underscore, 24
    characters or more, with a digit or mixed case (an auth token is 32 hex digits, an API
    secret 32 letters and digits) — is not taken for a name, even where it would be a legal one.
    """
    if not _ENV_NAME.fullmatch(value):
        return False
    secret_shaped = (
        "_" not in value
        and len(value) >= 24
        and (
            any(c.isdigit() for c in value)
            or (any(c.islower() for c in value) and any(c.isupper() for c in value))
        )
    )
    return not secret_shaped


def _not_a_name(name: str) -> str:
    return (
        f"credentials.{name}_env must name an environment variable (like "
        f"{_DEFAULT_ENV[name]}); the value given is not shown"
    )


def _credentials(
    section: _CredentialsSection, env: Mapping[str, str]
) -> tuple[Credentials | None, list[str], list[str]]:
    """(credentials, problems, warnings)."""
    problems: list[str] = []
    warnings: list[str] = []
    values: dict[str, str | None] = {}
    for name in ("account_sid", "auth_token", "api_key", "api_secret"):
        variable: str = getattr(section, f"{name}_env")
        if not looks_like_variable_name(variable):
            # Never echoed: a value that is not a name is most likely the secret itself.
            problems.append(_not_a_name(name))
        inline: str | None = getattr(section, name)
        if inline is not None:
            warnings.append(
                f"credentials.{name} is written in the config file: move it to the environment "
                f"variable {variable} and delete it from the file"
            )
            values[name] = inline or None
        else:
            values[name] = env.get(variable) or None
    if problems:
        return None, problems, warnings
    names = {n: getattr(section, f"{n}_env") for n in values}
    sid, token, key, secret = (
        values["account_sid"],
        values["auth_token"],
        values["api_key"],
        values["api_secret"],
    )
    if (key is None) != (secret is None) and token is None:
        present, absent = ("api_key", "api_secret") if key else ("api_secret", "api_key")
        problems.append(
            f"{names[present]} is set but {names[absent]} is not: set both, "
            f"or set {names['auth_token']} instead"
        )
    elif (key is None) != (secret is None):
        present, absent = ("api_key", "api_secret") if key else ("api_secret", "api_key")
        warnings.append(
            f"{names[present]} is set without {names[absent]}: using {names['auth_token']}"
        )
    if sid is None:
        if token is None and (key is None or secret is None):
            problems.append(
                f"no Twilio credentials: set {names['account_sid']} and {names['auth_token']}, "
                f"or {names['api_key']} and {names['api_secret']} with {names['account_sid']}"
            )
        else:
            problems.append(
                f"{names['account_sid']} is not set: set it to your Account SID (AC...)"
            )
        return None, problems, warnings
    if not ID_PATTERNS["account"].matches(sid):
        # Say which variable, never its value: it may hold a misplaced secret.
        problems.append(
            f"{names['account_sid']} is not an Account SID (AC followed by 32 hex digits)"
        )
    if key is not None and secret is not None:
        if not ID_PATTERNS["api_key"].matches(key):
            problems.append(
                f"{names['api_key']} is not an API Key SID (SK followed by 32 hex digits)"
            )
        if problems:
            return None, problems, warnings
        return Credentials(sid, key, Secret(secret), "api_key"), problems, warnings
    if token is None:
        problems.append(
            f"{names['auth_token']} is not set: set it, "
            f"or set {names['api_key']} and {names['api_secret']}"
        )
    if problems or token is None:
        return None, problems, warnings
    return Credentials(sid, sid, Secret(token), "auth_token"), problems, warnings


# A config is a few lines; the bound keeps a FIFO-free but huge file (or a mistake like
# `--config /var/log/syslog`) from being read whole.
MAX_CONFIG_BYTES = 1 << 20


def _read_file(path: Path) -> tuple[_ConfigFile, list[str]]:
    raw = read_input(path, MAX_CONFIG_BYTES, ConfigError, noun="config")
    try:
        data, lines = load_yaml(raw.decode("utf-8"), "the config file")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: is not UTF-8 text") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the config file must be a mapping of keys "
            "(credentials, base_urls, checkpoint_dir, log_format, log_level, holds, pacing)"
        )
    hold_problems = check_hold_files(data, path.parent, "holds")
    try:
        section = _ConfigFile.model_validate(data)
    except ValidationError as exc:
        return _ConfigFile(), [
            _without_secret(p) for p in describe_validation_error(exc, _ConfigFile, lines)
        ] + hold_problems
    if section.holds is not None:
        section.holds.attach_base(path.parent)
    return section, hold_problems


def _without_secret(problem: str) -> str:
    """The problem, unless it is about an inline secret or a variable name (where a secret may
    have been pasted): then a message without its value."""
    for name in ("account_sid", "auth_token", "api_key", "api_secret"):
        if problem.startswith(f"credentials.{name}_env:"):
            return _not_a_name(name)
        if problem.startswith(f"credentials.{name}:"):
            return (
                f"credentials.{name}: must be text (and belongs in the environment variable "
                f"named by {name}_env, not in this file)"
            )
    return problem


def configured_checkpoint_dir(path: Path | None, *, cwd: Path | None = None) -> Path:
    """The checkpoint directory the config at ``path`` names (None: the default), as
    :func:`load_config` resolves it, without the credentials: for commands that only read
    logs (``bulkops status JOB``). ConfigError if the file is not a valid config."""
    if path is None:
        return ((cwd if cwd is not None else Path.cwd()) / _ConfigFile().checkpoint_dir).resolve()
    section, problems = _read_file(path)
    if problems:
        raise ConfigError(problems)
    return (path.parent / section.checkpoint_dir).resolve()


def load_config(path: Path | None, env: Mapping[str, str], *, cwd: Path | None = None) -> Config:
    """Build the Config from the file at ``path`` (None: defaults only) and ``env``.

    Relative ``checkpoint_dir`` is taken from the config file's directory, or from ``cwd``
    (default: the current directory) without a file. Raises ConfigError listing every problem.
    """
    problems: list[str] = []
    if path is not None:
        section, problems = _read_file(path)
        base = path.parent
    else:
        section = _ConfigFile()
        base = cwd if cwd is not None else Path.cwd()
    urls: dict[str, str] = {}
    for product in ("conversations", "memory"):
        variable = URL_ENV[product]
        if env.get(variable):
            value, where = env[variable], variable
        else:
            value, where = getattr(section.base_urls, product), f"base_urls.{product}"
        try:
            urls[product] = check_base_url(value, where)
        except ValueError as exc:
            problems.append(str(exc))
    credentials, credential_problems, warnings = _credentials(section.credentials, env)
    problems.extend(credential_problems)
    checkpoint_dir = (base / section.checkpoint_dir).resolve()
    if not section.checkpoint_dir.strip():
        problems.append("checkpoint_dir: is empty: give a directory for checkpoint logs")
    elif checkpoint_dir.exists() and not (
        checkpoint_dir.is_dir() and os.access(checkpoint_dir, os.W_OK | os.X_OK)
    ):
        # Checked here so the run is refused before any request; a missing one is created.
        what = "is not a directory" if not checkpoint_dir.is_dir() else "is not writable"
        problems.append(
            f"checkpoint_dir: {checkpoint_dir} {what}: give a writable directory for "
            "checkpoint logs"
        )
    if problems or credentials is None:
        raise ConfigError(problems)
    return Config(
        credentials=credentials,
        base_urls=BaseUrls(**urls),
        checkpoint_dir=checkpoint_dir,
        log_format=section.log_format,
        log_level=section.log_level,
        resume_half_life_s=section.pacing.resume_half_life_s,
        source=path,
        warnings=tuple(warnings),
        holds=None if section.holds is None else section.holds.resolved() or None,
    )
