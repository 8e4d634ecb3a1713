"""One detector leader per fleet: a Redis lock with a TTL; only the leader's detector acts."""

from __future__ import annotations

import os
import signal
from typing import Any

import aiohttp
import pytest

from switchgear.plugins.hookspecs import hookimpl
from switchgear.plugins.manager import make_plugin_manager
from switchgear.proxy.keys import BACKEND_STATE, DETECTOR, FLEET, OBSERVERS
from switchgear.types import AnomalyEvent, Observation
from tests.proxy.conftest import GATEWAY_PLUGINS
from tests.state.conftest import fleet_config, until, value

DETECTOR_ON: dict[str, Any] = {
    "enabled": True,
    "resolution_s": 0.05,
    "scrape_interval_s": 0.05,
    "detectors": {"*": "zscore"},
    "restart_backoff_s": 0.01,
}


async def leader_gauge(s: aiohttp.ClientSession, url: str) -> float:
    async with s.get(url + "/metrics") as r:
        text = await r.text()
    line = next(ln for ln in text.splitlines() if ln.startswith("switchgear_detector_leader "))
    return float(line.split()[1])


@pytest.mark.slow
async def test_killing_the_leader_process_hands_leadership_over_within_the_ttl(
    upstream, redis_server, gateways
):
    up = await upstream("m1")
    config = fleet_config(up, redis_server.url, detector=DETECTOR_ON)
    a, b = await gateways(config), await gateways(config)
    async with aiohttp.ClientSession() as s:

        async def exactly_one() -> bool:
            return sorted([await leader_gauge(s, a.url), await leader_gauge(s, b.url)]) == [0, 1]

        await until(exactly_one, 5.0, "one leader")
        leader, other = (a, b) if await leader_gauge(s, a.url) == 1 else (b, a)
        os.killpg(leader.proc.pid, signal.SIGKILL)  # dies without releasing the lock
        leader.proc.wait(timeout=10)

        async def took_over() -> bool:
            return await leader_gauge(s, other.url) == 1

        # The TTL is 2 s; the survivor tries every TTL/3: a handover within TTL + one beat.
        took = await until(took_over, 2.0 + 0.7 + 0.5, "the survivor leads")
        assert took > 0.5  # it did wait for the dead leader's lock to expire


class Recorder:
    def __init__(self) -> None:
        self.events: list[str] = []

    @hookimpl
    def on_anomaly(self, event: AnomalyEvent, gateway: object) -> list[object]:
        self.events.append(event.id)
        return []


def pm(recorder: Recorder) -> Any:
    manager = make_plugin_manager(
        load_entrypoints=False, builtins=(*GATEWAY_PLUGINS, "switchgear.default_plugins.detectors")
    )
    manager.register(recorder)
    return manager


async def test_exactly_one_detector_of_the_fleet_acts(upstream, redis_server, gateway):
    up = await upstream("m1")
    config = fleet_config(up, redis_server.url, detector=DETECTOR_ON)
    ra, rb = Recorder(), Recorder()
    a = await gateway(config, pm=pm(ra))
    b = await gateway(config, pm=pm(rb))
    await until(
        lambda: value(sum(gw.app[FLEET].is_leader() for gw in (a, b)) == 1), 5.0, "one leader"
    )
    event = AnomalyEvent("ev-1", "latency_p95", 9.0, 0.0, backend_id="a", model="m1")
    for gw in (a, b):  # both detectors see the same anomaly
        gw.app[DETECTOR]._on_event(event)
    leader, follower = (ra, rb) if a.app[FLEET].is_leader() else (rb, ra)
    await until(lambda: value(leader.events == ["ev-1"]), 2.0, "the leader acted")
    assert follower.events == []


async def test_the_leader_judges_the_observations_of_every_gateway(upstream, redis_server, gateway):
    up = await upstream("m1")
    config = fleet_config(up, redis_server.url, detector=DETECTOR_ON)
    a = await gateway(config, pm=pm(Recorder()))
    b = await gateway(config, pm=pm(Recorder()))
    await until(
        lambda: value(sum(gw.app[FLEET].is_leader() for gw in (a, b)) == 1), 5.0, "one leader"
    )
    leader, follower = (a, b) if a.app[FLEET].is_leader() else (b, a)
    seen: list[Observation] = []
    engine = leader.app[DETECTOR].engine
    original = engine.observe

    def spy(obs: Observation) -> None:
        seen.append(obs)
        original(obs)

    engine.observe = spy  # type: ignore[method-assign]
    try:
        obs = Observation("a", "m1", "local", 200, 0.123, ts=1.0)
        for callback in follower.app[OBSERVERS]:
            callback(obs)  # as the follower's upstream reports an attempt
        await until(
            lambda: value(obs in seen), 2.0, "the follower's observation reached the leader"
        )
    finally:
        del engine.observe  # the app removes its own observer on exit


async def test_a_new_leader_takes_over_the_detectors_ejections(upstream, redis_server, gateway):
    up = await upstream("m1")
    config = fleet_config(up, redis_server.url, detector=DETECTOR_ON)
    a = await gateway(config, pm=pm(Recorder()))
    await until(lambda: value(a.app[FLEET].is_leader()), 5.0, "a leads")
    b = await gateway(config, pm=pm(Recorder()))
    a.app[BACKEND_STATE].eject("a", "detector: latency_p95")  # the leader's policy ejected it
    await until(
        lambda: value(b.app[BACKEND_STATE].ejected_ids() == {"a": "detector: latency_p95"}),
        1.0,
        "b sees the ejection",
    )
    assert b.app[DETECTOR].policy.ejected == {}
    await a.runner.cleanup()  # a stops cleanly and releases the lock
    await until(lambda: value(b.app[FLEET].is_leader()), 2.0, "b leads")
    # b now owns the ejection: its policy re-probes and readmits it when healthy.
    assert b.app[DETECTOR].policy.ejected == {"a": "m1"}
