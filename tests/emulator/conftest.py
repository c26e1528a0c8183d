"""Fixtures: an emulator on a real 127.0.0.1 socket whose every exchange is spec-checked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from runner.emulator import EMULATOR_KEY, Dataset, Emulator, EmulatorSettings, build_app, generate

from .spec_check import SpecChecker


@dataclass
class Running:
    """A served emulator: base URL, in-process state and the spec checker."""

    url: str
    emulator: Emulator
    checker: SpecChecker

    @property
    def settings(self) -> EmulatorSettings:
        return self.emulator.settings


def fast_settings(**overrides: Any) -> EmulatorSettings:
    """Default credentials, short Operation delays, no limits unless asked."""
    values: dict[str, Any] = dict(
        operation_pending_s=0.05, operation_running_s=0.05, conversation_aps=None,
        service_aps=None,
    )
    values.update(overrides)
    return EmulatorSettings(**values)


@pytest.fixture
def settings() -> EmulatorSettings:
    return fast_settings()


@pytest.fixture(scope="session")
def demo() -> Dataset:
    return generate("demo", seed=3)


@pytest.fixture
def dataset(demo: Dataset) -> Dataset:
    return demo


async def start(settings: EmulatorSettings, dataset: Dataset, *, check: bool = True
                ) -> tuple[TestServer, Running]:
    """Serve an emulator with the spec-checking middleware outermost (unless ``check`` is off:
    only for timing-sensitive tests whose exchanges other tests already validate)."""
    app = build_app(settings, dataset)
    checker = SpecChecker()
    if check:
        app.middlewares.insert(0, checker.middleware)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    return server, Running(str(server.make_url("")).rstrip("/"), app[EMULATOR_KEY], checker)


@pytest.fixture
async def emu(settings: EmulatorSettings, dataset: Dataset) -> AsyncIterator[Running]:
    server, running = await start(settings, dataset)
    yield running
    await server.close()
    assert running.checker.problems == []


def auth_header(settings: EmulatorSettings) -> dict[str, str]:
    return {"Authorization": aiohttp.encode_basic_auth(settings.account_sid, settings.auth_token)}


@pytest.fixture
async def http(emu: Running) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(emu.url, headers=auth_header(emu.settings)) as session:
        yield session


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``slow`` emulator tests unless selected with ``-m slow`` or EMULATOR_SLOW=1."""
    import os

    if "slow" in (config.getoption("-m") or "") or os.environ.get("EMULATOR_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow or EMULATOR_SLOW=1")
    for item in items:
        if "slow" in item.keywords and "tests/emulator" in str(item.fspath):
            item.add_marker(skip)
