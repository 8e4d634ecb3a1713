"""Backend health shared over Redis: ejections, readmissions and breakers reach every gateway."""

from __future__ import annotations

import aiohttp
import pytest

from switchgear.proxy.keys import BACKEND_STATE, CATALOG, FLEET
from tests.fakes import Fault
from tests.proxy.conftest import backends
from tests.state.conftest import (
    BODY,
    ejection_seen,
    fleet_config,
    readmission_seen,
    until,
    value,
)


@pytest.mark.slow
async def test_an_ejection_by_one_gateway_process_is_seen_by_the_other_within_a_second(
    upstream, redis_server, gateways
):
    up = await upstream("m1")
    a, b = (
        await gateways(fleet_config(up, redis_server.url)),
        await gateways(fleet_config(up, redis_server.url)),
    )
    async with aiohttp.ClientSession() as s:
        await ejection_seen(s, a, b)
        async with s.post(b.url + "/v1/chat/completions", json=BODY) as r:
            assert r.status == 503  # its only backend is out on this gateway too
        await readmission_seen(s, b, a)


async def test_a_breaker_opened_by_one_gateway_opens_on_the_other(
    upstream, redis_server, gateway, http
):
    up = await upstream("m1")
    config = fleet_config(up, redis_server.url, breaker={"failures": 2, "cooldown": 30})
    a, b = await gateway(config), await gateway(config)
    up.always = Fault(status=500)
    async with http.post(a.url + "/v1/chat/completions", json=BODY) as r:
        assert r.status >= 500
    await until(
        lambda: value(b.app[BACKEND_STATE].describe("a")["breaker"] == "open"),
        1.0,
        "breaker open on the other gateway",
    )
    assert b.app[BACKEND_STATE].healthy("a") is False
    up.always = None
    b.app[BACKEND_STATE].success("a")  # a probe that passed on b closes it everywhere
    await until(
        lambda: value(a.app[BACKEND_STATE].describe("a")["breaker"] == "closed"),
        1.0,
        "breaker closed on the first gateway",
    )


async def test_a_gateway_that_starts_loads_the_fleets_ejections_first(
    upstream, redis_server, gateway
):
    up = await upstream("m1")
    a = await gateway(fleet_config(up, redis_server.url))
    a.app[BACKEND_STATE].eject("a", "detector: latency")
    with redis_server.client() as c:

        async def written() -> bool:
            return c.hget("t:ejected", "a") == b"detector: latency"

        await until(written, 1.0, "ejection written to Redis")
    b = await gateway(fleet_config(up, redis_server.url))  # serves only after it loaded
    assert b.app[BACKEND_STATE].describe("a")["ejected"] == "detector: latency"
    assert b.app[FLEET].store is not None and b.app[FLEET].store.up


async def test_a_fallback_switch_by_one_gateway_reroutes_the_others(
    upstream, redis_server, gateway, http
):
    """The detector's fallback (``Policies.set_fallback``) reaches every gateway, and one that
    starts later loads it; switching back reaches them too."""
    primary, fallback = await upstream("m1"), await upstream("m2")
    config = fleet_config(primary, redis_server.url)
    config["backends"] = [*backends(primary, id="a"), *backends(fallback, id="b")]
    config["models"] = {"m1": {"fallback": ["m2"]}}
    a, b = await gateway(config), await gateway(config)

    async def served_by() -> str:
        async with http.post(b.url + "/v1/chat/completions", json=BODY) as r:
            assert r.status == 200
            return str((await r.json())["model"])

    assert await served_by() == "m1"
    a.app[CATALOG].policies.set_fallback("m1", True, "detector")
    await until(
        lambda: value("m1" in b.app[CATALOG].policies.in_fallback),
        1.0,
        "fallback switch seen by the other gateway",
    )
    assert await served_by() == "m2"
    late = await gateway(config)  # loads the fleet's switches before it serves
    assert late.app[CATALOG].policies.in_fallback == {"m1"}
    a.app[CATALOG].policies.set_fallback("m1", False)
    await until(
        lambda: value(not b.app[CATALOG].policies.in_fallback),
        1.0,
        "switch back seen by the other gateway",
    )
    assert await served_by() == "m1"
