"""The policy against a fake gateway implementing GatewayControl."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from switchgear.detector.control import GatewayControl
from switchgear.detector.policy import Autoscaler, Policy
from switchgear.settings.detector import PolicySettings, ScalingSettings
from switchgear.types import AnomalyEvent, Backend, ScaleResult


class FakeGateway:
    def __init__(self, backends: dict[str, list[str]]) -> None:
        self.models = backends
        self.calls: list[tuple[object, ...]] = []
        self.healthy: set[str] = {b for ids in backends.values() for b in ids}
        self.restartable: set[str] = set(self.healthy)

    def backends(self, model: str) -> Sequence[Backend]:
        return [
            Backend(id=b, model=model, url=f"http://{b}/v1") for b in self.models.get(model, [])
        ]

    def has_fallback(self, model: str) -> bool:
        return model == "m"

    async def eject(self, backend_id: str, reason: str) -> None:
        self.calls.append(("eject", backend_id))

    async def readmit(self, backend_id: str) -> None:
        self.calls.append(("readmit", backend_id))

    async def probe(self, backend_id: str) -> bool:
        self.calls.append(("probe", backend_id))
        return backend_id in self.healthy

    async def set_fallback(self, model: str, active: bool) -> None:
        self.calls.append(("fallback", model, active))

    async def restart(self, backend_id: str) -> bool:
        self.calls.append(("restart", backend_id))
        return backend_id in self.restartable

    async def scale(self, model: str, replicas: int) -> ScaleResult | None:
        self.calls.append(("scale", model, replicas))
        self.models[model] = [f"{model}-{i}" for i in range(replicas)]
        return ScaleResult(model, replicas)


EJECTING = PolicySettings(eject_metrics=["latency_p95", "ttft", "error_rate"])


MEMORY = PolicySettings(memory_metrics=["memory_rss", "gpu_allocated"])


def event(backend: str, metric: str = "latency_p95", model: str = "m") -> AnomalyEvent:
    return AnomalyEvent(
        id=f"e-{backend}-{metric}",
        metric=metric,
        score=0.9,
        started_at=1.0,
        backend_id=backend,
        model=model,
    )


def closed(e: AnomalyEvent) -> AnomalyEvent:
    return dataclasses.replace(e, ended_at=2.0)


async def test_latency_anomaly_ejects_then_readmits_when_healthy() -> None:
    gw = FakeGateway({"m": ["a", "b"]})
    assert isinstance(gw, GatewayControl)
    policy = Policy(EJECTING)
    e = event("a")
    actions = await policy.handle(e, gw)
    assert [a.kind for a in actions] == ["eject"] and actions[0].event_id == e.id
    assert ("fallback", "m", True) not in gw.calls  # b still serves
    gw.healthy.discard("a")
    assert await policy.handle(closed(e), gw) == []  # probe failed: stays ejected
    gw.healthy.add("a")
    readmitted = await policy.reprobe(gw)
    assert [a.kind for a in readmitted] == ["readmit"] and ("readmit", "a") in gw.calls
    assert [a.kind for a in policy.actions] == ["eject", "readmit"]


async def test_all_backends_ejected_falls_back_and_recovery_restores() -> None:
    gw = FakeGateway({"m": ["a", "b"]})
    policy = Policy(EJECTING)
    await policy.handle(event("a", "ttft"), gw)
    actions = await policy.handle(event("b", "error_rate"), gw)
    assert [a.kind for a in actions] == ["eject", "fallback"]
    assert ("fallback", "m", True) in gw.calls
    actions = await policy.handle(closed(event("b", "error_rate")), gw)
    assert [a.kind for a in actions] == ["readmit", "restore"]
    assert gw.calls[-1] == ("fallback", "m", False)


async def test_memory_growth_restarts_never_scales_and_alerts_when_it_cannot() -> None:
    gw = FakeGateway({"m": ["a"]})
    actions = await Policy(MEMORY).handle(event("a", "memory_rss"), gw)
    assert [a.kind for a in actions] == ["restart"]
    assert gw.calls == [("restart", "a")]  # no scale-out: memory alone never scales
    gw = FakeGateway({"m": ["a", "b"]})
    gw.restartable.clear()  # e.g. a vLLM server registered externally
    actions = await Policy(MEMORY).handle(event("a", "gpu_allocated"), gw)
    assert [a.kind for a in actions] == ["alert"] and "cannot restart" in actions[0].reason


async def test_other_metrics_and_closed_memory_events_do_nothing() -> None:
    gw = FakeGateway({"m": ["a"]})
    policy = Policy(EJECTING)
    assert await policy.handle(event("a", "queue_depth"), gw) == []
    assert await policy.handle(closed(event("a", "memory_rss")), gw) == []
    assert gw.calls == []


def test_autoscaler_forecast_bounds_and_cooldown() -> None:
    s = ScalingSettings(
        enabled=True,
        rps_per_replica=10,
        horizon_s=30,
        idle_rps=0.5,
        idle_for_s=20,
        min_replicas=1,
        max_replicas=3,
        cooldown_s=100,
        sustain_s=0,
    )
    scaler = Autoscaler(s)
    rising = [float(i) * 0.5 for i in range(40)]  # 0 -> 19.5 rps, +0.5/s
    assert scaler.forecast(rising) > 19.5
    assert scaler.desired(rising, current=1, now=0.0) == 3  # needs 4, bounded by max 3
    assert scaler.desired(rising, current=1, now=50.0) is None  # cool-down
    idle = [0.0] * 30
    assert scaler.desired(idle, current=3, now=200.0) == 2
    assert scaler.desired(idle, current=1, now=400.0) is None  # min replicas


def test_autoscaler_waits_until_the_forecast_asks_for_more_for_sustain_s() -> None:
    s = ScalingSettings(enabled=True, rps_per_replica=10, horizon_s=30, sustain_s=30)
    scaler = Autoscaler(s)
    flat, burst = [5.0] * 60, [5.0] * 60 + [15.0] * 20
    assert scaler.desired(burst, current=1, now=0.0) is None  # asks for more from now
    assert scaler.desired(burst, current=1, now=20.0) is None  # a 20 s burst: not yet
    assert scaler.desired(flat, current=1, now=25.0) is None  # over: the wait starts again
    assert scaler.desired(burst, current=1, now=40.0) is None
    assert scaler.desired(burst, current=1, now=69.0) is None
    need = math.ceil(scaler.forecast(burst) / 10)
    assert need > 1 and scaler.desired(burst, current=1, now=70.0) == need  # 30 s of it
    scaler = Autoscaler(s)
    assert scaler.desired(burst, current=1, now=0.0) is None
    scaler.hold()  # a fallback moved the load
    assert scaler.desired(burst, current=1, now=30.0) is None


async def test_policy_autoscale_calls_scale() -> None:
    gw = FakeGateway({"m": ["a"]})
    settings = PolicySettings(
        scaling=ScalingSettings(
            enabled=True, rps_per_replica=5, horizon_s=10, cooldown_s=0, sustain_s=0
        )
    )
    actions = await Policy(settings).autoscale("m", [12.0] * 20, gw, now=0.0)
    assert [a.kind for a in actions] == ["scale_up"] and ("scale", "m", 3) in gw.calls
    assert await Policy().autoscale("m", [100.0] * 20, gw) == []  # scaling disabled


async def test_no_scaling_while_a_fallback_moves_the_load() -> None:
    gw = FakeGateway({"m": ["a"], "fb": ["f"]})
    settings = PolicySettings(
        scaling=ScalingSettings(
            enabled=True, rps_per_replica=5, horizon_s=10, cooldown_s=0, sustain_s=0
        )
    )
    policy = Policy(settings)
    policy.fallback_active.add("m")  # m's traffic goes to fb
    assert await policy.autoscale("fb", [12.0] * 20, gw, now=0.0) == []
    assert await policy.autoscale("m", [12.0] * 20, gw, now=0.0) == []
    assert not [c for c in gw.calls if c[0] == "scale"]
    policy.fallback_active.clear()
    assert [a.target for a in await policy.autoscale("fb", [12.0] * 20, gw, now=1.0)] == ["fb"]


async def test_a_leak_restarts_once_per_cooldown_or_alerts() -> None:
    gw = FakeGateway({"m": ["a", "b"]})
    gw.restartable = {"a"}
    policy = Policy()
    assert [a.kind for a in await policy.leak("a", 2.0, gw, now=100.0)] == ["restart"]
    assert await policy.leak("a", 2.0, gw, now=200.0) == []  # within the cool-down
    alert = await policy.leak("b", 2.0, gw, now=200.0)
    assert [a.kind for a in alert] == ["alert"] and "cannot restart" in alert[0].reason
    assert ("scale", "m", 3) not in gw.calls


def test_load_rose_sees_a_burst_and_a_saturated_ramp_but_not_steady_or_slowed_load() -> None:
    from switchgear.detector.policy import load_rose

    steady = [5.0, 4.0, 6.0, 5.0] * 30
    assert load_rose(steady, 1.5) is None
    # every replica slower at the same arrival rate: completions dip, then come back
    assert load_rose(steady + [2.0, 2.0, 5.0, 6.0, 5.0, 5.0], 1.5) is None
    burst = load_rose(steady + [15.0] * 3, 1.5)
    assert burst is not None and burst > 2.5
    # a ramp 5 -> 25 rps over 60 s whose completions flatten at 14 rps (saturated)
    ramp = steady + [min(14.0, 5 + 20 * (i + 1) / 60) for i in range(45)]
    assert load_rose(ramp, 1.5) is not None
    assert load_rose([5.0] * 5, 1.5) is None  # too little history
