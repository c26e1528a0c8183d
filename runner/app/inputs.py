"""A command's input: the job spec and the config, read and validated together."""

from __future__ import annotations

import os
from pathlib import Path

import structlog

from runner.app import logs
from runner.errors import InputError
from runner.spec.config import Config, load_config
from runner.spec.jobspec import JobSpec, load_spec

__all__ = ["load_inputs"]

log = structlog.get_logger("bulkops.cli")


def load_inputs(
    job: Path, config_path: Path | None, log_format: str | None, log_level: str | None = None
) -> tuple[JobSpec, Config]:
    """Spec and config, both validated in full (InputError lists every problem)."""
    problems: list[str] = []
    spec: JobSpec | None = None
    config: Config | None = None
    try:
        spec = load_spec(job)
    except InputError as exc:
        problems.extend(exc.problems)
    try:
        config = load_config(config_path, os.environ)
    except InputError as exc:
        problems.extend(exc.problems)
    if problems or spec is None or config is None:
        raise InputError(problems)
    logs.configure(log_format or config.log_format, log_level or config.log_level)
    for warning in config.warnings:
        log.warning("config_warning", detail=warning)
    return spec, config
