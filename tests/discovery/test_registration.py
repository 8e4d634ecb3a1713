"""ServiceRegistration, registration_context and the external-backend commands against the double."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from switchgear.discovery.commands import deregister_cli, register_cli
from switchgear.discovery.consul_client import ConsulACLError
from switchgear.discovery.registration import (
    ServiceRegistration,
    deregister_backend,
    external_spec,
    register_backend,
    registration_context,
    worker_spec,
)
from tests.consul_double import ConsulCluster
from tests.discovery.conftest import consul_settings, poll
from tests.helpers import poll_until

INFO = {
    "model": "tiny-gpt",
    "quantization": "int8",
    "context_length": 2048,
    "languages": ["en", "fr"],
    "device": "cpu",
}


def _catalog_meta(cluster: ConsulCluster, dc: str, sid: str) -> dict[str, str] | None:
    for (_, s), svc in cluster.datacenters[dc].services.items():
        if s == sid:
            return svc.meta
    return None


async def _wait_catalog(cluster: ConsulCluster, dc: str, predicate, within: float = 3.0) -> None:  # noqa: ANN001
    """Wait on the DC's change event (the same one blocking queries use)."""
    d = cluster.datacenters[dc]
    await poll_until(predicate, within, "catalog state", wake=lambda _: d.changed.wait())


async def test_worker_registration_lifecycle(cluster, fake_backend):
    fb = await fake_backend()
    agent = cluster.agent("node-1")
    settings = consul_settings(
        agent, cloud="aws", region="eu-west-1", tags=["gpu"], service_id="worker-1"
    )
    reg = ServiceRegistration(settings, worker_spec(settings, INFO, "127.0.0.1", fb.port))
    await reg.start()
    svc = agent.services["worker-1"]
    assert svc.name == "llm" and svc.port == fb.port and svc.tags == ["gpu"]
    assert svc.meta == {
        "model": "tiny-gpt",
        "quantization": "int8",
        "context_length": "2048",
        "languages": "en,fr",
        "device": "cpu",
        "cloud": "aws",
        "region": "eu-west-1",
    }
    (check,) = [c for c in agent.checks.values() if c.service_id == "worker-1"]
    assert check.http == f"http://127.0.0.1:{fb.port}/health" and check.interval == 1.0
    assert check.deregister_after == 60.0
    await _wait_catalog(
        cluster, "dc1", lambda: _catalog_meta(cluster, "dc1", "worker-1") is not None
    )

    await reg.update_meta({**INFO, "model": "tiny-gpt-v2"})
    await _wait_catalog(
        cluster,
        "dc1",
        lambda: (_catalog_meta(cluster, "dc1", "worker-1") or {}).get("model") == "tiny-gpt-v2",
    )

    agent.forget_everything()  # agent restart without persisted state
    assert await reg.ensure_registered() is True
    assert "worker-1" in agent.services and reg.registrations == 3
    assert await reg.ensure_registered() is False

    await reg.stop()
    assert "worker-1" not in agent.services
    await _wait_catalog(cluster, "dc1", lambda: _catalog_meta(cluster, "dc1", "worker-1") is None)


async def test_keep_alive_registers_again_after_an_agent_restart(cluster, fake_backend):
    fb = await fake_backend()
    agent = cluster.agent("node-1")
    settings = consul_settings(agent, service_id="w", resync_interval="100ms")
    reg = ServiceRegistration(settings, worker_spec(settings, INFO, "127.0.0.1", fb.port))
    await reg.start()
    try:
        agent.forget_everything()
        await poll(lambda: "w" in agent.services and reg.registrations == 2)
    finally:
        await reg.stop()


async def test_registration_context_in_an_aiohttp_app(cluster, fake_backend, aiohttp_client):
    fb = await fake_backend()
    agent = cluster.agent("node-1")
    info = dict(INFO)
    ctx = registration_context(
        consul_settings(agent, service_id="ctx-1"), lambda: info, "127.0.0.1", fb.port
    )
    app = web.Application()
    app.cleanup_ctx.append(ctx)
    client = await aiohttp_client(app)
    assert ctx.registration is not None and agent.services["ctx-1"].meta["model"] == "tiny-gpt"
    info["model"] = "swapped"
    await ctx.refresh()
    assert agent.services["ctx-1"].meta["model"] == "swapped"
    await client.close()
    assert "ctx-1" not in agent.services and ctx.registration is None


async def test_denied_registration_is_a_clear_error(cluster, fake_backend):
    fb = await fake_backend()
    cluster.acl.enabled, cluster.acl.default_policy = True, "deny"
    cluster.acl.add_token("reader", {"service": {"": "read"}})
    settings = consul_settings(cluster.agent("node-1"), token="reader", service_id="x")
    reg = ServiceRegistration(settings, worker_spec(settings, INFO, "127.0.0.1", fb.port))
    with pytest.raises(ConsulACLError, match="service:write"):
        await reg.start()


async def test_external_backend_register_and_deregister(cluster, fake_backend):
    fb = await fake_backend()
    agent = cluster.agent("node-2")
    settings = consul_settings(agent)
    spec = external_spec(settings, fb.url, "vllm-model", protocol="openai", meta={"team": "search"})
    assert spec.check_url == f"http://127.0.0.1:{fb.port}/health"
    await register_backend(settings, spec)
    svc = agent.services[spec.service_id]
    assert (
        svc.meta["url_path"] == "/v1"
        and svc.meta["team"] == "search"
        and svc.meta["external"] == "true"
    )
    assert await deregister_backend(settings, spec.service_id) is True
    assert await deregister_backend(settings, spec.service_id) is False


def _config(tmp_path, port: int) -> str:  # noqa: ANN001
    path = tmp_path / "sg.yaml"
    path.write_text(f"consul:\n  port: {port}\n  service: llm\n  wait: 5s\n")
    return str(path)


async def test_register_and_deregister_commands(cluster, fake_backend, tmp_path, capsys):
    fb = await fake_backend()
    agent = cluster.agent("node-1")
    config = _config(tmp_path, agent.port)
    loop = asyncio.get_running_loop()
    # The commands own their event loop (asyncio.run), like the CLI does: run them off this one.
    rc = await loop.run_in_executor(
        None,
        lambda: register_cli(
            fb.url,
            "ext-model",
            dc="dc1",
            service_id="ext-1",
            protocol="tgi",
            meta={"k": "v"},
            config=config,
        ),
    )
    assert rc == 0 and agent.services["ext-1"].meta["protocol"] == "tgi"
    rc = await loop.run_in_executor(
        None, lambda: register_cli(fb.url, "ext-model", dc="dc2", config=config)
    )
    assert rc == 1 and "not 'dc2'" in capsys.readouterr().err
    assert await loop.run_in_executor(None, lambda: deregister_cli("ext-1", config=config)) == 0
    assert await loop.run_in_executor(None, lambda: deregister_cli("ext-1", config=config)) == 1
