"""The outlier rule (peers and own past) and the ejection guards."""

from __future__ import annotations

from switchgear.detector.outliers import OutlierJudge
from switchgear.detector.policy import Policy
from switchgear.settings.detector import OutlierSettings, PolicySettings
from switchgear.types import Observation
from tests.detector.test_policy import FakeGateway


def feed(judge: OutlierJudge, backend: str, latencies: list[float], t0: float = 0.0,
         *, failed: int = 0) -> None:  # fmt: skip
    for i, lat in enumerate(latencies):
        judge.observe(
            Observation(
                backend, "m", "local", 500 if i < failed else 200, lat, ts=t0 + i * 0.1
            )  # fmt: skip
        )


def test_a_starved_slow_replica_is_judged_against_its_peers() -> None:
    judge = OutlierJudge(OutlierSettings(consecutive=1))
    feed(judge, "a", [0.1] * 40)
    feed(judge, "b", [0.35] * 4)  # 3.5x slower, four samples only
    d = judge.decide(["a", "b"], set(), has_fallback=True, in_fallback=False, now=4.0)
    assert [b for b, _ in d.eject] == ["b"] and "peers" in d.eject[0][1]
    assert d.fallback is None and d.probe == []


def test_too_few_samples_asks_for_probes_and_judges_nothing() -> None:
    judge = OutlierJudge(OutlierSettings(consecutive=1))
    feed(judge, "a", [0.1] * 40)
    feed(judge, "b", [5.0] * 3)
    d = judge.decide(["a", "b"], set(), has_fallback=True, in_fallback=False, now=4.0)
    assert d.eject == [] and d.probe == ["b"]


def test_noise_within_the_ratio_and_small_differences_never_eject() -> None:
    judge = OutlierJudge(OutlierSettings(consecutive=1))
    feed(judge, "a", [0.010, 0.012, 0.011, 0.013] * 10)
    feed(judge, "b", [0.025, 0.030, 0.028, 0.025] * 10)  # 2.3x but 15 ms: under the floor
    d = judge.decide(["a", "b"], set(), has_fallback=False, in_fallback=False, now=4.0)
    assert d.eject == []


def test_errors_eject_at_once_and_slowness_needs_consecutive_checks() -> None:
    judge = OutlierJudge(OutlierSettings(consecutive=2))
    feed(judge, "a", [0.1] * 20)
    feed(judge, "b", [0.1] * 20)
    feed(judge, "b", [0.1] * 8, t0=2.0, failed=2)  # 2 of its newest 8 failed
    d = judge.decide(["a", "b"], set(), has_fallback=True, in_fallback=False, now=2.8)
    assert [b for b, _ in d.eject] == ["b"] and "error rate" in d.eject[0][1]
    judge = OutlierJudge(OutlierSettings(consecutive=2))
    feed(judge, "a", [0.1] * 20)
    feed(judge, "b", [0.5] * 20)
    first = judge.decide(["a", "b"], set(), has_fallback=True, in_fallback=False, now=2.0)
    second = judge.decide(["a", "b"], set(), has_fallback=True, in_fallback=False, now=2.1)
    assert first.eject == [] and [b for b, _ in second.eject] == ["b"]


def test_every_replica_slow_against_its_own_past_falls_back() -> None:
    judge = OutlierJudge(OutlierSettings(consecutive=1, reference_samples=20))
    for b in "ab":
        feed(judge, b, [0.1] * 30)
        feed(judge, b, [0.5] * 10, t0=20.0)
    d = judge.decide(["a", "b"], set(), has_fallback=True, in_fallback=False, now=21.0)
    assert d.fallback is True and d.eject == []
    # without a fallback chain: slow only against their own past, so none is ejected
    d = judge.decide(["a", "b"], set(), has_fallback=False, in_fallback=False, now=21.0)
    assert d.fallback is None and d.eject == []


def test_max_ejection_percent_caps_ejections() -> None:
    judge = OutlierJudge(OutlierSettings(consecutive=1, max_ejection_percent=25))
    feed(judge, "a", [0.1] * 40)
    feed(judge, "b", [0.1] * 40)
    feed(judge, "c", [0.9] * 40)
    feed(judge, "d", [0.8] * 40)
    d = judge.decide(["a", "b", "c", "d"], set(), False, False, now=4.0)
    assert [b for b, _ in d.eject] == ["c"]  # one of four, the worst
    d = judge.decide(["a", "b", "c", "d"], {"c"}, False, False, now=4.0)
    assert d.eject == []


def test_recovered_replica_is_readmitted_after_good_checks() -> None:
    judge = OutlierJudge(OutlierSettings(consecutive=2))
    feed(judge, "a", [0.1] * 40)
    feed(judge, "b", [0.1] * 10)
    args = (["a", "b"], {"b"}, True, False)
    assert judge.decide(*args, now=4.0).readmit == []
    assert judge.decide(*args, now=4.1).readmit == ["b"]


async def test_policy_guards_hysteresis_ejections_too() -> None:
    from tests.detector.test_policy import event

    gw = FakeGateway({"solo": ["s"], "n": ["a", "b"]})
    policy = Policy(PolicySettings(eject_metrics=["latency_p95"]))
    assert await policy.handle(event("s", model="solo"), gw) == []  # the last replica
    assert [a.kind for a in await policy.handle(event("a", model="n"), gw)] == ["eject"]
    assert await policy.handle(event("b", model="n"), gw) == []  # 50% cap: b stays
    assert ("eject", "b") not in gw.calls
