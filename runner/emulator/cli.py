"""``bulkops emulator``: serve the emulator on 127.0.0.1 until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import sys
from collections.abc import Callable
from typing import Any

from .dataset import Dataset, SeedError, generate, load_seed
from .server import running_emulator
from .settings import EmulatorSettings, SettingsError


class _Parser(argparse.ArgumentParser):
    """argparse that reports through our exit code 2 without a traceback."""

    def error(self, message: str) -> Any:
        self.print_usage(sys.stderr)
        raise SettingsError(message)


def _product_rate(text: str) -> tuple[str, float, int]:
    try:
        product, rate, burst = text.split(":")
        return product, float(rate), int(burst)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected PRODUCT:RATE:BURST, e.g. conversations:50:10, not {text!r}") from None


_OFF = -1.0  # "none" on the command line: distinct from "not given" (None keeps the default)


def _limit(text: str) -> float:
    if text.lower() in ("none", "off", "0"):
        return _OFF
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', not {text!r}") from None


def parser() -> argparse.ArgumentParser:
    """The argument parser of ``bulkops emulator``."""
    p = _Parser(prog="bulkops emulator",
                description="Serve a Twilio-compatible emulator on 127.0.0.1.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    data = p.add_mutually_exclusive_group()
    data.add_argument("--seed", dest="seed_file", metavar="FILE", help="YAML or JSON seed file")
    data.add_argument("--generate", metavar="PRESET", default=None,
                      help="demo (default), small, tiny, empty or scale")
    p.add_argument("--seed-number", type=int, default=0, help="RNG seed for data and faults")
    p.add_argument("--conversations", type=int, help="scale preset: conversations")
    p.add_argument("--messages-per-conversation", type=int, help="scale preset: messages each")
    p.add_argument("--services", type=int,
                   help="scale preset: named Services the conversations are spread over")
    p.add_argument("--account-sid")
    p.add_argument("--auth-token")
    p.add_argument("--api-key")
    p.add_argument("--api-secret")
    p.add_argument("--account-concurrency", type=_limit)
    p.add_argument("--conversation-aps", type=_limit)
    p.add_argument("--service-aps", type=_limit)
    p.add_argument("--product-rate", type=_product_rate, action="append", default=[],
                   metavar="PRODUCT:RATE:BURST")
    p.add_argument("--retry-after", choices=("seconds", "http-date", "absent"))
    p.add_argument("--operation-pending", type=float, dest="operation_pending_s")
    p.add_argument("--operation-running", type=float, dest="operation_running_s")
    p.add_argument("--operation-failure-rate", type=float)
    for fault in ("500", "503", "reset", "slow", "bad-body", "20009"):
        p.add_argument(f"--fault-{fault}", type=float, dest=f"fault_{fault.replace('-', '_')}",
                       metavar="P")
    p.add_argument("--slow-delay", type=float, dest="slow_delay_s")
    p.add_argument("--latency-median", type=float, dest="latency_median_s")
    p.add_argument("--latency-p99", type=float, dest="latency_p99_s")
    p.add_argument("--no-request-log", action="store_true")
    p.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio",
                   help="the event loop to serve on (default: asyncio's own)")
    return p


def settings_from_args(args: argparse.Namespace) -> EmulatorSettings:
    """EmulatorSettings from the environment, overridden by the command line."""
    overrides: dict[str, Any] = {"seed": args.seed_number}
    for name in ("account_sid", "auth_token", "api_key", "api_secret", "retry_after",
                 "operation_pending_s", "operation_running_s", "operation_failure_rate",
                 "fault_500", "fault_503", "fault_reset", "fault_slow", "fault_bad_body",
                 "fault_20009", "slow_delay_s", "latency_median_s", "latency_p99_s"):
        value = getattr(args, name)
        if value is not None:
            overrides[name] = value
    for name in ("account_concurrency", "conversation_aps", "service_aps"):
        value = getattr(args, name)
        if value is not None:
            overrides[name] = None if value == _OFF else value
    if overrides.get("account_concurrency") is not None:
        overrides["account_concurrency"] = int(overrides["account_concurrency"])
    if args.product_rate:
        overrides["product_rate"] = {p: (r, b) for p, r, b in args.product_rate}
    if args.no_request_log:
        overrides["record_requests"] = False
    if args.generate in (None, "demo"):
        # the demo runs at human speed: operations take a second or two
        overrides.setdefault("operation_pending_s", 1.0)
        overrides.setdefault("operation_running_s", 1.0)
    return EmulatorSettings.from_env(**overrides)


def dataset_from_args(args: argparse.Namespace) -> Dataset:
    """The dataset the arguments name (the demo preset by default)."""
    if args.seed_file:
        return load_seed(args.seed_file)
    extra: dict[str, int] = {}
    if args.conversations is not None:
        extra["conversations"] = args.conversations
    if args.messages_per_conversation is not None:
        extra["messages_per_conversation"] = args.messages_per_conversation
    if args.services is not None:
        extra["services"] = args.services
    if extra and args.generate != "scale":
        flags = ", ".join("--" + name.replace("_", "-") for name in extra)
        raise SettingsError(f"{flags}: sizes of the scale preset; add --generate scale")
    return generate(args.generate or "demo", args.seed_number, **extra)


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory of the loop ``--loop`` names (None: asyncio's own); SettingsError when
    uvloop is asked for and cannot be imported."""
    if name != "uvloop":
        return None
    try:
        import uvloop
    except ImportError:
        raise SettingsError(
            "--loop uvloop: uvloop is not installed in this Python; pip install uvloop "
            "(Linux and macOS), or serve with --loop asyncio") from None
    return uvloop.new_event_loop


async def _serve(settings: EmulatorSettings, dataset: Dataset, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running_emulator(settings, dataset, port=port, host=host) as url:
        # The dataset and the store live as long as the process: frozen, no collection scans
        # them again (a full one over a million-message store stalled every request in flight).
        gc.freeze()
        print(f"bulkops emulator listening on {url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    """Run ``bulkops emulator``; 0 after a signal, 2 on bad arguments or seed data."""
    try:
        args = parser().parse_args(argv)
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            raise SettingsError("the emulator only listens on the loopback interface")
        settings = settings_from_args(args)
        dataset = dataset_from_args(args)
        loop_factory = _loop_factory(args.loop)
    except (SettingsError, SeedError) as exc:
        print(f"bulkops emulator: error: {exc}", file=sys.stderr)
        return 2
    except TypeError as exc:  # an override the chosen preset does not take
        print(f"bulkops emulator: error: {exc}", file=sys.stderr)
        return 2
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(_serve(settings, dataset, args.host, args.port))
    except OSError as exc:
        print(f"bulkops emulator: error: cannot listen on {args.host}:{args.port}: {exc}",
              file=sys.stderr)
        return 2
    return 0
