"""The double through py-consul's asyncio client, the way switchgear uses it (contract §14)."""

from __future__ import annotations

import asyncio

import consul
import consul.aio
import pytest
from consul.exceptions import BadRequest


@pytest.fixture
async def client(agent):  # noqa: ANN001, ANN201
    c = consul.aio.Consul(host="127.0.0.1", port=agent.port, connections_timeout=30)
    yield c
    await c.close()


async def test_register_discover_deregister(cluster, client, agent):
    check = consul.Check.http("http://127.0.0.1:1/health", "10s", timeout="2s", deregister="2m")
    assert (
        await client.agent.service.register(
            "llm",
            service_id="llm-1",
            address="10.1.2.3",
            port=8000,
            tags=["gpu"],
            meta={"model": "qwen2-7b"},
            check=check,
        )
        is True
    )
    assert agent.checks["service:llm-1"].deregister_after == 120.0
    index, nodes = await client.health.service("llm")
    while not nodes:
        index, nodes = await client.health.service("llm", index=index, wait="2s")
    assert isinstance(index, str) and nodes[0]["Service"]["Meta"] == {"model": "qwen2-7b"}
    index, passing = await client.health.service("llm", passing=True)
    assert passing == []  # a new check starts critical
    assert await client.agent.service.deregister("llm-1") is True
    assert await client.agent.service.deregister("llm-1") is False  # 404 → False, not an exception
    assert await client.agent.check.ttl_pass("nope") is False


async def test_kv_roundtrip(client):
    index, entry = await client.kv.get("missing")
    assert entry is None and int(index) >= 1
    assert await client.kv.put("cfg/models", '{"a": {}}') is True
    assert await client.kv.put("cfg/models", "x", cas=0) is False
    index, entry = await client.kv.get("cfg/models")
    assert entry["Value"] == b'{"a": {}}'
    index, entries = await client.kv.get("cfg/", recurse=True)
    assert [e["Key"] for e in entries] == ["cfg/models"]


async def test_datacenters_and_dc_errors(client, cluster):
    assert await client.catalog.datacenters() == ["dc1", "dc3", "dc2"]
    with pytest.raises(consul.ConsulException, match="No path to datacenter"):
        await client.health.service("llm", dc="nowhere")
    cluster.set_reachable("dc2", False)
    with pytest.raises(consul.ConsulException, match="Remote DC has no server currently reachable"):
        await client.health.service("llm", dc="dc2")


async def test_acl_errors_are_exceptions(client, acl_cluster):
    with pytest.raises(consul.ACLPermissionDenied, match="ACL not found"):
        await client.health.service("llm", token="bogus")
    with pytest.raises(consul.ACLPermissionDenied, match="service:write"):
        await client.agent.service.register("llm", token="gw")
    with pytest.raises(BadRequest):
        await client.agent.service.register(
            "llm", token="root", check={"ttl": "1s", "interval": "1s"}
        )


async def test_blocking_call_returns_on_change(client, cluster):
    index, _ = await client.catalog.services()
    pending = asyncio.ensure_future(client.catalog.services(index=index, wait="1m"))
    await asyncio.sleep(0)
    cluster.agent("node-a").register({"name": "new", "check": {"ttl": "1h"}})
    index2, services = await asyncio.wait_for(pending, 5)
    assert int(index2) > int(index) and "new" in services
