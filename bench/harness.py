"""Processes and HTTP plumbing the scenarios share: servers, bulkops runs, the admin API.

Everything measured runs as its own process, so CPU time and peak memory are that program's
alone and the two cores are shared the same way for every program compared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.emulator import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN

ROOT = Path(__file__).resolve().parent.parent


def clean_env(url: str | None = None) -> dict[str, str]:
    """The environment of a child: the emulator's credentials, bulkops aimed at ``url``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "BULKOPS_"))}
    env |= {"TWILIO_ACCOUNT_SID": DEFAULT_ACCOUNT_SID, "TWILIO_AUTH_TOKEN": DEFAULT_AUTH_TOKEN}
    env["PYTHONPATH"] = str(ROOT)
    # An installed bulkops starts from compiled bytecode (pip compiles it), as aiohttp does here:
    # a child that may not write it recompiles bulkops' sources at every start (0.2 to 0.3 s of
    # CPU, seen in the profile of `overhead`), which the raw loop never pays.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if url is not None:
        env |= {"BULKOPS_CONVERSATIONS_URL": url, "BULKOPS_MEMORY_URL": url}
    return env


@contextmanager
def server(code: str, args: Sequence[str], banner: str) -> Iterator[str]:
    """A Python server in a subprocess that prints ``banner URL`` once listening."""
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=clean_env(),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith(banner):
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}")
    try:
        yield line.rsplit(" ", 1)[1]
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def emulator(*args: str) -> Any:
    """``bulkops emulator ARGS`` on a free port (a context manager yielding its URL)."""
    code = "import sys; from runner.emulator import main; sys.exit(main(sys.argv[1:]))"
    return server(code, ["--port", "0", *args], "bulkops emulator listening on ")


def noop_server(loop: str = "asyncio") -> Any:
    """The no-op server of :mod:`bench.noop` on ``loop`` (a context manager yielding its URL)."""
    return server(f"import bench.noop as n; n.main({loop!r})", [], "noop listening on ")


def get_json(url: str) -> Any:
    """GET a JSON document."""
    with urllib.request.urlopen(url, timeout=120) as resp:
        return json.loads(resp.read())


def post_json(url: str, body: Any) -> Any:
    """POST a JSON document, return the JSON answer."""
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def vm_hwm_mb(pid: int) -> float | None:
    """Peak RSS of a live process so far (``VmHWM``), in MB."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for row in status.splitlines():
        if row.startswith("VmHWM:"):
            return int(row.split()[1]) / 1024
    return None


@dataclass(frozen=True, slots=True)
class ChildRun:
    """How a measured process went: exit code, wall time, CPU time (user+sys), peak RSS."""

    exit_code: int
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    started: float  # epoch seconds, comparable with the emulator's ledger times


def run_child(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str],
    time_box: float | None = None,
    while_running: Callable[[float], None] | None = None,
) -> ChildRun:
    """Run ``argv`` to its end (or SIGTERM it after ``time_box`` s), measuring it.

    ``while_running(elapsed)`` is called about every 50 ms (to change settings mid-run).
    """
    with (cwd / "child.out").open("ab") as out:
        started = time.time()
        began = time.perf_counter()
        proc = subprocess.Popen(list(argv), cwd=cwd, env=env, stdout=out, stderr=out)
    peak = 0.0
    stopped = False
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        peak = max(peak, vm_hwm_mb(proc.pid) or 0.0)
        elapsed = time.perf_counter() - began
        if time_box is not None and elapsed > time_box and not stopped:
            proc.terminate()
            stopped = True
        if while_running is not None:
            while_running(elapsed)
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return ChildRun(
        exit_code=proc.returncode,
        wall_s=time.perf_counter() - began,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=peak,
        started=started,
    )


def bulkops(spec: Path, url: str, *extra: str, **kwargs: Any) -> ChildRun:
    """``python -m runner run SPEC`` against ``url`` in the spec's directory."""
    argv = [sys.executable, "-m", "runner", "run", str(spec), "--log-format", "json",
            "--log-level", "warning", *extra]
    return run_child(argv, cwd=spec.parent, env=clean_env(url), **kwargs)


def write_spec(directory: Path, name: str, body: str) -> Path:
    """A job spec file ``name.yaml`` holding ``body`` under the standard header."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(f"version: 1\nname: {name}\n{body}")
    return path


def message_manifest(url: str, path: Path, *, shuffle_seed: int | None = 0) -> int:
    """Write every message the emulator holds to a CSV manifest (shuffled, as an export from a
    data warehouse would be in no particular conversation order); returns the count."""
    import random

    items = get_json(f"{url}/_emulator/resources?kind=message")["items"]
    rows = [f"{m['sid']},{m['conversation_sid']}" for m in items]
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(rows)
    path.write_text("id,conversation_sid\n" + "\n".join(rows) + "\n")
    return len(rows)
