"""Prepared queries (contract §10), including through py-consul's quirks (§14)."""

from __future__ import annotations

import asyncio

import consul.aio

from tests.consul_double import ConsulCluster


async def _put(
    cluster: ConsulCluster, node: str, sid: str, status: str = "passing", tags=()
) -> None:  # noqa: ANN001
    agent = cluster.agent(node)
    agent.register(
        {"name": "llm", "id": sid, "tags": list(tags), "check": {"ttl": "1h", "status": status}}
    )
    async with asyncio.timeout(5):
        while not any(s.id == sid for s in agent.dc.instances("llm")):
            await agent.dc.changed.wait()


async def test_create_get_and_404(http):
    r = await http.post("/v1/query", json={"Name": "q", "Service": {"Service": "llm"}})
    qid = (await r.json())["ID"]
    (q,) = await (await http.get(f"/v1/query/{qid}")).json()
    assert q["Name"] == "q" and q["Service"]["Service"] == "llm" and q["CreateIndex"] > 0
    assert [x["ID"] for x in await (await http.get("/v1/query")).json()] == [qid]
    r = await http.get("/v1/query/nope/execute")
    assert (r.status, await r.text()) == (404, "Query not found")
    r = await http.post("/v1/query", json={"Name": "bad", "Service": {}})
    assert (r.status, await r.text()) == (500, "Must provide a Service name to query")
    assert (await http.delete(f"/v1/query/{qid}")).status == 200
    assert (await http.get(f"/v1/query/{qid}")).status == 404


async def test_execute_local_then_nearest_failover(cluster, http):
    r = await http.post(
        "/v1/query",
        json={"Name": "llm", "Service": {"Service": "llm", "Failover": {"NearestN": 2}}},
    )
    assert r.status == 200
    await _put(cluster, "node-b", "remote")  # only dc2 (farther than dc3) has one
    body = await (await http.get("/v1/query/llm/execute")).json()
    assert (body["Datacenter"], body["Failovers"]) == (
        "dc2",
        2,
    )  # dc3 tried first (nearer), then dc2
    assert [n["Service"]["ID"] for n in body["Nodes"]] == ["remote"] and body["DNS"] == {"TTL": ""}
    await _put(
        cluster, "node-a", "local", status="warning"
    )  # warning still qualifies without OnlyPassing
    body = await (await http.get("/v1/query/llm/execute")).json()
    assert (body["Datacenter"], body["Failovers"]) == ("dc1", 0)


async def test_only_passing_tags_and_explicit_datacenters(cluster, http):
    await _put(cluster, "node-a", "warn", status="warning", tags=["gpu"])
    await _put(cluster, "node-b", "ok", tags=["GPU"])
    q = {
        "Name": "gpu",
        "Service": {
            "Service": "llm",
            "OnlyPassing": True,
            "Tags": ["gpu", "!cpu"],
            "Failover": {"Datacenters": ["nowhere", "dc2"]},
        },
    }
    await http.post("/v1/query", json=q)
    body = await (await http.get("/v1/query/gpu/execute")).json()
    assert (
        body["Datacenter"] == "dc2" and body["Failovers"] == 1
    )  # unknown DC names are skipped silently


async def test_py_consul_creates_prefix_templates(cluster, agent):
    await _put(cluster, "node-a", "a")
    c = consul.aio.Consul(host="127.0.0.1", port=agent.port, connections_timeout=30)
    try:
        created = await c.query.create("${name.suffix}", name="svc-")
        assert "ID" in created
        body = await c.query.execute("svc-llm")
        assert body["Service"] == "llm" and body["Datacenter"] == "dc1" and len(body["Nodes"]) == 1
    finally:
        await c.close()
