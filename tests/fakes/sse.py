"""An upstream that streams ``text/event-stream`` in pieces the test chooses, one write each.

:func:`sse_server` starts a real aiohttp server on loopback; every ``GET /`` writes what
``pieces()`` yields, each piece as one network write, then ends the body. A test that must
decide when each piece goes out yields from a queue it fills itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web
from aiohttp.test_utils import TestServer

Pieces = Callable[[], AsyncIterator[bytes]]


async def sse_server(pieces: Pieces) -> TestServer:
    """A started server streaming ``pieces()`` per request; the caller closes it."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        async for piece in pieces():
            await resp.write(piece)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server
