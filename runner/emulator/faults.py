"""Injected faults and latency, drawn from one seeded RNG so a run is reproducible.

Every Twilio request draws the same number of random values in the same order whatever the
settings, so the same seed and request sequence give the same faults even when rates change.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from .settings import EmulatorSettings

# z-score of the 99th percentile of a standard normal.
_Z99 = 2.3263478740408408


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """What to do to one request."""

    error_500: bool = False
    error_503: bool = False
    reset: bool = False
    slow: bool = False
    bad_body: bool = False
    error_20009: bool = False
    latency_s: float = 0.0


class FaultInjector:
    """Draws a :class:`FaultPlan` per request."""

    def __init__(self, seed: int) -> None:
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Restart the sequence (the admin API does this when ``seed`` changes)."""
        self.seed = seed
        self._rng = random.Random(f"faults:{seed}")

    def draw(self, s: EmulatorSettings) -> FaultPlan:
        """Draw the faults for the next request."""
        r = self._rng
        u500, u503, ureset, uslow, ubad, u20009, ulat = (r.random() for _ in range(7))
        latency = 0.0
        if s.latency_median_s > 0:
            sigma = max(math.log(max(s.latency_p99_s, s.latency_median_s) / s.latency_median_s)
                        / _Z99, 0.0)
            latency = s.latency_median_s
            if sigma > 0:
                # Inverse-CDF of a log-normal via the normal quantile keeps one draw per request
                # (drawn above even for a fixed latency, so a seed gives the same faults).
                z = _normal_quantile(min(max(ulat, 1e-12), 1 - 1e-12))
                latency *= math.exp(sigma * z)
        return FaultPlan(
            error_500=u500 < s.fault_500,
            error_503=u503 < s.fault_503,
            reset=ureset < s.fault_reset,
            slow=uslow < s.fault_slow,
            bad_body=ubad < s.fault_bad_body,
            error_20009=u20009 < s.fault_20009,
            latency_s=latency,
        )


def _normal_quantile(p: float) -> float:
    """Standard normal inverse CDF (statistics.NormalDist is exact enough and in the stdlib)."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)
