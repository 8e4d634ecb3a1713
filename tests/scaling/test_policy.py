"""The scale policy: bounds, cooldown, stabilisation window, the serving floor, and the
leader check that keeps a non-leader gateway from scaling."""

from __future__ import annotations

from switchgear.orchestrators.plugin import ScalePlugin
from switchgear.orchestrators.policy import ScalePolicy
from switchgear.settings.scaling import ScalingSection
from switchgear.types import ScaleRequest


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_stabilisation_window_delays_scale_in():
    clock = Clock()
    policy = ScalePolicy(ScalingSection(cooldown_s=0, stabilization_s=60), clock)
    assert policy.decide("m", 4, 2, 0).replicas == 4
    clock.t += 10
    held = policy.decide("m", 1, 4, 0)
    assert held.replicas == 4 and "stabilisation window keeps 4" in held.reason
    clock.t += 61
    assert policy.decide("m", 1, 4, 0).replicas == 1


def test_cooldown_and_bounds():
    clock = Clock()
    s = ScalingSection(
        cooldown_s=30, stabilization_s=0, models={"m": {"min_replicas": 1, "max_replicas": 3}}
    )
    policy = ScalePolicy(s, clock)
    up = policy.decide("m", 9, 1, 1)
    assert up.replicas == 3 and "max_replicas 3" in up.reason and up.kind == "scale_up"
    clock.t += 5
    held = policy.decide("m", 0, 3, 0)
    assert held.replicas == 3 and "cooldown" in held.reason and held.kind == "scale_hold"
    clock.t += 30
    down = policy.decide("m", 0, 3, 0)
    assert down.replicas == 1 and "min_replicas 1" in down.reason


def test_serving_floor():
    policy = ScalePolicy(ScalingSection(cooldown_s=0, stabilization_s=0))
    d = policy.decide("m", 0, 3, 2)
    assert d.replicas == 2 and "2 replicas serve traffic" in d.reason


class Recorder:
    name = "recorder"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def knows(self, model: str) -> bool:
        return True

    async def replicas(self, model: str) -> int:
        return 1

    async def set_replicas(self, model: str, replicas: int) -> int:
        self.calls.append(replicas)
        return replicas


async def test_only_the_leader_scales():
    leader = [False]
    orch = Recorder()
    plugin = ScalePlugin(orch, ScalePolicy(ScalingSection(cooldown_s=0)), leader=lambda: leader[0])  # type: ignore[arg-type]
    res = await plugin.scale(ScaleRequest("m", 3, 1, "detector"))
    assert res is not None and res.error == "not the detector leader" and not orch.calls
    leader[0] = True
    res = await plugin.scale(ScaleRequest("m", 3, 1, "detector"))
    assert res is not None and res.replicas == 3 and orch.calls == [3]
