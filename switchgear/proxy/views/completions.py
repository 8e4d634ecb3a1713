"""POST /v1/completions (legacy text completions)."""

from __future__ import annotations

from aiohttp import web

from switchgear.proxy.dispatch import dispatch


async def completions(request: web.Request) -> web.StreamResponse:
    return await dispatch(request, "completions")


def setup(app: web.Application) -> None:
    app.router.add_post("/v1/completions", completions)
