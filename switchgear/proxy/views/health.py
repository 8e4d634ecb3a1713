"""GET /healthz (liveness), /readyz (some backend is available) and /metrics (Prometheus)."""

from __future__ import annotations

import os

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from switchgear.errors import NoHealthyBackend
from switchgear.proxy import keys


async def healthz(request: web.Request) -> web.Response:
    return web.Response(
        body=orjson.dumps({"status": "ok", "pid": os.getpid()}), content_type="application/json"
    )


async def readyz(request: web.Request) -> web.Response:
    registry, state = request.app[keys.REGISTRY], request.app[keys.BACKEND_STATE]
    available = sum(1 for b in registry.all_backends() if state.healthy(b.id))
    if not available:
        raise NoHealthyBackend("no backend is available")
    body = {"status": "ready", "backends": available, "degraded_discovery": registry.degraded}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def metrics(request: web.Request) -> web.Response:
    resp = web.Response(body=request.app[keys.METRICS].render())
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp


def setup(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
