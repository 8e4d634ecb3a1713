"""An example switchgear plugin, installed with ``switchgear plugins install PATH``.

* ``rewrite_request`` tags every upstream request with ``metadata.switchgear_example`` and
  sets ``user`` when the client sent none, so backends can tell gateway traffic apart.
* ``register_routes`` adds ``GET /example/hello``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from switchgear import hookimpl

MARKER = "switchgear-plugin-example"


@hookimpl
def rewrite_request(ctx: Any, body: dict[str, Any], backend: Any) -> dict[str, Any]:
    metadata = {**(body.get("metadata") or {}), "switchgear_example": MARKER}
    return {**body, "metadata": metadata, "user": body.get("user") or MARKER}


async def hello(request: web.Request) -> web.Response:
    return web.json_response({"hello": "from switchgear-plugin-example"})


@hookimpl
def register_routes(register: Callable[[str, str, Callable[..., Any]], None]) -> None:
    register("GET", "/example/hello", hello)
