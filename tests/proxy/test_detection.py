"""The detector wired into the gateway: admin API, metrics, control surface, supervision.

Fast tests against fake upstreams; tests/detector_e2e runs the same wiring against real
workers and faults.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest

from switchgear.detector.events import SeriesKey
from switchgear.errors import ConfigError
from switchgear.plugins.hookspecs import hookimpl
from switchgear.proxy import keys
from switchgear.types import ScaleRequest, ScaleResult
from tests.helpers import poll_until as wait_for
from tests.proxy.conftest import GATEWAY_PLUGINS, backends, gateway_pm

ADMIN = {"Authorization": "Bearer adm"}
PLUGINS = (
    *GATEWAY_PLUGINS,
    "switchgear.default_plugins.detectors",
    "switchgear.default_plugins.policy",
)
DETECTOR: dict[str, Any] = {
    "enabled": True,
    "resolution_s": 0.05,
    "scrape_interval_s": 0.05,
    "detectors": {"*": "zscore"},
    "restart_backoff_s": 0.01,
    "events": {"open_after": 2, "close_after": 2},
    # events eject here (by default only the outlier rule does)
    "policy": {"eject_metrics": ["latency_p95", "ttft", "error_rate"]},
}


def pm(*extra: object) -> Any:
    from switchgear.plugins.manager import make_plugin_manager

    manager = make_plugin_manager(load_entrypoints=False, builtins=PLUGINS)
    for plugin in extra:
        manager.register(plugin)
    return manager


async def get(http: aiohttp.ClientSession, url: str, **kw: Any) -> Any:
    async with http.get(url, **kw) as resp:
        return resp.status, await resp.json()


async def test_disabled_detector_answers_empty_lists(
    gateway: Any, upstream: Any, http: Any
) -> None:
    up = await upstream("m1")
    gw = await gateway({"backends": backends(up), "auth": {"admin_key": "adm"}}, pm=gateway_pm())
    assert keys.DETECTOR not in gw.app
    assert await get(http, gw.url + "/admin/anomalies", headers=ADMIN) == (
        200,
        {"open": [], "recent": []},
    )
    assert await get(http, gw.url + "/admin/actions", headers=ADMIN) == (200, {"actions": []})
    status, body = await get(http, gw.url + "/admin/series", headers=ADMIN)
    assert body == {"resolution_s": 1.0, "series": []}
    assert (await get(http, gw.url + "/admin/anomalies"))[0] == 401  # admin key needed
    assert (await get(http, gw.url + "/admin/series?since=x", headers=ADMIN))[0] == 400


async def test_unknown_detector_name_stops_the_start(gateway: Any, upstream: Any) -> None:
    up = await upstream("m1")
    config = {"backends": backends(up), "detector": {**DETECTOR, "detectors": {"*": "nope"}}}
    with pytest.raises(ConfigError, match="unknown detector nope"):
        await gateway(config, pm=pm())


async def test_observations_events_and_actions_reach_the_admin_api(
    gateway: Any, upstream: Any, http: Any
) -> None:
    up, up2 = await upstream("m1"), await upstream("m2", name="b")
    config = {
        "backends": backends(up, id="b1") + backends(up2, id="b2"),
        # with a fallback chain the only replica of m1 may be ejected (the guards)
        "models": {"m1": {"fallback": ["m2"]}, "m2": {}},
        "auth": {"admin_key": "adm"},
        "detector": DETECTOR,
    }
    gw = await gateway(config, pm=pm())
    service = gw.app[keys.DETECTOR]
    async with gw.openai() as client:
        for _ in range(3):
            await client.chat.completions.create(
                model="m1", messages=[{"role": "user", "content": "x"}]
            )
    await wait_for(lambda: len(service.engine.store.values(SeriesKey("b1", "m1", "rps"))) >= 3)
    status, body = await get(http, gw.url + "/admin/series?since=0", headers=ADMIN)
    assert status == 200 and body["resolution_s"] == 0.05
    rows = {(s["backend_id"], s["model"], s["metric"]): s["points"] for s in body["series"]}
    assert {"rps", "error_rate", "latency_p50", "latency_p95"} <= {m for _, _, m in rows}
    ts, value, score = rows[("b1", "m1", "rps")][-1]
    assert ts > 0 and value >= 0 and (score is None or 0 <= score <= 1)
    future = time.time() + 3600
    assert (await get(http, f"{gw.url}/admin/series?since={future}", headers=ADMIN))[1][
        "series"
    ] == []
    # an event that opens goes through the on_anomaly hook to the built-in policy
    key = SeriesKey("b1", "m1", "ttft")  # no ttft series (no streams): nothing to compare
    event = None
    while event is None:
        event = service.engine.events.observe(key, 1.0, time.time())
    service._on_event(event)
    await wait_for(lambda: len(service.actions) >= 1)
    assert gw.app[keys.BACKEND_STATE].describe("b1")["ejected"]
    _, anomalies = await get(http, gw.url + "/admin/anomalies", headers=ADMIN)
    assert [e["id"] for e in anomalies["open"]] == [event.id]
    assert anomalies["open"][0]["ended_at"] is None and anomalies["recent"] == []
    _, actions = await get(http, gw.url + "/admin/actions", headers=ADMIN)
    first = actions["actions"][-1]
    assert (first["kind"], first["target"], first["event_id"]) == ("eject", "b1", event.id)
    assert set(first) == {"kind", "target", "reason", "event_id", "ts", "detail"}
    async with http.get(gw.url + "/metrics") as resp:
        text = await resp.text()
    assert 'switchgear_actions_total{kind="eject"} 1.0' in text
    assert "switchgear_anomalies_open" in text


async def test_set_fallback_sends_the_model_down_its_chain(gateway: Any, upstream: Any) -> None:
    m1, m2 = await upstream("m1", name="a"), await upstream("m2", name="b")
    config = {
        "backends": backends(m1, m2),
        "models": {"m1": {"fallback": ["m2"]}},
        "detector": DETECTOR,
    }
    gw = await gateway(config, pm=pm())
    control = gw.app[keys.DETECTOR].control
    async with gw.openai() as client:
        await control.set_fallback("m1", True)
        raw = await client.chat.completions.with_raw_response.create(
            model="m1", messages=[{"role": "user", "content": "x"}]
        )
        assert raw.headers["x-switchgear-fallback"] == "m1 -> m2"
        assert raw.parse().model == "m2"
        await control.set_fallback("m1", False)
        answer = await client.chat.completions.create(
            model="m1", messages=[{"role": "user", "content": "x"}]
        )
        assert answer.model == "m1"


class RecordingScaler:
    def __init__(self) -> None:
        self.requests: list[ScaleRequest] = []

    @hookimpl
    def scale(self, request: ScaleRequest) -> ScaleResult:
        self.requests.append(request)
        return ScaleResult(request.model, request.replicas, ("new",), ())


async def test_probe_restart_and_scale_go_through_the_gateway(gateway: Any, upstream: Any) -> None:
    up = await upstream("m1")
    scaler = RecordingScaler()
    config = {"backends": backends(up, id="b1"), "detector": DETECTOR}
    gw = await gateway(config, pm=pm(scaler))
    control = gw.app[keys.DETECTOR].control
    assert control.registry is gw.app[keys.REGISTRY]
    assert [b.id for b in control.backends("m1")] == ["b1"]
    assert await control.probe("b1") is True  # no /health (404), /v1/models answers
    assert await control.probe("nope") is False
    await control.eject("b1", "test")
    assert gw.app[keys.BACKEND_STATE].describe("b1")["ejected"] == "detector: test"
    await control.readmit("b1")
    assert gw.app[keys.BACKEND_STATE].describe("b1")["ejected"] is None
    await control.restart("b1")
    result = await control.scale("m1", 3)
    assert result == ScaleResult("m1", 3, ("new",), ())
    assert [(r.replicas, r.current, r.reason) for r in scaler.requests] == [
        (1, 1, "restart:b1"),
        (3, 1, "detector"),
    ]
    await up.close()
    assert await control.probe("b1") is False


async def test_a_crashing_detector_task_restarts_and_the_gateway_keeps_serving(
    gateway: Any, upstream: Any
) -> None:
    up = await upstream("m1")
    gw = await gateway({"backends": backends(up), "detector": DETECTOR}, pm=pm())
    service = gw.app[keys.DETECTOR]
    targets = service.targets

    def broken() -> Any:
        raise RuntimeError("scraper bug")

    service.targets = broken
    await wait_for(lambda: service.restarts.get("scraper", 0) >= 2)
    async with gw.openai() as client:
        answer = await client.chat.completions.create(
            model="m1", messages=[{"role": "user", "content": "x"}]
        )
    assert answer.model == "m1"
    service.targets = targets
    ticks = service.engine.ticks
    await wait_for(lambda: service.engine.ticks > ticks + 2)
