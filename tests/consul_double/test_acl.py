"""ACL outcomes (contract §11): 403 on writes and single reads, silent filtering on lists."""

from __future__ import annotations

import asyncio

from tests.consul_double import ConsulCluster


def _h(token: str) -> dict[str, str]:
    return {"X-Consul-Token": token}


async def _seed(cluster: ConsulCluster) -> None:
    for node, sid, name in (
        ("node-a", "a", "llm"),
        ("node-a", "s", "secret"),
        ("node-b", "r", "llm"),
    ):
        agent = cluster.agent(node)
        agent.register({"name": name, "id": sid, "check": {"ttl": "1h", "status": "passing"}})
    async with asyncio.timeout(5):
        while not (
            cluster.datacenters["dc1"].instances("secret")
            and cluster.datacenters["dc2"].instances("llm")
        ):
            await asyncio.wait(
                [asyncio.ensure_future(d.changed.wait()) for d in cluster.datacenters.values()],
                return_when=asyncio.FIRST_COMPLETED,
            )


async def test_default_policy_header_even_when_disabled(cluster, http):
    r = await http.get("/v1/catalog/datacenters")
    assert r.headers["X-Consul-Default-Acl-Policy"] == "allow"


async def test_write_denied_and_unknown_token(cluster, http, acl_cluster):
    body = {"name": "llm", "id": "x"}
    r = await http.put("/v1/agent/service/register", json=body, headers=_h("gw"))
    assert r.status == 403
    text = await r.text()
    assert (
        text.startswith("Permission denied: token with AccessorID")
        and "'service:write' on \"llm\"" in text
    )
    r = await http.put("/v1/agent/service/register", json=body, headers=_h("bogus"))
    assert (r.status, await r.text()) == (403, "ACL not found")
    r = await http.put(
        "/v1/agent/service/register", json=body, headers={"Authorization": "Bearer llm-writer"}
    )
    assert r.status == 200
    r = await http.put("/v1/agent/service/register?token=llm-writer", json={"name": "other"})
    assert r.status == 403  # ?token= is honoured first
    assert r.headers["X-Consul-Default-Acl-Policy"] == "deny"


async def test_discovery_reads_are_filtered_silently(cluster, http, acl_cluster):
    await _seed(cluster)
    acl_cluster.add_token("llm-only", {"service": {"llm": "read"}, "node": {"": "read"}})
    r = await http.get("/v1/catalog/services", headers=_h("llm-only"))
    assert r.status == 200 and set(await r.json()) == {"llm"}
    assert r.headers["X-Consul-Results-Filtered-By-Acls"] == "true"
    r = await http.get("/v1/health/service/secret", headers=_h("llm-only"))
    assert r.status == 200 and await r.json() == []
    assert r.headers["X-Consul-Results-Filtered-By-Acls"] == "true"
    r = await http.get("/v1/health/service/secret")  # anonymous: filtered, but no header
    assert await r.json() == [] and "X-Consul-Results-Filtered-By-Acls" not in r.headers
    r = await http.get("/v1/health/service/secret", headers=_h("bogus"))
    assert (r.status, await r.text()) == (403, "ACL not found")
    r = await http.get("/v1/health/service/secret", headers=_h("root"))
    assert len(await r.json()) == 1


async def test_kv_single_read_is_403_list_read_is_filtered(cluster, http, acl_cluster):
    dc1 = cluster.datacenters["dc1"]
    dc1.kv_put("switchgear/models", b"{}")
    dc1.kv_put("private/x", b"1")
    assert (await http.get("/v1/kv/private/x", headers=_h("gw"))).status == 403
    assert (await http.get("/v1/kv/switchgear/models", headers=_h("gw"))).status == 200
    r = await http.get("/v1/kv/?recurse", headers=_h("gw"))
    assert [e["Key"] for e in await r.json()] == ["switchgear/models"]
    assert r.headers["X-Consul-Results-Filtered-By-Acls"] == "true"
    assert (await http.put("/v1/kv/switchgear/models", data=b"{}", headers=_h("gw"))).status == 403


async def test_local_token_is_anonymous_in_other_datacenters(cluster, http, acl_cluster):
    await _seed(cluster)
    r = await http.get("/v1/health/service/llm", headers=_h("local-gw"))
    assert len(await r.json()) == 1
    r = await http.get("/v1/health/service/llm?dc=dc2", headers=_h("local-gw"))
    assert r.status == 200 and await r.json() == []
    r = await http.get("/v1/health/service/llm?dc=dc2", headers=_h("gw"))
    assert len(await r.json()) == 1  # a global token works everywhere
