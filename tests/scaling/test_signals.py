"""The per-model scaling signals on the gateway's /metrics, fed by real requests, and the
orchestrator decisions on /admin/actions."""

from __future__ import annotations

import asyncio
import math
import re
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer

from switchgear.plugins.manager import make_plugin_manager
from switchgear.proxy import keys
from switchgear.proxy.app import create_app
from switchgear.proxy.capacity import Capacity, forecast_rps
from switchgear.settings import parse_settings
from switchgear.settings.scaling import ScalingSection
from switchgear.types import Observation, ScaleRequest
from tests.fakes.upstream import FakeUpstream, Fault
from tests.helpers import poll_until
from tests.scaling.k8s_double import KubeDouble

ADMIN = {"Authorization": "Bearer adm"}


def gauge(text: str, name: str, model: str) -> float | None:
    m = re.search(rf'^{name}{{model="{re.escape(model)}"}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else None


def test_forecast_follows_a_rising_series():
    flat = forecast_rps([5.0] * 60, 120, 1.0)
    rising = forecast_rps([i / 10 for i in range(60)], 120, 1.0)
    assert abs(flat - 5.0) < 1e-6
    assert rising > 5.9  # extrapolated past the last point


def test_capacity_learns_from_latency():
    clock = [1000.0]
    cap = Capacity(ScalingSection(window_s=10, target_latency_s=1.0), clock=lambda: clock[0])
    for i in range(80):  # 8 rps, all within 1 s: one replica handles 8 rps
        cap.observe(Observation("b1", "m", "dc", 200, 0.2, ts=990 + i / 8))
    assert cap.desired("m")[2] == 8.0
    clock[0] = 1030.0
    for i in range(100):  # now 10 rps and slow: past capacity, which stays at most 8
        cap.observe(Observation("b1", "m", "dc", 200, 1.5, ts=1020 + i / 10))
    want, fc, capacity = cap.desired("m")
    assert capacity == 8.0 and fc > 8 and want == 2


async def test_gauges_on_metrics(http: aiohttp.ClientSession):
    async with FakeUpstream(model="m1", name="a") as up:
        settings = parse_settings({
            "backends": [{"id": "a", "model": "m1", "url": up.url}],
            "scaling": {"target_latency_s": 5.0, "window_s": 60},
        })  # fmt: skip
        server = TestServer(create_app(settings), host="127.0.0.1")
        await server.start_server()
        try:
            up.always = Fault(first_delay=1.0)
            body = {"model": "m1", "messages": [{"role": "user", "content": "hi"}]}
            url = server.make_url("/v1/chat/completions")
            tasks = [asyncio.ensure_future(http.post(url, json=body)) for _ in range(2)]

            async def in_flight() -> bool:
                async with http.get(server.make_url("/metrics")) as resp:
                    text = await resp.text()
                return gauge(text, "switchgear_model_requests_in_flight", "m1") == 2

            await poll_until(in_flight, within=5, what="two requests in flight")
            for t in tasks:
                (await t).close()
            up.always = None
            for _ in range(5):
                async with http.post(url, json=body) as resp:
                    assert resp.status == 200
            async with http.get(server.make_url("/metrics")) as resp:
                text = await resp.text()
            assert gauge(text, "switchgear_model_requests_in_flight", "m1") == 0
            assert gauge(text, "switchgear_model_queue_depth", "m1") == 0
            fc = gauge(text, "switchgear_model_forecast_rps", "m1") or 0.0
            cap = gauge(text, "switchgear_model_capacity_rps", "m1") or 0.0
            want = gauge(text, "switchgear_model_desired_replicas", "m1")
            assert fc > 0 and cap == 1.0  # 7 answers in 60 s teach nothing above the default
            assert want == math.ceil(fc / cap - 1e-9)
        finally:
            await server.close()


async def test_decisions_on_admin_actions(
    kube: tuple[KubeDouble, str], tmp_path: Path, http: aiohttp.ClientSession
):
    double, url = kube
    (tmp_path / "t").write_text("k8s-token")
    settings = parse_settings({
        "auth": {"admin_key": "adm"},
        "plugins": {"modules": ["switchgear.default_plugins.k8s_scaler"]},
        "scaling": {"kubernetes": {"auth": "token", "host": url, "namespace": "ml",
                                   "token_file": str(tmp_path / "t"),
                                   "targets": {"model-a": {"name": "worker-a"}}},
                    "cooldown_s": 0},
    })  # fmt: skip
    pm = make_plugin_manager(settings=settings, load_entrypoints=False)
    server = TestServer(create_app(settings, plugin_manager=pm), host="127.0.0.1")
    await server.start_server()
    try:
        plugin = pm.get_plugin("switchgear.default_plugins.k8s_scaler")
        await poll_until(lambda: plugin.healthy is not None, within=10, what="start-up check")
        assert plugin.healthy == ""  # the start-up check reached the API
        res = await plugin.scale(ScaleRequest("model-a", 2, 1, "detector"))
        assert res.replicas == 2
        async with http.get(server.make_url("/admin/actions"), headers=ADMIN) as resp:
            actions = (await resp.json())["actions"]
        assert actions[0]["kind"] == "scale_up" and actions[0]["target"] == "model-a"
        assert "asked 2" in actions[0]["reason"] and actions[0]["detail"]["reached"] == 2
        assert server.app[keys.SCALE_DECISIONS][0] is plugin.decisions
        async with http.get(server.make_url("/metrics")) as resp:
            text = await resp.text()
        assert 'switchgear_scale_decisions_total{kind="scale_up",model="model-a"} 1.0' in text
        async with http.get(server.make_url("/admin/dashboard.json"), headers=ADMIN) as resp:
            feed = await resp.json()
        assert [a["kind"] for a in feed["actions"]] == ["scale_up"]
        assert feed["actions"][0]["detail"]["orchestrator"] == "kubernetes"
    finally:
        await server.close()


def test_observations_stay_within_the_window():
    cap = Capacity(ScalingSection(window_s=10))
    for i in range(1000):
        cap.observe(Observation("b1", "m", "dc", 200, 0.1, ts=1000 + i))
    assert len(cap.seen["m"]) == 11  # the last 10 s, both ends included
