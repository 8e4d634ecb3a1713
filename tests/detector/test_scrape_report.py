"""Scraping a backend's /metrics over HTTP, and the admin/metrics views."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from switchgear.default_plugins.detectors import baseline
from switchgear.detector.engine import DetectorEngine
from switchgear.detector.events import SeriesKey
from switchgear.detector.report import DetectorMetrics, actions_payload, anomalies_payload
from switchgear.detector.scrape import metrics_url, scrape_once
from switchgear.settings.detector import DetectorSettings
from switchgear.types import Action, AnomalyEvent, Backend

VLLM = 'vllm:num_requests_waiting{model_name="m"} 4\nvllm:num_requests_running 2\n'


async def test_scrape_backends_into_series(aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    app = web.Application()

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text=VLLM)

    app.router.add_get("/metrics", metrics)
    server = await aiohttp_server(app)
    good = Backend("vllm-1", "m", str(server.make_url("/v1")))
    dead = Backend("dead", "m", "http://127.0.0.1:9/v1")
    assert metrics_url(good) == str(server.make_url("/metrics"))
    engine = DetectorEngine(DetectorSettings(), {"baseline": baseline})
    async with aiohttp.ClientSession() as session:
        assert await scrape_once(engine, session, [good, dead], timeout_s=2.0) == 1
    values = engine.store.tick()
    assert values[SeriesKey("vllm-1", "m", "queue_depth")] == 4.0
    assert values[SeriesKey("vllm-1", "m", "running")] == 2.0


def test_admin_payloads_and_metrics() -> None:
    opened = AnomalyEvent("e1", "ttft", 0.8, 1.0, "b1", "m", contributions={"baseline": 0.8})
    closed = AnomalyEvent("e0", "ttft", 0.7, 0.5, "b1", "m", ended_at=0.9)
    body = anomalies_payload([opened], [closed])
    assert body["open"][0]["id"] == "e1" and body["open"][0]["open"] is True
    assert body["recent"][0]["ended_at"] == 0.9
    act = Action("eject", "b1", "ttft anomaly", "e1", detail={"score": 0.8})
    assert actions_payload([act])["actions"][0]["detail"] == {"score": 0.8}
    registry = CollectorRegistry()
    metrics = DetectorMetrics(registry)
    metrics.on_event(opened, 1)
    metrics.on_actions([act])
    text = generate_latest(registry).decode()
    assert 'switchgear_anomalies_total{metric="ttft"} 1.0' in text
    assert 'switchgear_actions_total{kind="eject"} 1.0' in text
    assert "switchgear_anomalies_open 1.0" in text
