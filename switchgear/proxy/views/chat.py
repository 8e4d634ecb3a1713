"""POST /v1/chat/completions."""

from __future__ import annotations

from aiohttp import web

from switchgear.proxy.dispatch import dispatch


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await dispatch(request, "chat.completions")


def setup(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", chat_completions)
