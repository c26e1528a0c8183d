"""The emulator as a process whose deletions survive SIGKILL: a test helper for restart faults.

``python -m tests.runner.fault_durable_emulator --journal FILE [emulator options]`` serves the
same emulator as ``bulkops emulator`` (same options, same dataset for the same preset and seed
number) and appends every deletion it applies to FILE, one JSON line each, *before* the response
leaves — so a process killed at any instant has journaled every deletion a client was told about.
On start it replays the journal onto the freshly generated dataset, the way a real server keeps
its data across a restart: what was deleted stays deleted, what was never answered is still there.

The journal is also the ledger across incarnations: each line names the process that applied it,
so a test counts every deletion of every incarnation, exactly once each.

Only v1 messages and participants are replayed (the kinds whose deletes are synchronous); any
other kind in a journal is an error, so a test cannot silently rely on state that was not kept.
The emulator itself has no save/load of its state — see docs/reliability.md.

Its standard output says when it listens (``bulkops emulator listening on URL``) and, with
``--announce-deletions``, how many deletions it has journaled after each request that added
some (``deleted N``): lines a test waits for instead of polling the port or the ledger.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from runner.emulator import EMULATOR_KEY, Emulator, SeedError, SettingsError, build_app
from runner.emulator.cli import dataset_from_args, parser, settings_from_args

Handler = Any  # aiohttp's middleware handler type is not exported in a stable place


def replay(emu: Emulator, journal: Path) -> int:
    """Apply every journaled deletion to ``emu``'s store; returns how many were applied."""
    if not journal.exists():
        return 0
    applied = 0
    store = emu.store
    for line in journal.read_text().splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        conv = store.conversations.get(rec["conversation_sid"] or "")
        if rec["kind"] == "message" and conv is not None:
            index = store.message_position(conv, rec["id"])
            if index is None or not store.delete_message(conv, index):
                raise SystemExit(f"journal replays a deletion twice: {rec['id']}")
        elif rec["kind"] == "participant" and conv is not None:
            if not store.delete_participant(conv, rec["id"]):
                raise SystemExit(f"journal replays a deletion twice: {rec['id']}")
        else:
            raise SystemExit(f"journal holds a deletion this helper cannot replay: {rec}")
        applied += 1
    return applied


def journaling(emu: Emulator, journal: Path, announce: bool = False) -> Any:
    """Middleware appending each new ledger deletion to ``journal`` before the response goes
    (and, if ``announce``, printing how many there are so far)."""
    fd = os.open(journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    written = 0
    pid = os.getpid()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal written
        response: web.StreamResponse = await handler(request)
        records = list(emu.ledger.iter_deletions())
        fresh = records[written:]
        written = len(records)
        if fresh:
            # One write(2) per request: in the kernel's page cache as soon as it returns, which
            # is all a SIGKILL (as opposed to a power cut) can threaten.
            lines = (
                json.dumps({**rec._asdict(), "pid": pid}, separators=(",", ":")) + "\n"
                for rec in fresh
            )
            os.write(fd, "".join(lines).encode())
            if announce:
                print(f"deleted {written}", flush=True)
        return response

    return middleware


async def serve(app: web.Application, host: str, port: int) -> None:
    """Serve ``app`` on host:port until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_address=True).start()
        print(f"bulkops emulator listening on http://{host}:{port}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    """Parse ``--journal FILE`` plus the emulator's own options, replay, serve."""
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--journal", type=Path, required=True)
    own.add_argument("--announce-deletions", action="store_true")
    known, rest = own.parse_known_args(argv)
    try:
        args = parser().parse_args(rest)
        settings = settings_from_args(args)
        dataset = dataset_from_args(args)
    except (SettingsError, SeedError) as exc:
        print(f"fault_durable_emulator: error: {exc}", file=sys.stderr)
        return 2
    app = build_app(settings, dataset)
    emu = app[EMULATOR_KEY]
    applied = replay(emu, known.journal)
    print(f"replayed {applied} deletions", flush=True)
    app.middlewares.insert(0, journaling(emu, known.journal, known.announce_deletions))
    asyncio.run(serve(app, args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
