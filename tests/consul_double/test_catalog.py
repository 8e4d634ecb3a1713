"""health/service, catalog, coordinates and ``?dc=`` federation (contract §6, §7, §8, §12)."""

from __future__ import annotations

import asyncio

from tests.consul_double import ConsulCluster


async def _register(cluster: ConsulCluster, node: str, body: dict, status: str = "passing") -> None:
    agent = cluster.agent(node)
    agent.register({"check": {"ttl": "1h", "status": status}, **body})
    d = agent.dc
    async with asyncio.timeout(5):
        while not any(s.id == body["id"] for s in d.instances(body["name"])):
            await d.changed.wait()


async def test_health_service_shape(cluster, http):
    await _register(
        cluster,
        "node-a",
        {"name": "llm", "id": "a", "port": 8000, "tags": ["GPU", "vllm"], "meta": {"model": "m"}},
    )
    (entry,) = await (await http.get("/v1/health/service/llm")).json()
    assert entry["Node"]["Node"] == "node-a" and entry["Node"]["Datacenter"] == "dc1"
    assert entry["Node"]["Address"] == "127.0.0.1"
    svc = entry["Service"]
    assert (svc["ID"], svc["Service"], svc["Address"], svc["Port"]) == ("a", "llm", "", 8000)
    assert svc["Tags"] == ["GPU", "vllm"] and svc["Meta"] == {"model": "m"}
    assert svc["Weights"] == {"Passing": 1, "Warning": 1} and "Datacenter" not in svc
    assert {c["CheckID"] for c in entry["Checks"]} == {"serfHealth", "service:a"}
    assert all(isinstance(c["ServiceTags"], list) for c in entry["Checks"])


async def test_tagged_addresses_for_an_ipv4_service_address(cluster, http):
    await _register(
        cluster, "node-a", {"name": "llm", "id": "a", "address": "10.1.2.3", "port": 80}
    )
    (entry,) = await (await http.get("/v1/health/service/llm")).json()
    assert entry["Service"]["TaggedAddresses"]["lan_ipv4"] == {"Address": "10.1.2.3", "Port": 80}


async def test_tags_are_anded_case_insensitively_and_passing_excludes_warning(cluster, http):
    await _register(cluster, "node-a", {"name": "llm", "id": "a", "tags": ["GPU", "vllm"]})
    await _register(
        cluster, "node-a", {"name": "llm", "id": "b", "tags": ["gpu"]}, status="warning"
    )

    async def ids(query: str) -> list[str]:
        return sorted(
            e["Service"]["ID"]
            for e in await (await http.get(f"/v1/health/service/llm?{query}")).json()
        )

    assert await ids("tag=gpu") == ["a", "b"]
    assert await ids("tag=gpu&tag=VLLM") == ["a"]
    assert await ids("passing") == ["a"]
    assert await ids("passing=false") == ["a", "b"]


async def test_filter_is_refused_not_ignored(http):
    r = await http.get('/v1/health/service/llm?filter=Service.Meta.model == "m"')
    assert r.status == 500 and (await r.text()).startswith(
        "Failed to create boolean expression evaluator"
    )


async def test_datacenters_are_ordered_by_rtt(cluster, http):
    assert await (await http.get("/v1/catalog/datacenters")).json() == ["dc1", "dc3", "dc2"]
    cluster.add_datacenter("dc0", position=None)  # no coordinates: last
    assert await (await http.get("/v1/catalog/datacenters")).json() == ["dc1", "dc3", "dc2", "dc0"]
    r = await http.get("/v1/catalog/datacenters")
    assert "X-Consul-Index" not in r.headers
    coords = await (await http.get("/v1/coordinate/datacenters")).json()
    assert {c["Datacenter"] for c in coords} == {"dc1", "dc2", "dc3"} and coords[0][
        "AreaID"
    ] == "wan"


async def test_catalog_services_always_lists_consul(cluster, http):
    await _register(cluster, "node-a", {"name": "llm", "id": "a", "tags": ["x"]})
    services = await (await http.get("/v1/catalog/services")).json()
    assert services["consul"] == [] and services["llm"] == ["x"]
    rows = await (await http.get("/v1/catalog/service/llm")).json()
    assert rows[0]["ServiceID"] == "a" and rows[0]["Datacenter"] == "dc1"
    nodes = await (await http.get("/v1/catalog/nodes")).json()
    assert "node-a" in {n["Node"] for n in nodes}


async def test_dc_parameter_is_answered_by_the_remote_datacenter(cluster, http):
    await _register(cluster, "node-b", {"name": "llm", "id": "remote"})
    r = await http.get("/v1/health/service/llm?dc=dc2")
    (entry,) = await r.json()
    assert entry["Node"]["Datacenter"] == "dc2" and entry["Node"]["Address"] == "127.0.0.2"
    assert int(r.headers["X-Consul-Index"]) == cluster.datacenters["dc2"].index_of_service("llm")
    assert await (await http.get("/v1/health/service/llm")).json() == []


async def test_unknown_and_unreachable_datacenters_are_distinct_500s(cluster, http):
    r = await http.get("/v1/health/service/llm?dc=nowhere")
    assert (r.status, await r.text()) == (500, "No path to datacenter")
    assert r.headers["X-Consul-Index"] == "1" and r.headers["X-Consul-Knownleader"] == "false"
    cluster.set_reachable("dc2", False)
    r = await http.get("/v1/health/service/llm?dc=dc2")
    assert (r.status, await r.text()) == (500, "Remote DC has no server currently reachable")
    r = await http.put("/_double/dc/dc2/reachable", json={"reachable": True})
    assert r.status == 200 and (await http.get("/v1/health/service/llm?dc=dc2")).status == 200


async def test_blocking_with_dc_blocks_in_the_remote_datacenter(cluster, http):
    r = await http.get("/v1/health/service/llm?dc=dc2")
    idx = r.headers["X-Consul-Index"]
    pending = asyncio.ensure_future(http.get(f"/v1/health/service/llm?dc=dc2&index={idx}&wait=1m"))
    cluster.datacenters["dc1"].kv_put("noise", b"1")  # dc1 writes do not concern dc2's query
    await asyncio.sleep(0)
    cluster.agent("node-b").register({"name": "llm", "id": "r", "check": {"ttl": "1h"}})
    r = await asyncio.wait_for(pending, 5)
    assert [e["Service"]["ID"] for e in await r.json()] == ["r"]


async def test_stopped_listener_refuses_connections(cluster, agent, http):
    import aiohttp
    import pytest

    await agent.stop_listener()
    with pytest.raises(aiohttp.ClientConnectionError):
        await http.get("/v1/catalog/datacenters")
    await agent.start_listener()
    assert (await http.get("/v1/catalog/datacenters")).status == 200
