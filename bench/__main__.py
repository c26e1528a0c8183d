"""``python -m bench [SCENARIO...] [--quick] [--json FILE]``: run the scenarios, print a table."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench import rate
from bench.goals import Figures, save, table

Scenario = Callable[[bool], Figures]


def scenarios() -> dict[str, Scenario]:
    """Every scenario by name, in the order a full run takes them."""
    from bench import fanout, overhead, peers, resume10m, resume_pacing, scale, services

    return {
        "rate-known": rate.rate_known,
        "rate-unknown": rate.rate_unknown,
        "rate-shift": rate.rate_shift,
        "resume-pacing": resume_pacing.resume_pacing,
        "fanout": fanout.fanout,
        "services": services.services,
        "overhead": overhead.overhead,
        "scale": scale.scale,
        "peers": peers.peers,
        "resume-10m": resume10m.resume_10m,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the chosen scenarios (all by default); exit 0 even when a goal is missed."""
    known = scenarios()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("scenario", nargs="*", choices=[*known, []], metavar="SCENARIO",
                        help=f"any of {', '.join(known)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller datasets: all in < 3 min")
    parser.add_argument("--json", type=Path, help="write the figures (and goals) here")
    args = parser.parse_args(argv)
    figures: Figures = {}
    for name in args.scenario or list(known):
        began = time.perf_counter()
        print(f"== {name}", file=sys.stderr, flush=True)
        prefix = name.replace("-", "_")
        for key, value in known[name](args.quick).items():
            figures[f"{prefix}.{key}"] = value
        figures[f"{prefix}.bench_s"] = round(time.perf_counter() - began, 1)
        print(table({k: v for k, v in figures.items() if k.startswith(prefix + ".")}),
              file=sys.stderr, flush=True)
    print(table(figures))
    if args.json is not None:
        save(figures, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
