"""End to end: the detector in the gateway acts on real tiny-model workers.

Three ``switchgear worker`` processes (two replicas of ``tiny``, one of ``tiny-fb``, the
fallback of ``tiny``) serve a gateway created in-process; the official ``openai`` client
puts steady load on it while a test injects a fault into a worker (``POST /admin/faults``)
and waits, with deadlines, for what the detector must do: eject, fall back, restart, scale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from switchgear.detector.events import SeriesKey
from switchgear.plugins.manager import make_plugin_manager
from switchgear.proxy import keys
from switchgear.proxy.app import create_app
from switchgear.settings import Settings
from tests.detector_e2e.conftest import ADMIN_HEADERS, Load, Worker, gateway_settings, until

pytestmark = pytest.mark.slow

DELAY_MS = 2000.0  # the probe timeout (0.5 s) keeps a backend this slow ejected


async def gateway(aiohttp_client: Any, settings: Settings) -> Any:
    pm = make_plugin_manager(settings=settings, load_entrypoints=False)
    return await aiohttp_client(create_app(settings, plugin_manager=pm))


async def admin(client: Any, path: str) -> Any:
    resp = await client.get(path, headers=ADMIN_HEADERS)
    assert resp.status == 200, await resp.text()
    return await resp.json()


def action_check(client: Any, kinds: set[str], targets: set[str]) -> Any:
    async def check() -> dict[str, Any] | None:
        body = await admin(client, "/admin/actions")
        found = [a for a in body["actions"] if a["kind"] in kinds and a["target"] in targets]
        return found[0] if found else None

    return check


def warmed(client: Any, backends: list[str], metric: str, points: int = 16) -> Any:
    """True once every backend's ``metric`` series is past the detector's warm-up."""
    engine = client.app[keys.DETECTOR].engine

    async def check() -> bool:
        return all(
            len(engine.store.values(SeriesKey(b, m, metric))) >= points
            for b, m in ((b, "tiny-fb" if b == "fb" else "tiny") for b in backends)
        )

    return check


def successes(client: Any, backend_id: str) -> int:
    return int(client.app[keys.BACKEND_STATE].describe(backend_id)["successes"])


async def test_slow_replica_is_ejected_and_readmitted(
    aiohttp_client: Any, workers: dict[str, Worker]
) -> None:
    client = await gateway(aiohttp_client, gateway_settings(workers))
    load = Load(str(client.make_url("/v1")), "tiny", concurrency=3)
    try:
        await until(warmed(client, ["tiny-a", "tiny-b"], "latency_p95"), 30, "warm-up")
        await workers["tiny-a"].faults(delay_ms=DELAY_MS)
        eject = await until(action_check(client, {"eject"}, {"tiny-a"}), 10, "tiny-a ejected")
        anomalies = await admin(client, "/admin/anomalies")
        events = anomalies["open"] + anomalies["recent"]
        assert any(e["id"] == eject["event_id"] and e["backend_id"] == "tiny-a" for e in events)
        assert client.app[keys.BACKEND_STATE].describe("tiny-a")["ejected"]
        # traffic moves to the other replica (tiny-a only finishes what it had in flight)
        a0, b0 = successes(client, "tiny-a"), successes(client, "tiny-b")

        async def moved() -> bool:
            return successes(client, "tiny-b") >= b0 + 20

        await until(moved, 20, "tiny-b took the traffic")
        assert successes(client, "tiny-a") <= a0 + 3
        await workers["tiny-a"].faults()
        await until(action_check(client, {"readmit"}, {"tiny-a"}), 30, "tiny-a readmitted")
        assert not client.app[keys.BACKEND_STATE].describe("tiny-a")["ejected"]
    finally:
        await load.stop()
    assert load.failures == [] and load.ok > 0
    series = await admin(client, "/admin/series?since=0")
    assert series["resolution_s"] == 0.25
    p95 = [s for s in series["series"] if s["backend_id"] == "tiny-a"
           and s["metric"] == "latency_p95"]  # fmt: skip
    assert p95 and max(p[1] for p in p95[0]["points"]) >= DELAY_MS / 1000
    metrics = await (await client.get("/metrics")).text()
    assert 'switchgear_actions_total{kind="eject"}' in metrics
    assert 'switchgear_anomalies_total{metric="latency_p95"}' in metrics


async def test_both_replicas_slow_fall_back_to_the_next_model(
    aiohttp_client: Any, workers: dict[str, Worker]
) -> None:
    client = await gateway(aiohttp_client, gateway_settings(workers))
    load = Load(str(client.make_url("/v1")), "tiny", concurrency=3)
    try:
        await until(warmed(client, ["tiny-a", "tiny-b"], "latency_p95"), 30, "warm-up")
        await workers["tiny-a"].faults(delay_ms=DELAY_MS)
        await workers["tiny-b"].faults(delay_ms=DELAY_MS)
        await until(action_check(client, {"fallback"}, {"tiny"}), 20, "tiny fell back")

        async def answered_by_fallback() -> bool:
            return load.models["tiny-fb"] >= 5

        await until(answered_by_fallback, 10, "tiny-fb answered")
        assert load.fallbacks["tiny -> tiny-fb"] >= 5
        raw = await load.client.chat.completions.with_raw_response.create(
            model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
        assert raw.headers["x-switchgear-fallback"] == "tiny -> tiny-fb"
        assert raw.parse().model == "tiny-fb"
    finally:
        await load.stop()
    assert load.failures == []


async def test_memory_leak_restarts_the_worker(
    aiohttp_client: Any, workers: dict[str, Worker]
) -> None:
    client = await gateway(aiohttp_client, gateway_settings(workers))
    load = Load(str(client.make_url("/v1")), "tiny", concurrency=2)
    try:
        await until(warmed(client, ["tiny-a"], "memory_rss"), 30, "warm-up")
        await workers["tiny-a"].faults(leak_mb_per_s=60)
        action = await until(
            action_check(client, {"restart", "scale_up"}, {"tiny-a", "tiny"}), 20, "restart"
        )
        events = (await admin(client, "/admin/anomalies"))["open"]
        assert any(e["id"] == action["event_id"] and e["metric"] == "memory_rss" for e in events)
    finally:
        await load.stop()
    assert load.failures == []


async def test_load_ramp_scales_out_a_local_worker(
    aiohttp_client: Any, workers: dict[str, Worker], scaler_config: Path
) -> None:
    settings = gateway_settings(
        workers,
        policy={
            "eject_metrics": [],
            "memory_metrics": [],
            "scaling": {"enabled": True, "rps_per_replica": 12.0, "horizon_s": 1.0,
                        "min_replicas": 1, "max_replicas": 2, "cooldown_s": 600.0, "sustain_s": 5.0,
                        "idle_for_s": 600.0},
        },
        scaler={"worker_configs": {"tiny-fb": str(scaler_config)}, "ready_timeout_s": 90.0},
    )  # fmt: skip
    client = await gateway(aiohttp_client, settings)
    service = client.app[keys.DETECTOR]
    load = Load(str(client.make_url("/v1")), "tiny-fb", concurrency=1, pause_s=0.3)
    try:
        await until(warmed(client, ["fb"], "rps", points=12), 30, "steady low load")
        assert not any(a.kind == "scale_up" for a in service.actions)
        load.add(6)  # the ramp
        action = await until(
            action_check(client, {"scale_up"}, {"tiny-fb"}), 90, "scale-out of tiny-fb"
        )
        assert action["detail"]["reached"] == 2
        registry = client.app[keys.REGISTRY]
        scaled = [b for b in registry.backends("tiny-fb") if b.source == "scaler"]
        assert len(scaled) == 1

        async def takes_traffic() -> bool:
            return successes(client, scaled[0].id) >= 5

        await until(takes_traffic, 20, "the scaled worker answered requests")
    finally:
        await load.stop()
    assert load.failures == []
