"""A worker's Consul Meta carries its model and version, and the version follows a swap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from switchgear.settings import parse_settings
from tests.consul_double import ConsulCluster
from tests.discovery.conftest import cluster, consul_settings  # noqa: F401 - fixture
from tests.helpers import poll_until
from tests.rollout.conftest import ADMIN, ADMIN_HEADERS, GATES


async def test_consul_meta_has_model_and_version_and_a_swap_changes_it(
    cluster: ConsulCluster,  # noqa: F811
    tiny: Path,
    tiny_seed1: Path,
    plugin_manager: Any,
    http: aiohttp.ClientSession,
) -> None:
    from switchgear.worker.app import create_worker_app
    from switchgear.worker.keys import SLOT

    agent = cluster.agent("node-1")
    consul = consul_settings(agent, service_id="llm-w0").model_dump()
    settings = parse_settings(
        {
            "auth": {"admin_key": ADMIN},
            "consul": consul,
            "worker": {
                "model": {"model_name_or_path": str(tiny), "name": "tiny"},
                "batch_wait_ms": 1,
                "watch_config": False,
                "gates": GATES,
            },
        }
    )
    server = TestServer(create_worker_app(settings, plugin_manager=plugin_manager))
    await server.start_server()
    try:
        await server.app[SLOT].ready()

        async def meta() -> dict[str, str]:
            async with http.get(f"http://127.0.0.1:{agent.port}/v1/agent/services") as r:
                services = await r.json()
            return dict((services.get("llm-w0") or {}).get("Meta") or {})

        first = await poll_until(
            lambda: _with(meta(), "version"), 30, "Meta with a version", interval=0.05
        )
        assert first["model"] == "tiny" and len(first["version"]) == 12
        async with http.post(
            str(server.make_url("/admin/swap")),
            json={"model_name_or_path": str(tiny_seed1)},
            headers=ADMIN_HEADERS,
        ) as r:
            assert r.status == 200, await r.text()

        async def changed() -> dict[str, str] | None:
            m = await meta()
            return m if m.get("version") not in (None, first["version"]) else None

        after = await poll_until(changed, 30, "Meta version after the swap", interval=0.05)
        assert after["model"] == "tiny"
    finally:
        await server.close()


async def _with(meta: Any, key: str) -> dict[str, str] | None:
    m: dict[str, str] = await meta
    return m if key in m else None
