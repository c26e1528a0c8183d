"""Runtime config: credentials from the environment, safe base URLs, resolved paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import ConfigError
from runner.spec.config import (
    DEFAULT_CONVERSATIONS_URL,
    Secret,
    check_base_url,
    load_config,
)

SID = "AC" + "0123456789abcdef" * 2
KEY = "SK" + "0123456789abcdef" * 2
TOKEN = "tok-3f9a1c7e5b"  # a sentinel that must never show in output
ENV = {"TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": TOKEN}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bulkops.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def config_problems(path: Path | None, env: dict[str, str]) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        load_config(path, env)
    return info.value.problems


def test_defaults_without_a_file(tmp_path: Path) -> None:
    """With no file, Twilio's hosts, a checkpoints dir under cwd and auto logging are used."""
    config = load_config(None, ENV, cwd=tmp_path)
    assert config.base_urls.conversations == DEFAULT_CONVERSATIONS_URL
    assert config.base_urls.memory == "https://memory.twilio.com"
    assert config.checkpoint_dir == (tmp_path / "checkpoints").resolve()
    assert (config.log_format, config.log_level) == ("auto", "info")
    assert config.credentials.basic_auth() == (SID, TOKEN)
    assert config.credentials.account_sid == SID
    assert config.warnings == ()


def test_example_config_loads() -> None:
    """The commented config.example.yaml at the repository root is valid."""
    example = Path(__file__).resolve().parents[3] / "config.example.yaml"
    config = load_config(example, ENV)
    assert config.checkpoint_dir == example.parent / "checkpoints"


def test_file_values_and_relative_checkpoint_dir(tmp_path: Path) -> None:
    """Values from the file are used; checkpoint_dir is relative to the file's directory."""
    path = write(
        tmp_path,
        "base_urls: {conversations: 'http://127.0.0.1:8123/'}\n"
        "checkpoint_dir: state/cp\nlog_format: json\nlog_level: debug\n",
    )
    config = load_config(path, ENV)
    assert config.base_urls.conversations == "http://127.0.0.1:8123"
    assert config.checkpoint_dir == (tmp_path / "state" / "cp").resolve()
    assert (config.log_format, config.log_level) == ("json", "debug")


def test_env_overrides_base_urls(tmp_path: Path) -> None:
    """BULKOPS_*_URL beat the file, so tests and the demo can point at the emulator."""
    path = write(tmp_path, "base_urls: {memory: 'https://memory.example.com'}\n")
    env = {**ENV, "BULKOPS_MEMORY_URL": "http://localhost:9000", "BULKOPS_CONVERSATIONS_URL": ""}
    config = load_config(path, env)
    assert config.base_urls.memory == "http://localhost:9000"
    assert config.base_urls.conversations == DEFAULT_CONVERSATIONS_URL


def test_api_key_is_preferred_over_the_auth_token() -> None:
    """With both API key variables set, Basic auth uses the key and its secret."""
    env = {**ENV, "TWILIO_API_KEY": KEY, "TWILIO_API_SECRET": "s3cr3t"}
    credentials = load_config(None, env).credentials
    assert credentials.method == "api_key"
    assert credentials.basic_auth() == (KEY, "s3cr3t")
    assert credentials.account_sid == SID


def test_custom_variable_names_are_read(tmp_path: Path) -> None:
    """credentials.*_env choose which environment variables hold the secrets."""
    path = write(tmp_path, "credentials: {account_sid_env: MY_SID, auth_token_env: MY_TOKEN}\n")
    config = load_config(path, {"MY_SID": SID, "MY_TOKEN": TOKEN})
    assert config.credentials.basic_auth() == (SID, TOKEN)


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        pytest.param(
            {},
            "no Twilio credentials: set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN, "
            "or TWILIO_API_KEY and TWILIO_API_SECRET with TWILIO_ACCOUNT_SID",
            id="nothing",
        ),
        pytest.param({"TWILIO_AUTH_TOKEN": TOKEN}, "TWILIO_ACCOUNT_SID is not set", id="no-sid"),
        pytest.param({"TWILIO_ACCOUNT_SID": SID}, "TWILIO_AUTH_TOKEN is not set", id="no-token"),
        pytest.param(
            {"TWILIO_ACCOUNT_SID": SID, "TWILIO_API_KEY": KEY},
            "TWILIO_API_KEY is set but TWILIO_API_SECRET is not",
            id="half-api-key",
        ),
        pytest.param(
            {"TWILIO_ACCOUNT_SID": TOKEN, "TWILIO_AUTH_TOKEN": TOKEN},
            "TWILIO_ACCOUNT_SID is not an Account SID",
            id="bad-sid",
        ),
        pytest.param(
            {"TWILIO_ACCOUNT_SID": SID, "TWILIO_API_KEY": TOKEN, "TWILIO_API_SECRET": "x"},
            "TWILIO_API_KEY is not an API Key SID",
            id="bad-key",
        ),
    ],
)
def test_credential_problems_name_the_variables(env: dict[str, str], fragment: str) -> None:
    """Missing or malformed credentials name the exact variables to set, never their values."""
    found = config_problems(None, env)
    assert any(fragment in p for p in found), found
    assert not any(TOKEN in p for p in found)


def test_inline_credentials_work_with_a_warning_that_hides_them(tmp_path: Path) -> None:
    """Secrets written in the file are used, each with a warning that does not repeat them."""
    path = write(tmp_path, f"credentials: {{account_sid: {SID}, auth_token: {TOKEN}}}\n")
    config = load_config(path, {})
    assert config.credentials.basic_auth() == (SID, TOKEN)
    assert len(config.warnings) == 2
    assert "credentials.auth_token is written in the config file" in config.warnings[1]
    assert "TWILIO_AUTH_TOKEN" in config.warnings[1]
    assert not any(TOKEN in w for w in config.warnings)


def test_secrets_never_show_in_repr() -> None:
    """The password's repr and str, and the config's repr, hide the secret."""
    config = load_config(None, ENV)
    assert str(config.credentials.password) == "***"
    assert repr(config.credentials.password) == "Secret('***')"
    assert TOKEN not in repr(config)
    assert Secret("a") == Secret("a")


def test_badly_typed_inline_secret_is_not_echoed(tmp_path: Path) -> None:
    """A wrongly typed inline secret is reported without its value."""
    path = write(tmp_path, "credentials: {auth_token: [314159265]}\n")
    found = config_problems(path, {"TWILIO_ACCOUNT_SID": SID})
    assert any(p.startswith("credentials.auth_token: must be text") for p in found)
    assert not any("314159265" in p for p in found)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param(
            "https://conversations.twilio.com/", "https://conversations.twilio.com", id="https"
        ),
        pytest.param("http://127.0.0.1:8080", "http://127.0.0.1:8080", id="loopback-v4"),
        pytest.param("http://127.9.9.9", "http://127.9.9.9", id="loopback-net"),
        pytest.param("http://[::1]:8080", "http://[::1]:8080", id="loopback-v6"),
        pytest.param("http://localhost:1", "http://localhost:1", id="localhost"),
        pytest.param("https://example.com:8443", "https://example.com:8443", id="port"),
    ],
)
def test_good_base_urls(url: str, expected: str) -> None:
    """https anywhere and http to loopback are accepted, trailing slash removed."""
    assert check_base_url(url, "base_urls.conversations") == expected


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        pytest.param(
            "http://conversations.twilio.com",
            "uses plain http to a host that is not loopback: use https://",
            id="http-remote",
        ),
        pytest.param("http://128.0.0.1", "not loopback", id="http-near-loopback"),
        pytest.param("http://localhost.evil.com", "not loopback", id="http-localhost-prefix"),
        pytest.param("ftp://example.com", "is not a URL like", id="scheme"),
        pytest.param("conversations.twilio.com", "is not a URL like", id="no-scheme"),
        pytest.param("https://", "is not a URL like", id="no-host"),
        pytest.param("https://example.com/v1", "has a path, query or fragment", id="path"),
        pytest.param("https://example.com?x=1", "has a path, query or fragment", id="query"),
        pytest.param("https://u:pw@example.com", "must not contain credentials", id="userinfo"),
        pytest.param("https://example.com:99999", "is not a URL like", id="bad-port"),
    ],
)
def test_bad_base_urls_name_the_field_and_fix(url: str, fragment: str) -> None:
    """Unsafe or malformed base URLs are refused with the field name and what to write."""
    with pytest.raises(ValueError) as info:
        check_base_url(url, "base_urls.memory")
    message = str(info.value)
    assert message.startswith("base_urls.memory: ")
    assert fragment in message
    assert "pw" not in message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param(
            "log_fromat: json\n", "log_fromat: unknown key (did you mean 'log_format'?)", id="typo"
        ),
        pytest.param(
            "log_format: xml\n", "log_format: 'xml' is not one of auto, console, json", id="format"
        ),
        pytest.param("targets: []\n", "targets belong in the job spec", id="spec-key"),
        pytest.param("- a\n", "must be a mapping", id="list"),
        pytest.param("a: [\n", "is not valid YAML at line 2", id="yaml"),
        pytest.param("checkpoint_dir: ''\n", "checkpoint_dir: is empty", id="empty-dir"),
        pytest.param(
            "credentials: {auth_token_env: 'MY TOKEN'}\n",
            "auth_token_env must name an environment variable (like TWILIO_AUTH_TOKEN); "
            "the value given is not shown",
            id="env-name",
        ),
    ],
)
def test_bad_config_files(tmp_path: Path, text: str, fragment: str) -> None:
    """A bad config file raises ConfigError naming the key and the fix."""
    found = config_problems(write(tmp_path, text), ENV)
    assert any(fragment in p for p in found), found


def test_missing_config_file(tmp_path: Path) -> None:
    """A config path that does not exist is named."""
    assert "no such config file" in config_problems(tmp_path / "nope.yaml", ENV)[0]


def test_half_api_key_with_a_token_falls_back_with_a_warning() -> None:
    """An API secret without its key, next to an auth token, uses the token and says so."""
    config = load_config(None, {**ENV, "TWILIO_API_SECRET": "s"})
    assert config.credentials.method == "auth_token"
    assert config.warnings == (
        "TWILIO_API_SECRET is set without TWILIO_API_KEY: using TWILIO_AUTH_TOKEN",
    )


def test_the_resume_half_life_is_read_and_defaults_to_five_minutes(tmp_path: Path) -> None:
    """pacing.resume_half_life_s: 300 s when not given (and in the example), 0 turns it off."""
    assert load_config(None, ENV, cwd=tmp_path).resume_half_life_s == 300.0
    example = Path(__file__).resolve().parents[3] / "config.example.yaml"
    assert load_config(example, ENV).resume_half_life_s == 300.0
    path = write(tmp_path, "pacing: {resume_half_life_s: 0}\n")
    assert load_config(path, ENV).resume_half_life_s == 0.0
