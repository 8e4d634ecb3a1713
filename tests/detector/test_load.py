"""The offered load (arrivals per second) and the load guard that reads it."""

from __future__ import annotations

from switchgear.detector.load import LoadMeter
from switchgear.detector.policy import Autoscaler, Policy, load_rose
from switchgear.settings.detector import OutlierSettings, PolicySettings, ScalingSettings
from tests.detector.test_outliers import feed
from tests.detector.test_policy import FakeGateway


def served(arrivals: list[int], capacity: int, slow_from: int | None = None) -> tuple[
    list[float], list[float]]:  # fmt: skip
    """A model behind a queue that finishes at most ``capacity`` requests a tick; from tick
    ``slow_from`` on, each request takes 10 ticks' worth of time more (in flight longer at
    the same rate). Returns (what the meter reads, the completed requests per tick)."""
    flight = {"m": 0}
    meter = LoadMeter(lambda: dict(flight))
    queue: list[int] = []  # the tick each waiting request arrived
    completed = []
    for t, a in enumerate(arrivals):
        queue += [t] * a
        hold = 10 if slow_from is not None and t >= slow_from else 0
        ready = [x for x in queue if t - x >= hold][:capacity]
        for x in ready:
            queue.remove(x)
            meter.completed("m")
        flight["m"] = len(queue)
        completed.append(float(len(ready)))
        meter.tick()
    return meter.values("m"), completed


def test_arrivals_keep_rising_when_the_replicas_are_saturated() -> None:
    ramp = [5] * 120 + [5 + 20 * min(60, i + 1) // 60 for i in range(90)]
    arrivals, completed = served(ramp, capacity=7)
    assert arrivals == [float(a) for a in ramp]  # conservation: done + growth in flight
    assert max(completed) == 7.0  # the completed rate flattened at 1.4x
    at_21s = 120 + 21
    assert load_rose(completed[:at_21s], 1.5) is None  # what the guard read before
    rose = load_rose(arrivals[:at_21s], 1.5)
    assert rose is not None and rose > 1.8
    assert load_rose(arrivals[: 120 + 90], 1.5) is not None  # held at 25: still risen


def test_every_replica_slower_at_a_steady_load_is_no_rise() -> None:
    arrivals, completed = served([5] * 150, capacity=20, slow_from=120)
    assert max(arrivals) == 5.0 == min(arrivals)  # in flight grew 10x, arrivals did not
    assert completed[120] == 0.0  # the completions paused while in flight grew
    for end in range(123, 151):
        assert load_rose(arrivals[:end], 1.5) is None


def test_a_failing_in_flight_count_falls_back_to_completions() -> None:
    def broken() -> dict[str, int]:
        raise RuntimeError("gone")

    meter = LoadMeter(broken)
    for _ in range(3):
        meter.completed("m")
    assert meter.tick() == {"m": 3.0}
    meter = LoadMeter()  # no count at all: completions only
    meter.completed("m")
    assert meter.tick({"m"}) == {"m": 1.0}


def test_a_series_starts_with_the_models_first_traffic() -> None:
    meter = LoadMeter()
    for _ in range(60):  # the gateway is up, its workers still load: no traffic
        assert meter.tick({"m"}) == {}
    for _ in range(20):
        for _ in range(5):
            meter.completed("m")
        meter.tick({"m"})
    assert meter.values("m") == [5.0] * 20
    assert load_rose(meter.values("m"), 1.5) is None  # the first load is no rise
    meter.tick({"m"})  # once started, an idle tick is a point
    assert meter.values("m")[-1] == 0.0


def slowed(latency_s: dict[str, float]) -> Policy:
    """A policy whose replicas answered in 50 ms for 30 requests, then in ``latency_s``."""
    settings = OutlierSettings(consecutive=1, excess_evidence_s=0.0, reference_samples=20)
    policy = Policy(PolicySettings(outliers=settings))
    for b, lat in latency_s.items():
        feed(policy.judge, b, [0.05] * 30)
        feed(policy.judge, b, [lat] * 10, t0=20.0)
    return policy


async def test_a_saturated_ramp_is_not_a_fallback_but_ten_times_slower_is() -> None:
    gw = FakeGateway({"m": ["a", "b"]})

    def slow_everywhere() -> Policy:
        return slowed({"a": 0.5, "b": 0.5})

    ramp = [5] * 120 + [5 + 20 * min(60, i + 1) // 60 for i in range(21)]
    arrivals, completed = served(ramp, capacity=7)
    actions, _ = await slow_everywhere().outliers("m", gw, now=21.0, rps=arrivals)
    assert actions == []
    actions, _ = await slow_everywhere().outliers("m", gw, now=21.0, rps=completed)
    assert [a.kind for a in actions] == ["fallback"]  # the completed rate hid the ramp
    steady, _ = served([5] * 150, capacity=20, slow_from=120)
    actions, _ = await slow_everywhere().outliers("m", gw, now=21.0, rps=steady)
    assert [a.kind for a in actions] == ["fallback"]


def test_the_scaler_sees_the_ramp_in_arrivals_where_completions_flattened() -> None:
    s = ScalingSettings(enabled=True, rps_per_replica=10.0, horizon_s=60.0, sustain_s=30.0,
                        cooldown_s=120.0)  # fmt: skip
    ramp = [5] * 120 + [5 + 20 * min(60, i + 1) // 60 for i in range(90)]
    arrivals, completed = served(ramp, capacity=7)

    def first_scale(series: list[float]) -> int | None:
        scaler = Autoscaler(s)
        for t in range(121, len(series) + 1):
            if scaler.desired(series[:t], current=2, now=float(t)):
                return t - 120
        return None

    when = first_scale(arrivals)
    assert when is not None and when <= 60  # forecast past 20 rps by ~20 s, then 30 s of it
    assert first_scale(completed) is None  # 7 rps: never past two replicas' 20


async def test_while_the_offered_load_rises_only_failing_replicas_are_ejected() -> None:
    gw = FakeGateway({"m": ["a", "b"], "n": ["c", "d"]})
    policy = Policy(PolicySettings(outliers=OutlierSettings(consecutive=1, excess_evidence_s=0.0)))
    feed(policy.judge, "a", [0.05] * 20)
    feed(policy.judge, "b", [0.2] * 20)  # queues more than its peer under the rise
    feed(policy.judge, "c", [0.05] * 20)
    feed(policy.judge, "d", [0.05] * 10)
    feed(policy.judge, "d", [0.05] * 10, t0=1.0, failed=4)  # fails: a fault at any load
    rising = [5.0] * 60 + [12.0] * 3
    m, _ = await policy.outliers("m", gw, now=2.5, rps=rising)
    n, _ = await policy.outliers("n", gw, now=2.5, rps=rising)
    assert m == [] and [(a.kind, a.target) for a in n] == [("eject", "d")]
    steady, _ = await policy.outliers("m", gw, now=2.6, rps=[5.0] * 63)
    assert [(a.kind, a.target) for a in steady] == [("eject", "b")]  # at a steady load


async def test_while_the_load_rose_a_mix_of_slow_replicas_does_not_fall_back() -> None:
    gw = FakeGateway({"m": ["a", "b"]})

    def saturated() -> Policy:
        # a: slow against its own past; b: queueing more, slow against its peer too
        return slowed({"a": 0.3, "b": 1.0})

    rising = [5.0] * 60 + [12.0] * 3
    actions, _ = await saturated().outliers("m", gw, now=21.0, rps=rising)
    assert actions == []
    actions, _ = await saturated().outliers("m", gw, now=21.0, rps=[5.0] * 63)
    assert "fallback" in [a.kind for a in actions]
