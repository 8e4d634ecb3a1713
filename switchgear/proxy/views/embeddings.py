"""POST /v1/embeddings (passed through; never streamed)."""

from __future__ import annotations

from aiohttp import web

from switchgear.proxy.dispatch import dispatch


async def embeddings(request: web.Request) -> web.StreamResponse:
    return await dispatch(request, "embeddings")


def setup(app: web.Application) -> None:
    app.router.add_post("/v1/embeddings", embeddings)
