"""The gateway with Consul, against the double: the start-up ACL check (in-process and
through ``switchgear serve``), the KV model catalogue changing routing on a running gateway,
and registering external backends through the admin API."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiohttp.test_utils import TestClient

from switchgear.discovery.consul_client import ConsulACLError
from switchgear.discovery.registration import external_spec, register_backend
from switchgear.plugins.manager import make_plugin_manager
from switchgear.proxy import keys
from switchgear.proxy.app import create_app
from switchgear.proxy.server import start
from switchgear.settings import parse_settings
from switchgear.settings.consul import ConsulSettings
from tests.consul_double import ConsulCluster
from tests.discovery.conftest import consul_settings, wait_until
from tests.fakes import FakeUpstream, Fault
from tests.helpers import poll_until

PLUGINS = (
    "switchgear.default_plugins.consul_discovery",
    "switchgear.default_plugins.balancing",
    "switchgear.default_plugins.openai_adapter",
)
SWITCHGEAR = str(Path(sys.executable).with_name("switchgear"))
ADMIN = {"Authorization": "Bearer adm"}
FAST = {
    "timeouts": {"connect": 1.0, "ttft": 2.0, "idle": 2.0, "total": 10.0},
    "retries": {"attempts": 2, "backoff_base": 0.005, "backoff_max": 0.02},
    "breaker": {"failures": 50, "cooldown": 0.3},
}

Start = Callable[..., Awaitable[TestClient]]


def gateway_config(consul: ConsulSettings, **extra: Any) -> dict[str, Any]:
    return {"consul": consul.model_dump(), "auth": {"admin_key": "adm"}, **FAST, **extra}


@pytest.fixture
def gateway(aiohttp_client: Any) -> Start:
    async def make(config: dict[str, Any]) -> TestClient:
        pm = make_plugin_manager(load_entrypoints=False, builtins=PLUGINS)
        return await aiohttp_client(create_app(parse_settings(config), plugin_manager=pm))

    return make


@pytest.fixture
async def ups() -> AsyncIterator[dict[str, FakeUpstream]]:
    made = {m: await FakeUpstream(m).start() for m in ("m1", "m2")}
    yield made
    for up in made.values():
        await up.close()


async def chat(client: TestClient, model: str) -> tuple[int, str, dict[str, str]]:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    async with client.post("/v1/chat/completions", json=body) as r:
        data = await r.json()
        text = data["choices"][0]["message"]["content"] if r.status == 200 else ""
        return r.status, text, dict(r.headers)


async def test_wrong_token_stops_the_gateway_at_start(cluster: ConsulCluster, gw_settings):
    cluster.acl.enabled, cluster.acl.default_policy = True, "deny"
    settings = parse_settings(gateway_config(gw_settings.model_copy(update={"token": "wrong"})))
    app = create_app(settings, plugin_manager=make_plugin_manager(load_entrypoints=False))
    with pytest.raises(ConsulACLError, match="ACL not found.*consul.token"):
        await start(app, settings, host="127.0.0.1", port=0)


@pytest.mark.slow
async def test_serve_with_a_wrong_token_exits_with_one_line(
    cluster: ConsulCluster, gw_settings, tmp_path
):
    cluster.acl.enabled, cluster.acl.default_policy = True, "deny"
    consul = gw_settings.model_copy(update={"token": "wrong"}).model_dump(mode="json")
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(yaml.safe_dump({"listen": {"port": 0}, "consul": consul}))
    proc = await asyncio.create_subprocess_exec(
        SWITCHGEAR,
        "serve",
        "--config",
        str(cfg),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    text = err.decode()
    assert proc.returncode == 1, text
    errors = [ln for ln in text.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Consul refused" in errors[0] and "ACL not found" in errors[0]
    assert "Traceback" not in text


async def test_a_kv_write_changes_aliases_and_fallbacks(
    cluster: ConsulCluster, gw_settings, gateway: Start, ups: dict[str, FakeUpstream]
):
    for model, up in ups.items():
        s = consul_settings(cluster.agent("node-1"))
        meta = {"health_path": "/v1/models", "context_length": "4096"}
        await register_backend(s, external_spec(s, up.url, model, service_id=model, meta=meta))
    client = await gateway(gateway_config(gw_settings, models={"m1": {"aliases": ["chat"]}}))
    app = client.app
    assert app is not None
    registry, catalog = app[keys.REGISTRY], app[keys.CATALOG]
    await wait_until(registry, lambda: registry.models() == ["m1", "m2"])

    async def until(predicate: Callable[[], bool]) -> None:
        await poll_until(
            predicate,
            5.0,
            "KV change applied",
            wake=lambda s: catalog.wait_kv(catalog.kv_version, s),
        )

    assert (await chat(client, "chat"))[1] == "hello from m1"  # config alias
    models = (await (await client.get("/v1/models")).json())["data"]
    assert {m["id"]: m["switchgear"].get("context_length") for m in models}["m1"] == 4096

    kv = cluster.datacenters["dc1"]
    kv.kv_put("switchgear/models", orjson.dumps({"m2": {"aliases": ["chat"]}}))
    await until(lambda: app[keys.ALIASES].get("chat") == "m2")
    assert (await chat(client, "chat"))[1] == "hello from m2"  # KV wins over config

    ups["m1"].always = Fault(status=503)
    assert (await chat(client, "m1"))[0] == 503  # no fallback yet
    kv.kv_put("switchgear/models", orjson.dumps({"m1": {"fallback": ["m2"]}}))
    await until(lambda: catalog.infos["m1"].fallback == ("m2",))
    status, text, headers = await chat(client, "m1")
    assert (status, text, headers["x-switchgear-fallback"]) == (200, "hello from m2", "m1 -> m2")
    assert app[keys.ALIASES]["chat"] == "m1"  # m2's KV alias is gone: config's is back
    assert catalog.infos["m1"].aliases == ("chat",)  # KV set only m1's fallback

    kv.kv_delete("switchgear/models")
    await until(lambda: catalog.infos["m1"].fallback == ())
    assert (await chat(client, "m1"))[0] == 503


async def test_admin_registers_and_deregisters_external_backends(
    cluster: ConsulCluster, gw_settings, gateway: Start, ups: dict[str, FakeUpstream]
):
    client = await gateway(gateway_config(gw_settings))
    app = client.app
    assert app is not None
    registry = app[keys.REGISTRY]
    body = {
        "url": ups["m1"].url,
        "model": "m1",
        "service_id": "ext-1",
        "meta": {"health_path": "/v1/models", "languages": "en,fr"},
    }
    async with client.post("/admin/backends", json=body) as r:
        assert r.status == 401  # the admin key is required
    async with client.post("/admin/backends", json=body, headers=ADMIN) as r:
        assert r.status == 201, await r.text()
        assert (await r.json())["id"] == "ext-1"
    await wait_until(registry, lambda: [b.id for b in registry.backends("m1")] == ["ext-1@dc1"])
    assert (await chat(client, "m1"))[1] == "hello from m1"
    models = (await (await client.get("/v1/models")).json())["data"]
    assert models[0]["switchgear"]["languages"] == ["en", "fr"]  # Consul Meta reached /v1/models

    async with client.delete("/admin/backends/ext-1", headers=ADMIN) as r:
        assert r.status == 204
    await wait_until(registry, lambda: not registry.backends("m1"))
    async with client.delete("/admin/backends/ext-1", headers=ADMIN) as r:
        assert r.status == 404


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"url": "ftp://10.0.0.1/v1", "model": "m1"}, "url"),
        ({"url": "http://user:pw@10.0.0.1/v1", "model": "m1"}, "url"),
        ({"url": "http://192.168.1.5:8000/v1", "model": "m1"}, "url"),  # not allowed
        ({"url": "http://10.0.0.1:8000/v1"}, "model"),
        ({"url": "http://10.0.0.1:8000/v1", "model": "m1", "meta": {"a": 1}}, "meta"),
    ],
)
async def test_admin_rejects_bad_registrations(gw_settings, gateway: Start, body, param):
    config = gateway_config(gw_settings, external_backends={"url_patterns": ["http://10.*"]})
    client = await gateway(config)
    async with client.post("/admin/backends", json=body, headers=ADMIN) as r:
        assert r.status == 400
        assert (await r.json())["error"]["param"] == param


async def test_admin_reports_a_consul_permission_error(
    cluster: ConsulCluster, gw_settings, gateway
):
    cluster.acl.enabled, cluster.acl.default_policy = True, "deny"
    cluster.acl.add_token(
        "reader", {"service": {"": "read"}, "node": {"": "read"}, "key": {"": "read"}}
    )
    client = await gateway(gateway_config(gw_settings.model_copy(update={"token": "reader"})))
    body = {"url": "http://127.0.0.1:9/v1", "model": "m1"}
    async with client.post("/admin/backends", json=body, headers=ADMIN) as r:
        assert r.status == 502
        error = (await r.json())["error"]
    assert error["code"] == "consul_permission_denied" and "service:write" in error["message"]
    cluster.acl.add_token("root", management=True)
    s = gw_settings.model_copy(update={"token": "root"})
    await register_backend(s, external_spec(s, "http://127.0.0.1:9/v1", "m1", service_id="x"))
    async with client.delete("/admin/backends/x", headers=ADMIN) as r:
        assert r.status == 502
        assert "deregistering 'x'" in (await r.json())["error"]["message"]
