"""Fixtures of the gateway tests: fake upstreams and a gateway on real loopback ports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import openai
import pluggy
import pytest
from aiohttp import web

from switchgear.plugins.manager import make_plugin_manager
from switchgear.proxy.app import create_app
from switchgear.proxy.server import start
from switchgear.settings import Settings, parse_settings
from tests.fakes import FakeUpstream

GATEWAY_PLUGINS = (
    "switchgear.default_plugins.static_discovery",
    "switchgear.default_plugins.balancing",
    "switchgear.default_plugins.openai_adapter",
)

#: Small deadlines so fault tests finish fast; tests override what they exercise.
FAST: dict[str, Any] = {
    "timeouts": {"connect": 1.0, "ttft": 2.0, "idle": 2.0, "total": 10.0},
    "retries": {"attempts": 3, "backoff_base": 0.005, "backoff_max": 0.02, "retry_after_cap": 0.3},
    "breaker": {"failures": 3, "cooldown": 0.3},
    "shutdown_grace": 0.5,
}


def gateway_pm(*extra: object) -> pluggy.PluginManager:
    pm = make_plugin_manager(load_entrypoints=False, builtins=GATEWAY_PLUGINS)
    for plugin in extra:
        pm.register(plugin)
    return pm


@dataclass
class Gateway:
    app: web.Application
    runner: web.AppRunner
    port: int
    settings: Settings

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def openai(self, api_key: str = "sk-test", **kw: Any) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.url + "/v1", api_key=api_key, max_retries=0, **kw)


UpstreamFactory = Callable[..., Awaitable[FakeUpstream]]
GatewayFactory = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def upstream() -> AsyncIterator[UpstreamFactory]:
    """``await upstream("m1", name="a", chunks=4)`` starts a fake upstream (closed after the test)."""
    made: list[FakeUpstream] = []

    async def make(model: str = "m1", **kw: Any) -> FakeUpstream:
        up = await FakeUpstream(model, **kw).start()
        made.append(up)
        return up

    yield make
    for up in made:
        await up.close()


@pytest.fixture
async def gateway() -> AsyncIterator[GatewayFactory]:
    """``await gateway(config_dict, plugins=[...])`` starts the gateway with FAST defaults."""
    runners: list[web.AppRunner] = []

    async def make(
        config: dict[str, Any],
        *,
        plugins: tuple[object, ...] = (),
        fast: bool = True,
        pm: pluggy.PluginManager | None = None,
    ) -> Gateway:
        data = {**FAST, **config} if fast else dict(config)
        settings = parse_settings(data)
        app = create_app(settings, plugin_manager=pm or gateway_pm(*plugins))
        runner = await start(app, settings, host="127.0.0.1", port=0)
        runners.append(runner)
        return Gateway(app, runner, runner.addresses[0][1], settings)

    yield make
    for runner in reversed(runners):
        await runner.cleanup()


def backends(*ups: FakeUpstream, **extra: Any) -> list[dict[str, Any]]:
    return [{"model": up.model, "url": up.url, **extra} for up in ups]
