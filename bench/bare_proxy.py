"""The floor for an aiohttp gateway: a pass-through with no logic, one pooled ClientSession.

Every POST is forwarded to the same path on the upstream; the answer is relayed as it
arrives (streams chunk by chunk). ``bench/overhead.py`` runs it beside switchgear, so
switchgear's cost reads as a ratio against what aiohttp itself costs.

    .venv/bin/python bench/bare_proxy.py PORT UPSTREAM_URL
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

SESSION = web.AppKey("session", aiohttp.ClientSession)


async def session_ctx(app: web.Application) -> AsyncIterator[None]:
    app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    yield
    await app[SESSION].close()


def make_app(upstream: str) -> web.Application:
    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {"Content-Type": request.content_type}
        async with request.app[SESSION].post(
            upstream + request.path, data=body, headers=headers
        ) as up:
            resp = web.StreamResponse(status=up.status)
            resp.content_type = up.content_type
            await resp.prepare(request)
            async for data in up.content.iter_any():
                await resp.write(data)
            await resp.write_eof()
            return resp

    app = web.Application()
    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/{tail:.*}", forward)
    return app


def main() -> None:
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        import asyncio

        loop = asyncio.new_event_loop()
    port, upstream = int(sys.argv[1]), sys.argv[2].rstrip("/")
    web.run_app(
        make_app(upstream), host="127.0.0.1", port=port, access_log=None, print=None, loop=loop
    )


if __name__ == "__main__":
    main()
