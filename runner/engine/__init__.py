"""One run: discovery feeding deletion workers through a bounded queue, and Operations."""

from __future__ import annotations

from runner.engine.discovery import Discovery
from runner.engine.scheduler import STAGES, Engine, EngineSettings, preflight

__all__ = ["STAGES", "Discovery", "Engine", "EngineSettings", "preflight"]
