"""Fixtures of the plugin tests: fake native backends and a gateway built around a plugin manager."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from switchgear.plugins.manager import PluginManager, make_plugin_manager
from switchgear.settings import Settings, parse_settings
from tests.plugins import fakes

Gateway = Callable[..., Awaitable[TestClient]]


@pytest.fixture
async def tgi_server(aiohttp_server: Any) -> TestServer:
    return await aiohttp_server(fakes.tgi_app())


@pytest.fixture
async def ollama_server(aiohttp_server: Any) -> TestServer:
    return await aiohttp_server(fakes.ollama_app())


@pytest.fixture
async def completions_server(aiohttp_server: Any) -> TestServer:
    return await aiohttp_server(fakes.completions_app())


def root(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


def manager_for(settings: Settings, **kwargs: Any) -> PluginManager:
    """A manager as the gateway builds it, without entry points (tests are not about installs)."""
    kwargs.setdefault("load_entrypoints", False)
    return make_plugin_manager(settings=settings, **kwargs)


@pytest.fixture
def gateway(aiohttp_client: Any) -> Gateway:
    """``await gateway(config_dict, pm=None, **manager_kwargs)`` → a client of a running gateway."""

    async def start(
        config: dict[str, Any], pm: PluginManager | None = None, **kwargs: Any
    ) -> TestClient:
        from switchgear.proxy.app import create_app

        settings = parse_settings(config)
        app: web.Application = create_app(
            settings, plugin_manager=pm or manager_for(settings, **kwargs)
        )
        return await aiohttp_client(app)

    return start
