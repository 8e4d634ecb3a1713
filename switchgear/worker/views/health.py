"""GET /health (loading / ready / swapping / failed) and GET /metrics (Prometheus text)."""

from __future__ import annotations

from aiohttp import web

from switchgear.worker.keys import METRICS, SLOT
from switchgear.worker.metrics import CONTENT_TYPE
from switchgear.worker.views.common import json_response


async def health(request: web.Request) -> web.Response:
    slot = request.app[SLOT]
    body: dict[str, object] = {"status": slot.state}
    if slot.engine is not None:
        body["model"] = slot.engine.bundle.name
        body["quantization"] = slot.engine.bundle.quantization
        body["path"] = slot.engine.bundle.spec.model_name_or_path
    if slot.error:
        body["error"] = slot.error
    return json_response(body, 200 if slot.state in ("ready", "swapping") else 503)


async def metrics(request: web.Request) -> web.Response:
    slot = request.app[SLOT]
    m = request.app[METRICS]
    if slot.engine is not None:
        m.set_queue_depth(slot.engine.load)
    return web.Response(body=m.render(), headers={"Content-Type": CONTENT_TYPE})
