"""The detector's admin API (needs the admin key, like every /admin route).

- ``GET /admin/anomalies`` → ``{"open": [event], "recent": [event]}`` (recent newest first);
  an event is ``{id, metric, score, started_at, ended_at|null, backend_id, model,
  contributions, open}``.
- ``GET /admin/actions`` → ``{"actions": [{kind, target, reason, event_id, ts, detail}]}``,
  newest first.
- ``GET /admin/series?since=<unix ts>`` → ``{"resolution_s", "series": [{backend_id, model,
  metric, points: [[ts, value, score|null]]}]}``, points after ``since`` (default: all kept).

With the detector disabled the lists are empty. The detector's Prometheus series (events
opened and closed by metric, actions by kind, open events) are on the gateway's ``/metrics``.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from switchgear.detector.report import actions_payload, anomalies_payload, series_payload
from switchgear.errors import InvalidRequest
from switchgear.proxy import keys


def _json(data: Any) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json")


async def anomalies(request: web.Request) -> web.Response:
    service = request.app.get(keys.DETECTOR)
    if service is None:
        return _json({"open": [], "recent": []})
    engine = service.engine
    return _json(anomalies_payload(engine.open_events(), engine.recent_events()))


async def actions(request: web.Request) -> web.Response:
    service = request.app.get(keys.DETECTOR)
    taken = list(service.actions) if service is not None else []
    for log in request.app.get(keys.SCALE_DECISIONS, []):  # orchestrator scale decisions
        taken.extend(log.actions)
    taken.sort(key=lambda a: a.ts)
    return _json(actions_payload(taken))


async def series(request: web.Request) -> web.Response:
    raw = request.query.get("since")
    try:
        since = float(raw) if raw else None
    except ValueError:
        raise InvalidRequest("'since' must be a unix timestamp", param="since") from None
    service = request.app.get(keys.DETECTOR)
    if service is None:
        resolution = request.app[keys.SETTINGS].detector.resolution_s
        return _json({"resolution_s": resolution, "series": []})
    return _json(series_payload(service.engine, since))


def setup(app: web.Application) -> None:
    app.router.add_get("/admin/anomalies", anomalies)
    app.router.add_get("/admin/actions", actions)
    app.router.add_get("/admin/series", series)
