"""The gateway (switchgear.proxy) routing through Consul discovery, against the double.

Two datacenters with one OpenAI-compatible fake backend each; the gateway's agent is in dc1.
Kill the dc1 backend: within 2 s requests are answered from dc2 and none fails; bring it back:
traffic returns to dc1; stop Consul: the gateway keeps serving and reports degraded.
"""

from __future__ import annotations

import asyncio

from switchgear.discovery.registration import external_spec, register_backend
from switchgear.plugins.manager import make_plugin_manager
from switchgear.proxy import keys
from switchgear.proxy.app import create_app
from switchgear.settings import parse_settings
from tests.discovery.conftest import consul_settings, wait_until
from tests.fakes import FakeUpstream

PLUGINS = (
    "switchgear.default_plugins.consul_discovery",
    "switchgear.default_plugins.balancing",
    "switchgear.default_plugins.openai_adapter",
)
CHAT = {"model": "m1", "messages": [{"role": "user", "content": "hi"}]}


async def test_local_first_failover_and_consul_outage(cluster, gw_settings, aiohttp_client):
    ups = {}
    for node, sid in (("node-1", "w1"), ("node-2", "w2")):
        up = ups[sid] = await FakeUpstream(model="m1", name=sid).start()
        s = consul_settings(cluster.agent(node))
        spec = external_spec(s, up.url, "m1", service_id=sid, meta={"health_path": "/v1/models"})
        await register_backend(s, spec)
    settings = parse_settings(
        {
            "consul": gw_settings.model_dump(),
            "timeouts": {"connect": 1.0, "ttft": 2.0, "idle": 2.0, "total": 10.0},
            "retries": {"attempts": 3, "backoff_base": 0.005, "backoff_max": 0.02},
            "breaker": {"failures": 3, "cooldown": 0.3},
        }
    )
    pm = make_plugin_manager(load_entrypoints=False, builtins=PLUGINS)
    app = create_app(settings, plugin_manager=pm)
    client = await aiohttp_client(app)
    registry = app[keys.REGISTRY]
    try:
        await wait_until(registry, lambda: len(registry.backends("m1")) == 2)

        async def ask() -> str:
            r = await client.post("/v1/chat/completions", json=CHAT)
            assert r.status == 200, await r.text()
            return r.headers["x-switchgear-backend"]

        assert "dc1" in await ask()

        await ups["w1"].close()  # the dc1 worker dies
        loop = asyncio.get_running_loop()
        start = loop.time()
        while "dc2" not in await ask():  # every request must still succeed
            assert loop.time() - start < 2.0, "traffic did not move to dc2 within 2 s"
        for _ in range(5):
            assert "dc2" in await ask()

        await ups["w1"].start()  # back on the same port: its check passes again
        await wait_until(registry, lambda: len(registry.backends("m1")) == 2, within=3.0)
        start = loop.time()
        while "dc1" not in await ask():  # the gateway's breaker may hold w1 out for its cooldown
            assert loop.time() - start < 2.0, "traffic did not return to dc1"

        await cluster.agent("gw-node").stop_listener()  # Consul unreachable
        await wait_until(registry, lambda: registry.degraded, within=3.0)
        assert "dc1" in await ask()
        ready = await (await client.get("/readyz")).json()
        assert ready["degraded_discovery"] is True
    finally:
        for up in ups.values():
            await up.close()
