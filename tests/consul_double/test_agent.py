"""Agent endpoints, check state machine, the reaper and anti-entropy (contract §4, §5)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tests.consul_double import ConsulCluster
from tests.helpers import poll_until


async def _synced(cluster: ConsulCluster, dc: str, predicate) -> None:  # noqa: ANN001
    """Wait on the DC's change event until the catalog satisfies ``predicate``."""
    d = cluster.datacenters[dc]
    await poll_until(lambda: predicate(d), 5, "catalog state", wake=lambda _: d.changed.wait())


def _status(cluster: ConsulCluster, node: str, cid: str) -> str | None:
    chk = cluster.datacenters["dc1"].checks.get((node, cid))
    return chk.status if chk else None


@pytest.fixture
async def health_server() -> AsyncIterator[dict]:
    state = {"status": 200}

    async def health(_: web.Request) -> web.Response:
        return web.Response(status=state["status"], text="ok")

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    state["url"] = f"http://127.0.0.1:{runner.addresses[0][1]}/health"
    yield state
    await runner.cleanup()


async def test_defaults_of_check_ids_names_and_initial_critical(http, agent):
    body = {"name": "llm", "id": "a", "check": {"ttl": "10s"}, "checks": [{"ttl": "20s"}]}
    assert (await http.put("/v1/agent/service/register", json=body)).status == 200
    assert set(agent.checks) == {"service:a:1", "service:a:2"}
    assert all(
        c.status == "critical" and c.name == "Service 'llm' check" for c in agent.checks.values()
    )
    await http.put("/v1/agent/service/register", json={"name": "solo"})
    assert agent.services["solo"].id == "solo"  # ID defaults to the name


async def test_registration_reaches_the_catalog_asynchronously(cluster, http, agent):
    cluster.sync_delay = 0.05
    await http.put(
        "/v1/agent/service/register", json={"name": "llm", "id": "a", "check": {"ttl": "10s"}}
    )
    assert cluster.datacenters["dc1"].instances("llm") == []  # not read-after-register
    await _synced(cluster, "dc1", lambda d: d.instances("llm"))


async def test_ttl_pass_expire_and_output(cluster, http, agent):
    await http.put(
        "/v1/agent/service/register", json={"name": "llm", "id": "a", "check": {"ttl": "10s"}}
    )
    r = await http.put("/v1/agent/check/pass/service:a?note=all good")
    assert r.status == 200 and await r.read() == b""
    await _synced(cluster, "dc1", lambda d: _status(cluster, "node-a", "service:a") == "passing")
    cluster.clock.advance(11)
    await _synced(cluster, "dc1", lambda d: _status(cluster, "node-a", "service:a") == "critical")
    assert (
        agent.checks["service:a"].output
        == "TTL expired (last output before timeout follows): all good"
    )
    r = await http.put(
        "/v1/agent/check/update/service:a", json={"Status": "warning", "Output": "slow"}
    )
    assert r.status == 200 and agent.checks["service:a"].status == "warning"


async def test_output_only_changes_do_not_bump_the_catalog(cluster, http, agent):
    await http.put(
        "/v1/agent/service/register", json={"name": "llm", "id": "a", "check": {"ttl": "10s"}}
    )
    await http.put("/v1/agent/check/pass/service:a?note=1")
    await _synced(cluster, "dc1", lambda d: _status(cluster, "node-a", "service:a") == "passing")
    idx = cluster.datacenters["dc1"].index_of_service("llm")
    await http.put("/v1/agent/check/pass/service:a?note=2")
    await asyncio.sleep(0)  # let a (wrongly) scheduled sync run
    assert cluster.datacenters["dc1"].index_of_service("llm") == idx


async def test_unknown_ids_are_404_with_contract_text(http):
    r = await http.put("/v1/agent/service/deregister/nope")
    assert r.status == 404
    assert (
        await r.text()
        == 'Unknown service ID "nope". Ensure that the service ID is passed, not the service name.'
    )
    r = await http.put("/v1/agent/check/pass/nope")
    assert r.status == 404 and (await r.text()).startswith('Unknown check ID "nope"')


async def test_reregister_keeps_status_and_replace_existing_checks(http, agent):
    await http.put(
        "/v1/agent/service/register",
        json={
            "name": "llm",
            "id": "a",
            "checks": [{"ttl": "10s", "id": "t1"}, {"ttl": "10s", "id": "t2"}],
        },
    )
    await http.put("/v1/agent/check/pass/t1")
    await http.put(
        "/v1/agent/service/register",
        json={"name": "llm", "id": "a", "meta": {"v": "2"}, "checks": [{"ttl": "10s", "id": "t1"}]},
    )
    assert agent.checks["t1"].status == "passing" and "t2" in agent.checks
    await http.put(
        "/v1/agent/service/register?replace-existing-checks",
        json={"name": "llm", "id": "a", "checks": [{"ttl": "10s", "id": "t1"}]},
    )
    assert set(agent.checks) == {"t1"} and agent.checks["t1"].status == "passing"


async def test_http_check_is_probed(cluster, http, agent, health_server):
    cluster.clock.speed = 10.0
    check = {"http": health_server["url"], "interval": "1s", "timeout": "1s"}
    await http.put("/v1/agent/service/register", json={"name": "llm", "id": "a", "check": check})
    await _synced(cluster, "dc1", lambda d: _status(cluster, "node-a", "service:a") == "passing")
    assert agent.checks["service:a"].output.startswith(f"HTTP GET {health_server['url']}: 200 OK")
    health_server["status"] = 429
    await _synced(cluster, "dc1", lambda d: _status(cluster, "node-a", "service:a") == "warning")
    health_server["status"] = 500
    await _synced(cluster, "dc1", lambda d: _status(cluster, "node-a", "service:a") == "critical")


async def test_deregister_critical_service_after(cluster, http, agent):
    check = {
        "ttl": "10s",
        "DeregisterCriticalServiceAfter": "10s",
    }  # raised to the 1 minute minimum
    await http.put("/v1/agent/service/register", json={"name": "llm", "id": "a", "check": check})
    await _synced(cluster, "dc1", lambda d: d.instances("llm"))
    cluster.clock.advance(45)  # reaper ran once; critical for 45 s < 60 s
    await asyncio.sleep(0)
    assert "a" in agent.services
    cluster.clock.advance(30)
    await _synced(cluster, "dc1", lambda d: not d.instances("llm"))
    assert "a" not in agent.services


async def test_forced_status_and_node_failure(cluster, http, agent):
    await http.put(
        "/v1/agent/service/register", json={"name": "llm", "id": "a", "check": {"ttl": "1h"}}
    )
    r = await http.put("/_double/dc/dc1/node/node-a/check/service:a", json={"status": "passing"})
    assert r.status == 200
    passing = "/v1/health/service/llm?passing"
    await _synced(cluster, "dc1", lambda d: _status(cluster, "node-a", "service:a") == "passing")
    assert len(await (await http.get(passing)).json()) == 1
    await http.put("/_double/dc/dc1/node/node-a/fail")
    assert await (await http.get(passing)).json() == []  # serfHealth counts for every service
    await http.put("/_double/dc/dc1/node/node-a/recover")
    assert len(await (await http.get(passing)).json()) == 1


async def test_agent_forgetting_removes_catalog_rows(cluster, http, agent):
    await http.put(
        "/v1/agent/service/register", json={"name": "llm", "id": "a", "check": {"ttl": "1h"}}
    )
    await _synced(cluster, "dc1", lambda d: d.instances("llm"))
    agent.forget_everything()
    await _synced(cluster, "dc1", lambda d: not d.instances("llm"))
    r = await http.get("/v1/agent/service/a")
    assert r.status == 404


async def test_agent_reads(http, agent):
    await http.put(
        "/v1/agent/service/register",
        json={"name": "llm", "id": "a", "port": 9, "check": {"ttl": "1h"}},
    )
    services = await (await http.get("/v1/agent/services")).json()
    assert services["a"]["Service"] == "llm" and services["a"]["Datacenter"] == "dc1"
    assert (await (await http.get("/v1/agent/service/a")).json())["Port"] == 9
    assert "service:a" in await (await http.get("/v1/agent/checks")).json()
    me = await (await http.get("/v1/agent/self")).json()
    assert me["Config"] == {"Datacenter": "dc1", "NodeName": "node-a"}
