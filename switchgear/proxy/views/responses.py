"""POST /v1/responses: the Responses API, on the chat-completions path (see ``proxy.responses``)."""

from __future__ import annotations

from aiohttp import web

from switchgear.proxy.dispatch import dispatch
from switchgear.proxy.responses import PATH


async def responses(request: web.Request) -> web.StreamResponse:
    return await dispatch(request, "chat.completions")


def setup(app: web.Application) -> None:
    app.router.add_post(PATH, responses)
