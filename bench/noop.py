"""A minimal aiohttp server for ``overhead`` and ``scale``: every DELETE is answered 204.

``overhead`` runs it on uvloop: on asyncio's own loop it spent as much CPU per request as the
clients it served, so the fastest client only matched the server's pace (both sides near one
core each on a 2-core machine) and the figure measured the server.

``GET /_stats`` returns how many DELETEs it served and when the first and last arrived (epoch
seconds), so a client's throughput is measured the same way whoever the client is.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

STATS = web.AppKey("stats", dict)


async def delete(request: web.Request) -> web.Response:
    """Answer 204, counting."""
    stats = request.app[STATS]
    now = time.time()
    if not stats["deletes"]:
        stats["first"] = now
    stats["deletes"] += 1
    stats["last"] = now
    return web.Response(status=204)


async def get_stats(request: web.Request) -> web.Response:
    """The counters as JSON."""
    return web.json_response(request.app[STATS])


async def serve() -> None:
    """Serve on a free port of 127.0.0.1 until killed."""
    app = web.Application()
    app[STATS] = {"deletes": 0, "first": None, "last": None}
    app.router.add_get("/_stats", get_stats)
    app.router.add_route("DELETE", "/{tail:.*}", delete)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(f"noop listening on http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
    await asyncio.Event().wait()


def main(loop: str = "asyncio") -> None:
    """Entry point of the subprocess: serve on asyncio's own loop or on uvloop."""
    if loop == "uvloop":
        import uvloop

        uvloop.run(serve())
    else:
        asyncio.run(serve())
