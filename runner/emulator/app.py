"""The aiohttp application: one port serving Conversations v1/v2, Memory and the admin API."""

from __future__ import annotations

from aiohttp import web

from . import admin, handlers_memory, handlers_users, handlers_v1, handlers_v2
from .dataset import Dataset
from .pipeline import twilio_pipeline
from .settings import EmulatorSettings
from .state import EMULATOR_KEY, Emulator


def build_app(settings: EmulatorSettings, dataset: Dataset) -> web.Application:
    """The emulator as an aiohttp application; its state is ``app[EMULATOR_KEY]``."""
    app = web.Application(middlewares=[twilio_pipeline])
    app[EMULATOR_KEY] = Emulator(settings, dataset)
    admin.register(app.router)
    handlers_memory.register(app.router)
    handlers_v2.register(app.router)
    handlers_v1.register(app.router)
    handlers_users.register(app.router)
    return app


__all__ = ["EMULATOR_KEY", "Emulator", "build_app"]
