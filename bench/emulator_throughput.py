"""How many simple DELETEs per second the emulator serves (no limits, no faults).

Starts ``bulkops emulator`` (the ``runner.emulator.main`` body) in a subprocess so server and
client each get a core, lists every message SID through the admin API, then deletes them with a
pool of aiohttp connections. Prints requests/s of wall time and requests per second of the
server's own CPU time (the figure that says whether the emulator can be a bottleneck).

    python bench/emulator_throughput.py [--messages 60000] [--connections 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from runner.emulator import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN  # noqa: E402


def _start(conversations: int, per_conversation: int) -> tuple[subprocess.Popen[str], str]:
    args = ["--generate", "scale", "--conversations", str(conversations),
            "--messages-per-conversation", str(per_conversation),
            "--conversation-aps", "none", "--service-aps", "none",
            "--account-concurrency", "none", "--no-request-log"]
    code = f"import sys; from runner.emulator import main; sys.exit(main({args!r}))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWILIO_")}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("bulkops emulator listening on "):
        proc.kill()
        raise SystemExit(f"emulator did not start: {line!r}")
    return proc, line.rsplit(" ", 1)[1]


async def _blast(url: str, connections: int) -> tuple[int, float, dict[int, int]]:
    headers = {"Authorization": aiohttp.encode_basic_auth(DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN)}
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(url, headers=headers, connector=connector) as session:
        async with session.get("/_emulator/resources", params={"kind": "message"}) as r:
            items = (await r.json())["items"]
        paths = [f"/v1/Services/{m['service_sid']}/Conversations/{m['conversation_sid']}"
                 f"/Messages/{m['sid']}" for m in items]
        statuses: dict[int, int] = {}
        queue: asyncio.Queue[str] = asyncio.Queue()
        for path in paths:
            queue.put_nowait(path)

        async def worker() -> None:
            while not queue.empty():
                path = queue.get_nowait()
                async with session.delete(path) as response:
                    statuses[response.status] = statuses.get(response.status, 0) + 1

        began = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            for _ in range(connections):
                tg.create_task(worker())
        return len(paths), time.perf_counter() - began, statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=60_000)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    conversations = max(1, args.messages // 100)
    proc, url = _start(conversations, args.messages // conversations)
    try:
        server = psutil.Process(proc.pid)
        cpu_before = sum(server.cpu_times()[:2])
        count, elapsed, statuses = asyncio.run(_blast(url, args.connections))
        cpu = sum(server.cpu_times()[:2]) - cpu_before
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    print(f"emulator DELETE throughput: {count} deletes in {elapsed:.2f} s = "
          f"{count / elapsed:,.0f}/s wall; server CPU {cpu:.2f} s = {count / cpu:,.0f}/s per "
          f"server core-second; statuses {statuses}")


if __name__ == "__main__":
    main()
