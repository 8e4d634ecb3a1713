"""The /_double/ control surface over HTTP (contract §13), and agent routes during an outage."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.consul_double.conftest import parked, poll


async def test_injected_errors_over_http(http):
    assert (
        await http.put("/_double/inject", json={"count": 1, "status": 502, "body": "bad gateway"})
    ).status == 200
    r = await http.get("/v1/catalog/datacenters")
    assert (r.status, await r.text()) == (502, "bad gateway")
    assert (await http.get("/v1/catalog/datacenters")).status == 200


async def test_injected_latency_over_http(http):
    loop = asyncio.get_running_loop()
    assert (await http.put("/_double/inject", json={"count": 1, "delay": 0.2})).status == 200
    start = loop.time()
    assert (await http.get("/v1/catalog/datacenters")).status == 200
    assert loop.time() - start >= 0.2


async def test_index_reset_over_http(cluster, http):
    for i in range(5):
        await http.put(f"/v1/kv/k{i}", data=b"v")
    assert (await http.put("/_double/dc/dc1/index", json={"index": 2})).status == 200
    assert cluster.datacenters["dc1"].index == 2
    r = await http.get("/v1/kv/k4")
    assert int(r.headers["X-Consul-Index"]) <= 2


async def test_clock_advance_over_http(cluster, http):
    idx = (await http.get("/v1/kv/x")).headers["X-Consul-Index"]
    pending = asyncio.ensure_future(http.get(f"/v1/kv/x?index={idx}&wait=5m"))
    await poll(lambda: parked(cluster, "/v1/kv/x"))
    async with aiohttp.ClientSession(base_url=cluster.agent("node-b").url) as other:
        assert (await other.put("/_double/clock/advance", json={"seconds": 600})).status == 200
    assert (await asyncio.wait_for(pending, 5)).status == 404


async def test_stop_and_start_a_listener_over_http(cluster, agent, http):
    async with aiohttp.ClientSession(base_url=cluster.agent("node-b").url) as other:
        assert (await other.put("/_double/agent/node-a/stop")).status == 200
        await poll(lambda: not agent.listening)
        assert (await other.put("/_double/agent/node-a/start")).status == 200
    assert (await http.get("/v1/catalog/datacenters")).status == 200


async def test_agent_endpoints_work_while_its_servers_are_unreachable(cluster, http, agent):
    cluster.set_reachable("dc1", False)
    r = await http.get("/v1/health/service/llm")
    assert r.status == 500
    r = await http.put(
        "/v1/agent/service/register", json={"name": "llm", "id": "a", "check": {"ttl": "1h"}}
    )
    assert r.status == 200 and "a" in agent.services
    assert cluster.datacenters["dc1"].instances("llm") == []  # the sync waits for the servers
    cluster.set_reachable("dc1", True)
    d = cluster.datacenters["dc1"]
    async with asyncio.timeout(5):
        while not d.instances("llm"):
            await d.changed.wait()
