"""Blocking queries (contract §3) and per-DC index spaces (§3.2, §12)."""

from __future__ import annotations

import asyncio

import pytest

from tests.consul_double.blocking import DEFAULT_WAIT, MAX_WAIT, block_timeout
from tests.consul_double.conftest import parked, poll

REG = {"name": "llm", "id": "a", "port": 80, "meta": {"model": "m"}, "check": {"ttl": "30s"}}


async def _index(http, path: str) -> int:  # noqa: ANN001
    r = await http.get(path)
    return int(r.headers["X-Consul-Index"])


def test_timeout_defaults_clamps_and_jitter():
    for _ in range(200):
        assert DEFAULT_WAIT <= block_timeout(None) < DEFAULT_WAIT * 17 / 16
        assert DEFAULT_WAIT <= block_timeout(0) < DEFAULT_WAIT * 17 / 16
        assert MAX_WAIT <= block_timeout(3600) < MAX_WAIT * 17 / 16
        assert 2.0 <= block_timeout(2.0) < 2.0 * 17 / 16
    assert block_timeout(None, max_wait=1.0) == 1.0


async def test_index_zero_is_non_blocking_and_never_below_one(http):
    r = await http.get("/v1/health/service/nothing?index=0&wait=10m")
    assert r.status == 200 and int(r.headers["X-Consul-Index"]) >= 1
    r = await http.get("/v1/health/service/nothing?wait=10m")  # wait without index is ignored
    assert r.status == 200


async def test_bad_index_or_wait_is_400(http):
    r = await http.get("/v1/health/service/llm?index=abc")
    assert (r.status, await r.text()) == (400, "Invalid index")
    r = await http.get("/v1/health/service/llm?index=5&wait=soon")
    assert (r.status, await r.text()) == (400, "Invalid wait time")


async def test_blocks_until_the_service_changes(http):
    assert (await http.put("/v1/agent/service/register", json=REG)).status == 200
    idx = await _index(http, "/v1/health/service/llm")
    while idx < 2 or not (await (await http.get("/v1/health/service/llm")).json()):
        idx = await _index(
            http, f"/v1/health/service/llm?index={idx}&wait=2s"
        )  # until the sync landed
    pending = asyncio.ensure_future(
        http.get(f"/v1/health/service/llm?passing&index={idx}&wait=30s")
    )
    await asyncio.sleep(0)
    assert not pending.done()
    await http.put("/v1/agent/check/pass/service:a")
    r = await asyncio.wait_for(pending, 5)
    assert int(r.headers["X-Consul-Index"]) > idx
    assert [e["Service"]["ID"] for e in await r.json()] == ["a"]


async def test_timeout_answers_200_with_the_same_index(cluster, http):
    cluster.clock.speed = 20.0  # 2 s of clock time pass in 0.1 s
    idx = await _index(http, "/v1/health/service/llm")
    r = await http.get(f"/v1/health/service/llm?index={idx}&wait=2s")
    assert r.status == 200 and int(r.headers["X-Consul-Index"]) == idx and await r.json() == []


async def test_unrelated_write_may_wake_but_index_of_service_is_stable(cluster, http):
    idx = await _index(http, "/v1/health/service/llm")
    cluster.datacenters["dc1"].kv_put("x", b"1")  # wakes the waiter; llm's index is unchanged
    cluster.clock.speed = 20.0
    r = await http.get(f"/v1/health/service/llm?index={idx}&wait=1s")
    assert int(r.headers["X-Consul-Index"]) == idx


async def test_clock_advance_ends_a_wait(cluster, http):
    idx = await _index(http, "/v1/health/service/llm")
    pending = asyncio.ensure_future(http.get(f"/v1/health/service/llm?index={idx}&wait=5m"))
    await poll(lambda: parked(cluster, "/v1/health/service/llm"))
    cluster.clock.advance(400)
    r = await asyncio.wait_for(pending, 5)
    assert r.status == 200


async def test_indexes_are_per_datacenter(cluster, http):
    dc2 = cluster.datacenters["dc2"]
    for i in range(5):
        dc2.kv_put(f"k{i}", b"v")
    i1 = await _index(http, "/v1/kv/k0?recurse")
    i2 = await _index(http, "/v1/kv/k0?recurse&dc=dc2")
    assert i1 != i2 and i2 == dc2.kv["k0"].modify_index


async def test_index_that_went_backwards_blocks_until_timeout(cluster, http):
    dc1 = cluster.datacenters["dc1"]
    for i in range(5):
        dc1.kv_put("key", str(i).encode())
    old = await _index(http, "/v1/kv/key")
    cluster.reset_index("dc1", 2)
    cluster.clock.speed = 20.0
    dc1.kv_put("key", b"new")  # index 3 < old: a client holding `old` is not woken
    r = await http.get(f"/v1/kv/key?index={old}&wait=1s")
    assert int(r.headers["X-Consul-Index"]) == 3 < old
    assert dc1.kv["key"].value == b"new"


@pytest.mark.parametrize("missing_service", [True, False])
async def test_last_extinction_index(http, agent, missing_service):
    dc1 = agent.dc
    if missing_service:
        assert await _index(http, "/v1/health/service/never") >= 1
        return
    await http.put("/v1/agent/service/register", json=REG)
    await http.put("/v1/agent/service/deregister/a")
    r = await http.get("/v1/health/service/llm")
    while dc1.instances("llm") or int(r.headers["X-Consul-Index"]) < 2:
        r = await http.get(f"/v1/health/service/llm?index={r.headers['X-Consul-Index']}&wait=2s")
    assert int(r.headers["X-Consul-Index"]) == dc1.extinction_index
