"""ConsulDiscovery against the Consul double: blocking watches per DC, failover order,
index handling, outages and ACL errors."""

from __future__ import annotations

import logging

import pytest

from switchgear.discovery.consul import ConsulDiscovery, backend_from_entry
from switchgear.discovery.consul_client import ConsulACLError
from switchgear.discovery.registration import external_spec, register_backend
from tests.consul_double import ConsulCluster
from tests.discovery.conftest import consul_settings, poll, wait_until


async def _register(cluster: ConsulCluster, node: str, url: str, model: str, sid: str) -> None:
    settings = consul_settings(cluster.agent(node))
    await register_backend(settings, external_spec(settings, url, model, service_id=sid))


def _ids(registry, model="m1"):  # noqa: ANN001, ANN202
    return [b.id for b in registry.backends(model)]


async def test_follows_a_change_within_a_second(cluster, gw_settings, fake_backend, run_discovery):
    fb = await fake_backend()
    registry = await run_discovery(ConsulDiscovery(gw_settings))
    await _register(cluster, "node-1", fb.url, "m1", "b1")
    await wait_until(registry, lambda: _ids(registry) == ["b1@dc1"])
    backend = registry.backends("m1")[0]
    assert backend.url == fb.url and backend.datacenter == "dc1" and backend.source == "consul"
    assert registry.local_datacenter == "dc1" and not registry.degraded

    fb.healthy = False  # the agent's HTTP check turns critical → leaves ?passing
    took = await wait_until(registry, lambda: _ids(registry) == [], within=3.0)
    assert took < 1.0
    fb.healthy = True
    took = await wait_until(registry, lambda: _ids(registry) == ["b1@dc1"], within=3.0)
    assert took < 1.0


async def test_local_first_with_failover_to_the_next_datacenter(
    cluster, gw_settings, fake_backend, run_discovery
):
    local, remote = await fake_backend(), await fake_backend()
    await _register(cluster, "node-1", local.url, "m1", "w1")
    await _register(cluster, "node-2", remote.url, "m1", "w2")
    registry = await run_discovery(ConsulDiscovery(gw_settings))
    await wait_until(registry, lambda: _ids(registry) == ["w1@dc1", "w2@dc2"])
    assert registry.datacenter_order == ("dc1", "dc2")
    assert [dc for dc, _ in registry.by_datacenter("m1")] == ["dc1", "dc2"]

    local.healthy = False
    await wait_until(registry, lambda: _ids(registry) == ["w2@dc2"], within=2.0)
    local.healthy = True
    await wait_until(registry, lambda: _ids(registry) == ["w1@dc1", "w2@dc2"], within=2.0)


async def test_index_is_reset_when_it_goes_backwards(
    cluster, gw_settings, fake_backend, run_discovery
):
    fb = await fake_backend()
    await _register(cluster, "node-1", fb.url, "m1", "b1")
    registry = await run_discovery(ConsulDiscovery(gw_settings))
    await wait_until(registry, lambda: _ids(registry) == ["b1@dc1"])

    def blocking_sent() -> bool:
        return any(
            p == "/v1/health/service/llm" and "index" in q for _, _, p, q in cluster.request_log
        )

    await poll(blocking_sent)  # the dc1 watch is now parked on a blocking query

    cluster.reset_index("dc1", 2)  # snapshot restore: dc1's index space went backwards
    mark = len(cluster.request_log)
    await _register(cluster, "node-1", fb.url, "m2", "b2")
    await wait_until(
        registry, lambda: [b.id for b in registry.backends("m2")] == ["b2@dc1"], within=4.0
    )

    def after() -> list[dict[str, str]]:
        return [
            q
            for node, _, p, q in cluster.request_log[mark:]
            if node == "gw-node" and p == "/v1/health/service/llm" and q.get("dc") == "dc1"
        ]

    # after the lower index came back, the next read was a fresh non-blocking one
    await poll(lambda: any("index" not in q for q in after()))
    assert all(int(q["index"]) >= 1 for q in after() if "index" in q)


async def test_unreachable_consul_keeps_last_known_backends(
    cluster, gw_settings, fake_backend, run_discovery
):
    fb = await fake_backend()
    await _register(cluster, "node-1", fb.url, "m1", "b1")
    registry = await run_discovery(ConsulDiscovery(gw_settings))
    await wait_until(registry, lambda: _ids(registry) == ["b1@dc1"])
    gw = cluster.agent("gw-node")

    await gw.stop_listener()
    await wait_until(registry, lambda: registry.degraded, within=3.0)
    assert _ids(registry) == ["b1@dc1"]
    assert "Cannot connect" in registry.sources()["consul"].detail

    await gw.start_listener()
    await wait_until(registry, lambda: not registry.degraded, within=3.0)
    assert _ids(registry) == ["b1@dc1"]


async def test_unreachable_remote_datacenter_keeps_its_backends(
    cluster, gw_settings, fake_backend, run_discovery
):
    fb = await fake_backend()
    await _register(cluster, "node-2", fb.url, "m1", "w2")
    registry = await run_discovery(ConsulDiscovery(gw_settings))
    await wait_until(registry, lambda: _ids(registry) == ["w2@dc2"])
    cluster.set_reachable("dc2", False)
    await wait_until(registry, lambda: registry.degraded, within=3.0)
    assert "Remote DC has no server currently reachable" in registry.sources()["consul"].detail
    assert _ids(registry) == ["w2@dc2"]
    cluster.set_reachable("dc2", True)
    await wait_until(registry, lambda: not registry.degraded, within=3.0)


async def test_datacenter_that_left_is_dropped(cluster, gw_settings, fake_backend, run_discovery):
    fb = await fake_backend()
    await _register(cluster, "node-2", fb.url, "m1", "w2")
    registry = await run_discovery(ConsulDiscovery(gw_settings))
    await wait_until(registry, lambda: _ids(registry) == ["w2@dc2"])
    cluster.remove_datacenter("dc2")
    await wait_until(
        registry,
        lambda: _ids(registry) == [] and registry.datacenter_order == ("dc1",),
        within=4.0,
    )


async def test_wrong_token_is_a_clear_error_at_start(cluster, gw_settings):
    cluster.acl.enabled, cluster.acl.default_policy = True, "deny"
    discovery = ConsulDiscovery(gw_settings.model_copy(update={"token": "not-a-token"}))
    with pytest.raises(ConsulACLError, match="ACL not found.*token"):
        await discovery.preflight()
    cluster.acl.add_token("no-kv", {"service": {"": "read"}, "node": {"": "read"}})
    with pytest.raises(ConsulACLError, match="key:read"):
        await ConsulDiscovery(gw_settings.model_copy(update={"token": "no-kv"})).preflight()


async def test_filtered_results_are_logged(
    cluster, gw_settings, fake_backend, run_discovery, caplog
):
    fb = await fake_backend()
    await _register(cluster, "node-1", fb.url, "m1", "b1")
    cluster.acl.enabled, cluster.acl.default_policy = True, "deny"
    cluster.acl.add_token(
        "weak", {"service": {"other": "read"}, "node": {"": "read"}, "key": {"": "read"}}
    )
    caplog.set_level(logging.WARNING, "switchgear.discovery.consul")
    registry = await run_discovery(
        ConsulDiscovery(gw_settings.model_copy(update={"token": "weak"}))
    )
    await wait_until(registry, lambda: "consul" in registry.sources())
    assert _ids(registry) == []
    assert any("hid results" in r.getMessage() for r in caplog.records)


async def test_kv_model_catalogue_is_watched(cluster, gw_settings, run_discovery):
    import asyncio

    discovery = ConsulDiscovery(gw_settings)
    seen: list[dict] = []
    changed = asyncio.Event()

    def on_models(models):  # noqa: ANN001, ANN202
        seen.append(dict(models))
        changed.set()

    discovery.on_models(on_models)
    await run_discovery(discovery)
    dc1 = cluster.datacenters["dc1"]
    dc1.kv_put(
        "switchgear/models",
        b'{"big": {"fallback": ["small"], "aliases": ["chat"], "context_length": 8192}}',
    )
    await asyncio.wait_for(changed.wait(), 3.0)
    info = seen[-1]["big"]
    assert info.fallback == ("small",) and info.aliases == ("chat",) and info.context_length == 8192

    changed.clear()
    dc1.kv_put("switchgear/models", b"not json")  # ignored: the last good catalogue stays
    dc1.kv_put("switchgear/models", b'{"big": {"fallback": ["tiny"]}}')
    await asyncio.wait_for(changed.wait(), 3.0)
    assert seen[-1]["big"].fallback == ("tiny",)
    assert all("big" in s for s in seen)

    changed.clear()
    dc1.kv_delete("switchgear/models")
    await asyncio.wait_for(changed.wait(), 3.0)
    assert seen[-1] == {}


def test_backend_falls_back_to_the_node_address():
    entry = {
        "Node": {"Node": "n", "Address": "10.0.0.9", "Datacenter": "dc2"},
        "Service": {
            "ID": "s1",
            "Address": "",
            "Port": 8000,
            "Meta": {"model": "m", "protocol": "tgi", "url_path": ""},
        },
    }
    b = backend_from_entry(entry, "dc2")
    assert (
        b is not None
        and b.url == "http://10.0.0.9:8000"
        and b.protocol == "tgi"
        and b.id == "s1@dc2"
    )
    assert backend_from_entry({"Node": {}, "Service": {"ID": "x", "Meta": None}}, "dc1") is None


async def test_server_errors_back_off_and_recover(
    cluster, gw_settings, fake_backend, run_discovery
):
    fb = await fake_backend()
    await _register(cluster, "node-1", fb.url, "m1", "b1")
    registry = await run_discovery(ConsulDiscovery(gw_settings))
    await wait_until(registry, lambda: _ids(registry) == ["b1@dc1"])
    cluster.inject_errors(6, 500, "rpc error making call: leadership lost while committing log")
    cluster.datacenters["dc1"].kv_put(
        "wake", b"1"
    )  # wake the parked watches so they hit the errors
    await wait_until(registry, lambda: registry.degraded, within=4.0)
    cluster.agent("node-1").register(  # in-process: the injected errors are for HTTP callers
        {
            "name": "llm",
            "id": "b2",
            "port": 1,
            "meta": {"model": "m2"},
            "check": {"ttl": "1h", "status": "passing"},
        }
    )
    await wait_until(
        registry, lambda: [b.id for b in registry.backends("m2")] == ["b2@dc1"], within=4.0
    )
    await wait_until(registry, lambda: not registry.degraded, within=4.0)
    assert _ids(registry) == ["b1@dc1"]


async def test_token_revoked_later_keeps_the_last_known_backends(
    cluster, gw_settings, fake_backend, run_discovery
):
    fb = await fake_backend()
    await _register(cluster, "node-1", fb.url, "m1", "b1")
    cluster.acl.enabled, cluster.acl.default_policy = True, "deny"
    cluster.acl.add_token(
        "gw", {"service": {"": "read"}, "node": {"": "read"}, "key": {"": "read"}}
    )
    registry = await run_discovery(ConsulDiscovery(gw_settings.model_copy(update={"token": "gw"})))
    await wait_until(registry, lambda: _ids(registry) == ["b1@dc1"])
    del cluster.acl.tokens["gw"]
    cluster.datacenters["dc1"].kv_put("wake", b"1")
    await wait_until(registry, lambda: registry.degraded, within=4.0)
    assert "ACL not found" in registry.sources()["consul"].detail
    assert _ids(registry) == ["b1@dc1"]
