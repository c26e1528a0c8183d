"""The user's input, parsed and validated: the job spec, its times, manifests and the config."""

from __future__ import annotations

from runner.spec.config import Config, load_config
from runner.spec.jobspec import JobSpec, load_spec, parse_spec, spec_fingerprint
from runner.spec.manifest import ManifestInfo
from runner.spec.timespec import Bound, ResolvedTimes, parse_bound

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
