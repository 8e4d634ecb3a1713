"""The outlier rule (peers and own past) and the ejection guards."""

from __future__ import annotations

from switchgear.detector.outliers import OutlierJudge
from switchgear.detector.policy import Policy
from switchgear.settings.detector import OutlierSettings, PolicySettings
from switchgear.types import Observation
from tests.detector.test_policy import FakeGateway


def feed(judge: OutlierJudge, backend: str, latencies: list[float], t0: float = 0.0,
         *, failed: int = 0, probe: bool = False) -> None:  # fmt: skip
    for i, lat in enumerate(latencies):
        judge.observe(
            Observation(backend, "m", "local", 500 if i < failed else 200, lat, ts=t0 + i * 0.1),
            probe=probe,
        )


def test_a_starved_slow_replica_is_judged_against_its_peers() -> None:
    judge = OutlierJudge(OutlierSettings(consecutive=1, excess_evidence_s=0.0))
    feed(judge, "a", [0.1] * 40)
    feed(judge, "b", [0.35] * 4)  # 3.5x slower, four samples only
    d = judge.decide(["a", "b"], set(), has_fallback=True, in_fallback=False, now=4.0)
    assert [b for b, _ in d.eject] == ["b"] and "peers" in d.eject[0][1]
    assert d.fallback is None and d.probe == []


def test_too_few_samples_asks_for_probes_and_judges_nothing() -> None:
    judge = OutlierJudge(OutlierSettings(consecutive=1, excess_evidence_s=0.0))
    feed(judge, "a", [0.1] * 40)
    feed(judge, "b", [5.0] * 3)
    d = judge.decide(["a", "b"], set(), has_fallback=True, in_fallback=False, now=4.0)
    assert d.eject == [] and d.probe == ["a", "b"]  # its peer too: probes meet probes


def test_noise_within_the_ratio_and_small_differences_never_eject() -> None:
    judge = OutlierJudge(OutlierSettings(consecutive=1, excess_evidence_s=0.0))
    feed(judge, "a", [0.010, 0.012, 0.011, 0.013] * 10)
    feed(judge, "b", [0.025, 0.030, 0.028, 0.025] * 10)  # 2.3x but 15 ms: under 20 ms
    d = judge.decide(["a", "b"], set(), has_fallback=False, in_fallback=False, now=4.0)
    assert d.eject == []


def test_errors_eject_at_once_and_slowness_needs_consecutive_checks() -> None:
    judge = OutlierJudge(OutlierSettings(consecutive=2, excess_evidence_s=0.0))
    feed(judge, "a", [0.1] * 20)
    feed(judge, "b", [0.1] * 20)
    feed(judge, "b", [0.1] * 8, t0=2.0, failed=2)  # 2 of its newest 20 failed
    d = judge.decide(["a", "b"], set(), has_fallback=True, in_fallback=False, now=2.8)
    assert [b for b, _ in d.eject] == ["b"] and "error rate" in d.eject[0][1]
    judge = OutlierJudge(OutlierSettings(consecutive=2, excess_evidence_s=0.0))
    feed(judge, "a", [0.1] * 20)
    feed(judge, "b", [0.5] * 20)
    first = judge.decide(["a", "b"], set(), has_fallback=True, in_fallback=False, now=2.0)
    second = judge.decide(["a", "b"], set(), has_fallback=True, in_fallback=False, now=2.1)
    assert first.eject == [] and [b for b, _ in second.eject] == ["b"]


def test_every_replica_slow_against_its_own_past_falls_back() -> None:
    judge = OutlierJudge(
        OutlierSettings(consecutive=1, excess_evidence_s=0.0, reference_samples=20)
    )
    for b in "ab":
        feed(judge, b, [0.1] * 30)
        feed(judge, b, [0.5] * 10, t0=20.0)
    d = judge.decide(["a", "b"], set(), has_fallback=True, in_fallback=False, now=21.0)
    assert d.fallback is True and d.eject == []
    # without a fallback chain: slow only against their own past, so none is ejected
    d = judge.decide(["a", "b"], set(), has_fallback=False, in_fallback=False, now=21.0)
    assert d.fallback is None and d.eject == []


def test_a_replica_without_its_own_reference_is_judged_on_the_models() -> None:
    # the balancer starved b: it has 5 healthy requests of its own, too few for a reference
    judge = OutlierJudge(OutlierSettings(consecutive=1, excess_evidence_s=0.0))
    feed(judge, "a", [0.03] * 60)
    feed(judge, "b", [0.03] * 5)
    judge.fresh(["a", "b"], 10.0)
    for b in "ab":  # then both 10x slower
        feed(judge, b, [0.3] * 10, t0=10.0)
    assert len(judge.replicas["b"].reference) < judge.s.reference_samples
    d = judge.decide(["a", "b"], set(), has_fallback=True, in_fallback=False, now=11.0)
    assert d.fallback is True and d.eject == []
    assert "usual" in judge.verdicts(["a", "b"], set(), 11.1)["b"].reason


def test_max_ejection_percent_caps_ejections() -> None:
    judge = OutlierJudge(
        OutlierSettings(consecutive=1, excess_evidence_s=0.0, max_ejection_percent=25)
    )
    feed(judge, "a", [0.1] * 40)
    feed(judge, "b", [0.1] * 40)
    feed(judge, "c", [0.9] * 40)
    feed(judge, "d", [0.8] * 40)
    d = judge.decide(["a", "b", "c", "d"], set(), False, False, now=4.0)
    assert [b for b, _ in d.eject] == ["c"]  # one of four, the worst
    d = judge.decide(["a", "b", "c", "d"], {"c"}, False, False, now=4.0)
    assert d.eject == []


def test_recovered_replica_is_readmitted_after_good_checks() -> None:
    judge = OutlierJudge(OutlierSettings(consecutive=2, excess_evidence_s=0.0))
    feed(judge, "a", [0.1] * 40)
    feed(judge, "a", [0.1] * 6, probe=True)
    feed(judge, "b", [0.1] * 10, probe=True)  # ejected: probes only
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


def test_a_failing_replica_with_few_samples_is_ejected_on_its_errors() -> None:
    judge = OutlierJudge(OutlierSettings(consecutive=2, excess_evidence_s=0.0))
    feed(judge, "a", [0.1] * 40)
    feed(judge, "b", [0.01], t0=2.0)  # it answered before
    feed(judge, "b", [0.01] * 3, t0=3.0, failed=2)  # retried elsewhere: three samples more
    d = judge.decide(["a", "b"], set(), has_fallback=True, in_fallback=False, now=4.0)
    assert [b for b, _ in d.eject] == ["b"] and "error rate" in d.eject[0][1]


def test_one_failure_is_not_failing_but_asks_for_probes() -> None:
    judge = OutlierJudge(OutlierSettings(consecutive=1, excess_evidence_s=0.0))
    feed(judge, "a", [0.1] * 40)
    feed(judge, "b", [0.1] * 39)
    feed(judge, "b", [0.1], t0=3.9, failed=1)  # 1 of its newest 20 (5%), under min_errors
    d = judge.decide(["a", "b"], set(), has_fallback=True, in_fallback=False, now=4.0)
    assert d.eject == [] and "b" in d.probe  # a suspect gets more samples
    assert d.suspect == {"b"}  # ... a burst of probes: its peer gets one
    feed(judge, "b", [0.1] * 19, t0=4.0, failed=2)  # 2 of the newest 20 (10%)
    d = judge.decide(["a", "b"], set(), has_fallback=True, in_fallback=False, now=6.0)
    assert [b for b, _ in d.eject] == ["b"]


def test_a_replica_whose_newest_request_is_slow_gets_a_burst_of_probes() -> None:
    judge = OutlierJudge(OutlierSettings())
    feed(judge, "a", [0.01] * 40)
    feed(judge, "b", [0.01] * 6, t0=3.0)  # enough requests to judge: no probe
    d = judge.decide(["a", "b"], set(), has_fallback=True, in_fallback=False, now=4.0)
    assert d.probe == [] and d.suspect == frozenset()
    feed(judge, "b", [0.5], t0=3.95)  # its newest request is 50x its peer's median
    d = judge.decide(["a", "b"], set(), has_fallback=True, in_fallback=False, now=4.0)
    # its median is still fast, so it is not judged slow yet, but it is probed in bursts
    assert d.eject == [] and "b" in d.probe and d.suspect == {"b"}
    # once ejected, it is left at one probe per interval
    d = judge.decide(["a", "b"], {"b"}, has_fallback=True, in_fallback=False, now=4.0)
    assert d.suspect == frozenset()
    # against its own past too (no peers here): the fallback's case, every replica slow
    judge = OutlierJudge(OutlierSettings(reference_samples=20))
    feed(judge, "a", [0.01] * 30)
    d = judge.decide(["a"], set(), has_fallback=True, in_fallback=False, now=4.0)
    assert d.suspect == frozenset()
    feed(judge, "a", [0.3], t0=3.95)
    d = judge.decide(["a"], set(), has_fallback=True, in_fallback=False, now=4.0)
    assert d.suspect == {"a"} and d.fallback is None


def test_an_ejected_replica_is_judged_on_probes_against_its_peers_probes() -> None:
    judge = OutlierJudge(OutlierSettings(consecutive=1, excess_evidence_s=0.0))
    judge.fresh(["a", "b"], 0.0)  # b was just ejected
    feed(judge, "a", [0.3] * 40, t0=0.1)  # a carries all the traffic: slower
    feed(judge, "a", [0.05] * 6, t0=0.15, probe=True)  # but answers a probe fast
    feed(judge, "b", [0.35] * 6, t0=0.15, probe=True)  # b is still slow
    d = judge.decide(["a", "b"], {"b"}, has_fallback=True, in_fallback=False, now=4.0)
    # against a's traffic (0.3 s) b would look healthy; against a's probes it is not
    assert d.readmit == [] and "probe latency" in judge.verdicts(["a", "b"], {"b"}, 4.1)["b"].reason
    assert d.probe == ["a", "b"]


async def test_a_readmitted_replica_is_not_followed_by_ejecting_its_loaded_peer() -> None:
    """The flapping of readmissions: while b was ejected, a carried the whole load and was
    slow; right after b's readmission a's old samples made a look slow against b's probes,
    so a was ejected, then b, ... Every replica's window starts again on readmission."""
    gw = FakeGateway({"m": ["a", "b"]})
    policy = Policy(PolicySettings(outliers=OutlierSettings(consecutive=1, excess_evidence_s=0.0)))
    judge = policy.judge
    policy.ejected["b"] = "m"
    policy.outlier_ejected.add("b")
    feed(judge, "a", [0.4] * 40, t0=0.0)  # loaded: all the traffic
    feed(judge, "a", [0.05] * 6, t0=0.05, probe=True)
    feed(judge, "b", [0.04] * 6, t0=0.05, probe=True)  # recovered
    actions, _ = await policy.outliers("m", gw, now=4.0)
    assert [a.kind for a in actions] == ["readmit"]
    feed(judge, "b", [0.05] * 2, t0=4.1)  # its first requests after the readmission
    actions, probe = await policy.outliers("m", gw, now=4.5)
    assert actions == [] and "a" not in policy.ejected
    assert probe == ["a", "b"]  # too few fresh samples: judged again once they come


async def test_every_replica_slow_while_load_rose_is_no_fallback() -> None:
    gw = FakeGateway({"m": ["a", "b"]})

    def slow_everywhere() -> Policy:
        policy = Policy(PolicySettings(outliers=OutlierSettings(consecutive=1, excess_evidence_s=0.0,
                                                                reference_samples=20)))  # fmt: skip
        for b in "ab":
            feed(policy.judge, b, [0.1] * 30)
            feed(policy.judge, b, [0.5] * 10, t0=20.0)
        return policy

    flat, rising = [5.0] * 60, [5.0] * 57 + [12.0] * 3
    actions, _ = await slow_everywhere().outliers("m", gw, now=21.0, rps=rising)
    assert actions == []  # load: the fallback model would not serve it better
    actions, _ = await slow_everywhere().outliers("m", gw, now=21.0, rps=flat)
    assert [a.kind for a in actions] == ["fallback"]


def test_in_fallback_the_model_is_restored_when_probes_are_as_fast_as_usual() -> None:
    judge = OutlierJudge(
        OutlierSettings(consecutive=1, excess_evidence_s=0.0, reference_samples=20)
    )
    for b in "ab":
        feed(judge, b, [0.1] * 30)
    judge.fresh(["a", "b"], 10.0)  # fell back: traffic goes elsewhere, probes only
    for b in "ab":
        feed(judge, b, [0.6] * 6, t0=10.1, probe=True)  # still slow (alike: no outlier)
    d = judge.decide(["a", "b"], set(), has_fallback=True, in_fallback=True, now=11.0)
    assert d.fallback is None and d.probe == ["a", "b"]
    feed(judge, "a", [0.08] * 6, t0=11.0, probe=True)  # a recovered
    d = judge.decide(["a", "b"], set(), has_fallback=True, in_fallback=True, now=12.0)
    assert d.fallback is False


def test_a_small_excess_needs_more_slow_checks_than_a_large_one() -> None:
    s = OutlierSettings(consecutive=2, excess_evidence_s=0.6, evidence_medians=8.0)

    def checks_to_eject(peer: float, slow: float) -> int:
        judge = OutlierJudge(s)
        feed(judge, "a", [peer] * 40)
        feed(judge, "b", [slow] * 40)
        for n in range(1, 20):
            if judge.decide(["a", "b"], set(), True, False, now=4.0 + n * 0.01).eject:
                return n
        return 0

    # a fast model: the excesses must add up 8 x the peers' median (0.24 s)
    assert checks_to_eject(0.03, 0.30) == 2  # 10x slower: the two checks
    assert checks_to_eject(0.03, 0.09) == 4  # 3x: 2 medians of excess a check
    assert checks_to_eject(0.03, 0.075) == 6  # 2.5x: 1.5 a check
    # a slow model: 0.6 s of excess comes first (8 x 0.5 s would take 8 checks)
    assert checks_to_eject(0.5, 1.05) == 2  # 2.1x, 0.55 s a check
    assert checks_to_eject(0.2, 0.45) == 3  # 2.25x, 0.25 s a check (relative: 7 checks)
    # and without any evidence asked, the checks in a row alone
    s = OutlierSettings(consecutive=2, excess_evidence_s=0.0, evidence_medians=0.0)
    assert checks_to_eject(0.03, 0.075) == 2


def test_the_floor_scales_with_the_spread_of_the_latencies_compared_with() -> None:
    s = OutlierSettings(consecutive=1, excess_evidence_s=0.0, min_excess_s=0.02, excess_mads=6)

    def ejected(peer: list[float], slow: float) -> bool:
        judge = OutlierJudge(s)
        feed(judge, "a", peer * 10)
        feed(judge, "b", [slow] * 40)
        return bool(judge.decide(["a", "b"], set(), True, False, now=4.0).eject)

    steady = [0.046, 0.048, 0.050, 0.048]  # a 48 ms model, 1 ms of median deviation
    assert ejected(steady, 0.144)  # 3x: 96 ms over, the floor is 20 ms
    assert not ejected(steady, 0.060)  # within the ratio
    noisy = [0.02, 0.04, 0.06, 0.08]  # the same median, 20 ms of median deviation
    assert not ejected(noisy, 0.144)  # 96 ms is under 6 x 20 ms: queueing noise
    assert ejected(noisy, 0.2)  # 150 ms over: above it
    # the absolute floor under a very steady, very fast peer
    assert not ejected([0.005] * 4, 0.015)  # 3x, but 10 ms: timer noise
    assert ejected([0.010] * 4, 0.031)  # 3.1x of 10 ms: 21 ms


def test_replicas_still_loading_at_start_up_are_not_failing_until_they_answered() -> None:
    judge = OutlierJudge(OutlierSettings(consecutive=1, excess_evidence_s=0.0))
    feed(judge, "a", [0.01] * 6, failed=6)  # 503 from a worker still loading its model
    feed(judge, "b", [0.01] * 6, failed=6)
    d = judge.decide(["a", "b"], set(), has_fallback=True, in_fallback=False, now=1.0)
    assert d.eject == [] and d.fallback is not True
    feed(judge, "a", [0.01], t0=1.0)  # a answers once: its start-up failures stay out
    feed(judge, "b", [0.01], t0=1.0)
    d = judge.decide(["a", "b"], set(), has_fallback=True, in_fallback=False, now=1.5)
    assert d.eject == [] and d.fallback is not True
    feed(judge, "a", [0.01] * 6, t0=1.6, failed=6)  # from now on its failures count
    d = judge.decide(["a", "b"], set(), has_fallback=True, in_fallback=False, now=2.5)
    assert [b for b, _ in d.eject] == ["a"] and "error rate" in d.eject[0][1]


def test_a_stall_of_the_whole_host_is_no_replicas_fault() -> None:
    # both replicas stall together for 1 s; the balancer then starves b, whose newest
    # requests are all from the stall, while a's are fast again
    def stalled(align_s: float) -> list[tuple[str, str]]:
        settings = OutlierSettings(consecutive=1, excess_evidence_s=0.0, align_s=align_s)
        judge = OutlierJudge(settings)
        feed(judge, "a", [0.03] * 20)
        feed(judge, "b", [0.03] * 20)
        feed(judge, "a", [0.25] * 10, t0=2.0)
        feed(judge, "b", [0.25] * 10, t0=2.05)
        feed(judge, "a", [0.03] * 40, t0=3.0)
        return judge.decide(["a", "b"], set(), has_fallback=True, in_fallback=False, now=7.0).eject

    assert [b for b, _ in stalled(0.0)] == ["b"]  # against the peers' newest only
    assert stalled(0.25) == []  # against the peers at the same moments
    # a replica slow on its own is still slow at the same moments
    judge = OutlierJudge(OutlierSettings(consecutive=1, excess_evidence_s=0.0))
    feed(judge, "a", [0.03] * 60)
    feed(judge, "b", [0.03] * 20)
    feed(judge, "b", [0.25] * 10, t0=2.05)
    d = judge.decide(["a", "b"], set(), has_fallback=True, in_fallback=False, now=7.0)
    assert [b for b, _ in d.eject] == ["b"] and "peers" in d.eject[0][1]
