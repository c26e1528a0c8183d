"""A Twilio-compatible emulator of the APIs bulkops drives (Conversations v1/v2, Memory v1).

Its truth is Twilio's specs; it shares no code with the runner. See docs/emulator.md.
"""

from .app import EMULATOR_KEY, Emulator, build_app
from .cli import main
from .dataset import Dataset, SeedError, generate, load_seed
from .server import running_emulator, serve
from .settings import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    DEFAULT_AUTH_TOKEN,
    EmulatorSettings,
    SettingsError,
)

__all__ = [
    "DEFAULT_ACCOUNT_SID",
    "DEFAULT_API_KEY",
    "DEFAULT_API_SECRET",
    "DEFAULT_AUTH_TOKEN",
    "EMULATOR_KEY",
    "Dataset",
    "Emulator",
    "EmulatorSettings",
    "SeedError",
    "SettingsError",
    "build_app",
    "generate",
    "load_seed",
    "main",
    "running_emulator",
    "serve",
]
