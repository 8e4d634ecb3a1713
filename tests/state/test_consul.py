"""Backend health and detector leadership through Consul (``state.consul``), against the
Consul double, with real gateway processes where the fleet matters."""

from __future__ import annotations

import os
import signal
from typing import Any

import aiohttp
import pytest

from switchgear.errors import ConfigError
from switchgear.proxy.keys import BACKEND_STATE, CATALOG, FLEET
from switchgear.settings import parse_settings
from tests.consul_double import ListeningAgent
from tests.proxy.conftest import backends
from tests.state.conftest import (
    ADMIN,
    BODY,
    CONSUL_SPEED,
    backend_row,
    consul_fleet_config,
    ejection_seen,
    gauge,
    readmission_seen,
    traffic,
    until,
    value,
)
from tests.state.test_leader import DETECTOR_ON, Recorder, leader_gauge, pm


def kv_keys(agent: ListeningAgent) -> set[str]:
    return set(agent.dc.kv)


@pytest.mark.slow
async def test_an_ejection_by_one_gateway_process_reaches_the_other_through_consul(
    upstream, consul_agent, gateways
):
    up = await upstream("m1")
    config = consul_fleet_config(up, consul_agent)
    a, b = await gateways(config), await gateways(config)
    async with aiohttp.ClientSession() as s:
        await ejection_seen(s, a, b)
        assert "switchgear/fleet/t/health/ejected/a" in kv_keys(consul_agent)
        async with s.post(b.url + "/v1/chat/completions", json=BODY) as r:
            assert r.status == 503  # its only backend is out on this gateway too
        await readmission_seen(s, b, a)
        assert "switchgear/fleet/t/health/ejected/a" not in kv_keys(consul_agent)


@pytest.mark.slow
async def test_one_leader_through_a_consul_session_and_a_handover_when_it_dies(
    upstream, consul_agent, gateways
):
    up = await upstream("m1")
    config = consul_fleet_config(up, consul_agent, detector=DETECTOR_ON)
    a, b = await gateways(config), await gateways(config)
    async with aiohttp.ClientSession() as s:

        async def exactly_one() -> bool:
            return sorted([await leader_gauge(s, a.url), await leader_gauge(s, b.url)]) == [0, 1]

        await until(exactly_one, 5.0, "one leader")
        lock = consul_agent.dc.kv["switchgear/fleet/t/leader"]
        assert lock.session and lock.lock_index == 1
        leader, other = (a, b) if await leader_gauge(s, a.url) == 1 else (b, a)
        os.killpg(leader.proc.pid, signal.SIGKILL)  # dies without releasing the lock
        leader.proc.wait(timeout=10)

        async def took_over() -> bool:
            return await leader_gauge(s, other.url) == 1

        # Consul drops an unrenewed session up to 2 × its 10 s TTL (Consul time) after the
        # last renewal; the survivor looks every TTL/3 = 0.67 s (real time).
        handover = 2 * 10 / CONSUL_SPEED
        took = await until(took_over, handover + 0.7 + 1.0, "the survivor leads")
        assert took > 1.0  # it did wait for the dead leader's session to go
        assert await leader_gauge(s, other.url) == 1
        assert consul_agent.dc.kv["switchgear/fleet/t/leader"].lock_index == 2


@pytest.mark.slow
async def test_consul_down_fails_no_request_and_the_fleet_reconverges(
    upstream, consul_agent, gateways
):
    one, two = await upstream("m1", name="one"), await upstream("m1", name="two")
    config = consul_fleet_config(one, consul_agent)
    config["backends"] = backends(one, id="a") + backends(two, id="b")
    a, b = await gateways(config), await gateways(config)
    async with aiohttp.ClientSession() as s:

        async def both(up: float) -> bool:
            got = [await gauge(s, gw.url, "switchgear_state_consul_up") for gw in (a, b)]
            return got == [up, up]

        await until(lambda: both(1.0), 5, "both gateways on Consul")
        async with traffic(s, (a, b)) as statuses:
            await until(lambda: value(len(statuses) >= 20), 10, "traffic flows")
            await consul_agent.stop_listener()  # connections refused, watches cut
            await until(lambda: both(0.0), 10, "both gateways on local health")
            async with s.post(a.url + "/admin/backends/b/eject", headers=ADMIN) as r:
                assert r.status == 200  # applies here at once, waits for Consul
            assert (await backend_row(s, b.url, "b"))["ejected"] is None
            before = len(statuses)
            await until(lambda: value(len(statuses) >= before + 20), 10, "traffic on local state")
            await consul_agent.start_listener()  # same port, same state
            await until(lambda: both(1.0), 10, "both gateways back on Consul")

            async def b_ejected_on_b() -> bool:
                return (await backend_row(s, b.url, "b"))["ejected"] is not None

            await until(b_ejected_on_b, 5, "the ejection made while away reaches the other")
            after = len(statuses)
            await until(lambda: value(len(statuses) >= after + 20), 10, "traffic after")
    assert statuses and set(statuses) == {200}, sorted(set(statuses))


async def test_a_gateway_that_starts_loads_the_ejections_from_consul_first(
    upstream, consul_agent, gateway
):
    up = await upstream("m1")
    a = await gateway(consul_fleet_config(up, consul_agent))
    a.app[BACKEND_STATE].eject("a", "detector: latency")
    key = "switchgear/fleet/t/health/ejected/a"
    await until(lambda: value(key in kv_keys(consul_agent)), 1.0, "ejection written to Consul")
    b = await gateway(consul_fleet_config(up, consul_agent))  # serves only after it loaded
    assert b.app[BACKEND_STATE].describe("a")["ejected"] == "detector: latency"
    assert b.app[FLEET].consul is not None and b.app[FLEET].consul.up


async def test_breakers_and_fallback_switches_travel_through_consul(
    upstream, consul_agent, gateway, http
):
    primary, fallback = await upstream("m1"), await upstream("m2")
    config = consul_fleet_config(primary, consul_agent, breaker={"failures": 2, "cooldown": 30})
    config["backends"] = [*backends(primary, id="a"), *backends(fallback, id="b")]
    config["models"] = {"m1": {"fallback": ["m2"]}}
    a, b = await gateway(config), await gateway(config)
    a.app[BACKEND_STATE].failure("a", "upstream 500")
    a.app[BACKEND_STATE].failure("a", "upstream 500")
    await until(
        lambda: value(b.app[BACKEND_STATE].describe("a")["breaker"] == "open"),
        1.0,
        "breaker open on the other gateway",
    )
    b.app[BACKEND_STATE].success("a")
    await until(
        lambda: value(a.app[BACKEND_STATE].describe("a")["breaker"] == "closed"),
        1.0,
        "breaker closed on the first gateway",
    )
    a.app[CATALOG].policies.set_fallback("m1", True, "detector")
    await until(lambda: value("m1" in b.app[CATALOG].policies.in_fallback), 1.0, "fallback switch")
    late = await gateway(config)
    assert late.app[CATALOG].policies.in_fallback == {"m1"}
    a.app[CATALOG].policies.set_fallback("m1", False)
    await until(lambda: value(not b.app[CATALOG].policies.in_fallback), 1.0, "switch back")


async def test_with_redis_and_consul_limits_use_redis_and_health_uses_consul(
    upstream, consul_agent, redis_server, gateway, http
):
    up = await upstream("m1")
    config = consul_fleet_config(
        up, consul_agent, redis_server.url, rate_limits={"requests_per_minute": 3}
    )
    a, b = await gateway(config), await gateway(config)
    codes = []
    for gw in (a, b, a, b):
        async with http.post(gw.url + "/v1/chat/completions", json=BODY) as r:
            codes.append(r.status)
    assert codes == [200, 200, 200, 429]  # one limit for both, on Redis
    a.app[BACKEND_STATE].eject("a", "x")
    await until(
        lambda: value(b.app[BACKEND_STATE].ejected_ids() == {"a": "x"}), 1.0, "ejection on b"
    )
    assert "switchgear/fleet/t/health/ejected/a" in kv_keys(consul_agent)
    with redis_server.client() as c:
        assert c.exists("t:ejected") == 0  # health did not go to Redis


def test_state_on_consul_needs_a_consul_section():
    with pytest.raises(ConfigError, match="state.consul needs"):
        parse_settings({"state": {"consul": True}})
    ok = parse_settings({"state": {"consul": True}, "consul": consul_section_stub()})
    assert ok.state.consul


def consul_section_stub() -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": 8500}


async def test_a_leader_that_stops_cleanly_releases_at_once(upstream, consul_agent, gateway):
    up = await upstream("m1")
    config = consul_fleet_config(up, consul_agent, detector=DETECTOR_ON)
    a = await gateway(config, pm=pm(Recorder()))
    await until(lambda: value(a.app[FLEET].is_leader()), 5.0, "a leads")
    b = await gateway(config, pm=pm(Recorder()))
    assert not b.app[FLEET].is_leader()
    session = consul_agent.dc.kv["switchgear/fleet/t/leader"].session
    await a.runner.cleanup()  # releases the lock and destroys its session
    took = await until(lambda: value(b.app[FLEET].is_leader()), 2.0, "b leads")
    assert took < 2 * 10 / CONSUL_SPEED  # not the dead-leader path
    sessions = consul_agent.dc.session_table.sessions  # type: ignore[attr-defined]
    assert session not in sessions


async def test_a_token_without_key_write_is_named_once_and_health_stays_local(
    upstream, consul_agent, gateway, http, caplog
):
    acl = consul_agent.cluster.acl
    acl.enabled, acl.default_policy = True, "deny"
    acl.add_token("weak", {"key": {"": "read"}, "node": {"": "read"}, "service": {"": "read"}})
    up = await upstream("m1")
    config = consul_fleet_config(up, consul_agent)
    config["consul"]["token"] = "weak"
    a = await gateway(config)
    for reason in ("x", "y", "z"):
        a.app[BACKEND_STATE].eject("a", reason)
    assert a.app[BACKEND_STATE].ejected_ids() == {"a": "z"}  # applies here regardless

    def refused() -> list[str]:
        return [r.getMessage() for r in caplog.records if "Consul refused" in r.getMessage()]

    writes = a.app[FLEET].metrics.errors.labels("consul_health_write")
    await until(lambda: value(writes._value.get() >= 3), 10.0, "the write retried")
    assert len(refused()) == 1 and "key:write" in refused()[0]  # once, not per retry
    assert not any(k.startswith("switchgear/fleet/") for k in kv_keys(consul_agent))
    async with http.post(a.url + "/v1/chat/completions", json=BODY) as r:
        assert r.status == 503  # the only backend is ejected here; no Consul error reaches it
