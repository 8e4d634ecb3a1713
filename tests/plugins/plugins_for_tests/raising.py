"""A plugin whose every hook fails: it must be logged and skipped, never fail a request."""

from __future__ import annotations

import asyncio
from typing import Any

from switchgear import hookimpl


@hookimpl(tryfirst=True)
def rewrite_request(ctx: Any, body: dict[str, Any], backend: Any) -> dict[str, Any]:
    raise RuntimeError("raising plugin: rewrite_request is broken")


@hookimpl(tryfirst=True)
def rewrite_response(ctx: Any, body: dict[str, Any], backend: Any) -> dict[str, Any]:
    raise RuntimeError("raising plugin: rewrite_response is broken")


@hookimpl(tryfirst=True)
def select_model(ctx: Any, models: Any) -> Any:
    raise RuntimeError("raising plugin: select_model is broken")


@hookimpl(tryfirst=True)
def adapter_for_backend(backend: Any) -> Any:
    raise RuntimeError("raising plugin: adapter_for_backend is broken")


@hookimpl
async def startup(app: Any) -> None:
    await asyncio.Event().wait()  # hangs forever: bounded by plugins.timeout
