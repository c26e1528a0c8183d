"""The user's input, parsed and validated: the job spec, its times, manifests and the config."""

from __future__ import annotations

from runner.kinds.spec_model import ManifestInfo
from runner.kinds.timespec import Bound, ResolvedTimes, parse_bound
from runner.spec.config import Config, load_config
from runner.spec.jobspec import JobSpec, load_spec, parse_spec, spec_fingerprint

__all__ = [
    "Bound",
    "Config",
    "JobSpec",
    "ManifestInfo",
    "ResolvedTimes",
    "load_config",
    "load_spec",
    "parse_bound",
    "parse_spec",
    "spec_fingerprint",
]
