"""Fixtures for Consul discovery and registration tests, run against the Consul double.

The double's clock runs 5× real time, so a 1 s check interval probes every 0.2 s and a
``wait=5s`` blocking query returns after about 1 s of real time when nothing changes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from aiohttp import web

from switchgear.discovery.base import Registry
from switchgear.discovery.consul import ConsulDiscovery
from switchgear.settings.consul import ConsulCheckSettings, ConsulSettings
from tests.consul_double import Clock, ConsulCluster, ListeningAgent
from tests.helpers import poll_until

#: ``poll(predicate)``, for conditions with no event to wait on (the double's request log).
poll = poll_until


@pytest.fixture
async def cluster() -> AsyncIterator[ConsulCluster]:
    c = ConsulCluster(clock=Clock(speed=5.0))
    c.add_datacenter("dc1", position=0.0)
    c.add_datacenter("dc2", position=0.030)
    await c.add_agent("dc1", "gw-node")
    await c.add_agent("dc1", "node-1")
    await c.add_agent("dc2", "node-2")
    yield c
    await c.close()


def consul_settings(agent: ListeningAgent, **overrides: object) -> ConsulSettings:
    values: dict[str, object] = dict(
        host="127.0.0.1",
        port=agent.port,
        service="llm",
        wait="5s",
        backoff_initial=0.05,
        backoff_max=0.3,
        watch_burst=20,
        watch_rate=100.0,
        datacenter_refresh="1s",
        resync_interval="1s",
        check=ConsulCheckSettings(interval="1s", timeout="1s"),
    )
    values.update(overrides)
    return ConsulSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
def gw_settings(cluster: ConsulCluster) -> ConsulSettings:
    return consul_settings(cluster.agent("gw-node"))


@dataclass
class FakeBackend:
    """An OpenAI-ish server with a /health route whose answer the test switches."""

    port: int
    healthy: bool = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


@pytest.fixture
async def fake_backend() -> AsyncIterator[Callable[[], Awaitable[FakeBackend]]]:
    runners: list[web.AppRunner] = []

    async def start() -> FakeBackend:
        state = FakeBackend(0)

        async def health(_: web.Request) -> web.Response:
            return web.json_response({"ok": state.healthy}, status=200 if state.healthy else 503)

        app = web.Application()
        app.router.add_get("/health", health)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        state.port = runner.addresses[0][1]
        runners.append(runner)
        return state

    yield start
    for r in runners:
        await r.cleanup()


async def wait_until(
    registry: Registry, predicate: Callable[[], bool], within: float = 5.0
) -> float:
    """Wait for ``predicate`` on registry changes; returns the seconds it took (fails on timeout)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    await poll_until(
        predicate,
        within,
        lambda: f"registry state (sources={registry.sources()})",
        wake=registry.wait_changed,
    )
    return loop.time() - start


@pytest.fixture
async def run_discovery() -> AsyncIterator[Callable[[ConsulDiscovery], Awaitable[Registry]]]:
    tasks: list[asyncio.Task[None]] = []

    async def start(discovery: ConsulDiscovery) -> Registry:
        registry = Registry()
        tasks.append(asyncio.create_task(discovery.run(registry)))
        return registry

    yield start
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await t
