"""One run: discovery feeding deletion workers through a bounded queue, and Operations."""

from __future__ import annotations

from runner.engine.admission import Admission, Verdict, in_phases
from runner.engine.discovery import Discovery
from runner.engine.scheduler import STAGES, Engine, EngineSettings, preflight

__all__ = [
    "STAGES",
    "Admission",
    "Discovery",
    "Engine",
    "EngineSettings",
    "Verdict",
    "in_phases",
    "preflight",
]
