"""Redis down, slow or restarted never fails a request; the fleet converges when it returns."""

from __future__ import annotations

import signal

import aiohttp
import pytest

from switchgear.proxy.keys import BACKEND_STATE, FLEET, RATE_LIMITER
from tests.state.conftest import (
    ADMIN,
    BODY,
    backend_row,
    backends,
    fleet_config,
    gauge,
    traffic,
    until,
    value,
)


@pytest.mark.slow
async def test_redis_stopped_mid_traffic_fails_no_request_and_the_fleet_reconverges(
    upstream, redis_server, gateways
):
    one, two = await upstream("m1", name="one"), await upstream("m1", name="two")
    config = fleet_config(one, redis_server.url, rate_limits={"requests_per_minute": 100_000})
    config["backends"] = backends(one, id="a") + backends(two, id="b")
    a, b = await gateways(config), await gateways(config)
    async with aiohttp.ClientSession() as s, traffic(s, (a, b)) as statuses:
        await until(lambda: value(len(statuses) >= 20), 10, "traffic flows")
        redis_server.stop()  # SIGKILL: connections reset in the middle of traffic

        async def both(up: float) -> bool:
            got = [await gauge(s, gw.url, "switchgear_state_backend_up") for gw in (a, b)]
            return got == [up, up]

        await until(lambda: both(0.0), 5, "both gateways on local state")
        before = len(statuses)
        await until(lambda: value(len(statuses) >= before + 20), 10, "traffic on local state")
        # A health change while Redis is away applies locally and waits for it.
        async with s.post(a.url + "/admin/backends/b/eject", headers=ADMIN) as r:
            assert r.status == 200
        redis_server.start()  # same port, empty (no persistence)
        await until(lambda: both(1.0), 10, "both gateways back on Redis")

        async def b_sees_the_ejection() -> bool:
            return bool((await backend_row(s, b.url, "b"))["ejected"])

        await until(b_sees_the_ejection, 5, "the ejection made while away reached b")
        before = len(statuses)
        await until(lambda: value(len(statuses) >= before + 20), 10, "traffic on Redis")
    assert statuses.count(200) == len(statuses), sorted(set(statuses))
    with redis_server.client() as c:
        assert c.exists("t:rl:ip:127.0.0.1:r")  # limits are shared again
        assert c.hget("t:ejected", "b") == b"admin"
    fallbacks = [await _metric(gw.url, "switchgear_state_local_fallbacks_total") for gw in (a, b)]
    assert all(n is not None and n > 0 for n in fallbacks)
    warnings = [gw.output().count("state backend unreachable") for gw in (a, b)]
    assert warnings == [1, 1]  # one line per outage, not one per request


async def _metric(url: str, name: str) -> float | None:
    async with aiohttp.ClientSession() as s:
        return await gauge(s, url, name)


async def test_slow_redis_costs_one_timeout_then_local_limits_with_a_share(
    upstream, redis_server, gateway, http
):
    up = await upstream("m1")
    config = fleet_config(
        up,
        redis_server.url,
        rate_limits={"requests_per_minute": 10},
        state={"redis_url": redis_server.url, "key_prefix": "t", "timeout_s": 0.2, "fleet_size": 2},
    )
    gw = await gateway(config)
    url = gw.url + "/v1/chat/completions"
    async with http.post(url, json=BODY) as r:
        assert r.status == 200  # one request of the 10 taken in Redis
    assert redis_server.proc is not None
    redis_server.proc.send_signal(signal.SIGSTOP)  # Redis hangs: every call times out
    try:
        got = []
        for _ in range(8):
            async with http.post(url, json=BODY) as r:
                got.append(r.status)
        # Local fallback: this process's share is 10 / fleet_size = 5 per minute.
        assert got == [200] * 5 + [429] * 3
        assert gw.app[FLEET].store is not None and not gw.app[FLEET].store.up
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    store = gw.app[FLEET].store
    await until(lambda: value(store.up), 5, "Redis answers again")
    # Back on the shared bucket: 10 minus the first request, minus the one whose call timed
    # out if Redis still ran it when it woke up (a timed-out call may or may not have
    # happened: on a loaded host the client may not have sent it before its deadline).
    got = []
    for _ in range(10):
        async with http.post(url, json=BODY) as r:
            got.append(r.status)
    passed = got.count(200)
    assert passed in (8, 9) and got == [200] * passed + [429] * (10 - passed), got
    assert gw.app[RATE_LIMITER].fleet is gw.app[FLEET]


async def test_a_gateway_starts_and_serves_while_redis_is_down(
    upstream, redis_server, gateway, http
):
    up = await upstream("m1")
    redis_server.stop()
    config = fleet_config(up, redis_server.url, rate_limits={"requests_per_minute": 10})
    gw = await gateway(config)
    async with http.post(gw.url + "/v1/chat/completions", json=BODY) as r:
        assert r.status == 200
    gw.app[BACKEND_STATE].eject("a", "admin")  # applies locally, waits for Redis
    redis_server.start()
    store = gw.app[FLEET].store
    assert store is not None
    await until(lambda: value(store.up), 5, "Redis reached")
    with redis_server.client() as c:

        async def written() -> bool:
            return c.hget("t:ejected", "a") == b"admin"

        await until(written, 5, "the local ejection reached Redis")
