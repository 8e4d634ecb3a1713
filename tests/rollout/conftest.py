"""Three real tiny workers behind one gateway on loopback, and steady load through it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp.test_utils import TestServer

from tests.proxy.conftest import Gateway, gateway, gateway_pm  # noqa: F401 - fixtures
from tests.worker.conftest import (  # noqa: F401 - fixtures
    ADMIN,
    _torch_threads,
    models_dir,
    plugin_manager,
    tiny,
    tiny_seed1,
    worker_settings,
)

GATES = {"latency_tolerance": 20.0, "latency_repeats": 2, "generation_tokens": 6}
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}


@dataclass
class Fleet:
    gateway: Gateway
    workers: list[TestServer]

    def worker_url(self, i: int) -> str:
        return str(self.workers[i].make_url(""))

    async def served_path(self, http: aiohttp.ClientSession, i: int) -> str:
        async with http.get(self.worker_url(i) + "/health") as r:
            return str((await r.json())["path"])


@pytest.fixture
async def fleet(
    tiny: Path,  # noqa: F811
    plugin_manager: Any,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    gateway: Any,  # noqa: F811
) -> AsyncIterator[Callable[[], Awaitable[Fleet]]]:
    from switchgear.worker.app import create_worker_app
    from switchgear.worker.keys import SLOT

    monkeypatch.setenv("SWITCHGEAR_WORKER_ADMIN_KEY", ADMIN)
    servers: list[TestServer] = []

    async def make() -> Fleet:
        for _ in range(3):
            settings = worker_settings(
                tiny, gates=GATES, model_roots=[str(tiny.parent), str(tmp_path)]
            )
            app = create_worker_app(settings, plugin_manager=plugin_manager)
            server = TestServer(app, host="127.0.0.1")
            await server.start_server()
            servers.append(server)
            await app[SLOT].ready()
        gw = await gateway(
            {
                "auth": {"admin_key": "gw-admin"},
                "backends": [
                    {"model": "tiny", "url": str(s.make_url("/v1")), "id": f"w{i}"}
                    for i, s in enumerate(servers)
                ],
                "timeouts": {"connect": 2.0, "ttft": 60.0, "idle": 60.0, "total": 120.0},
                "retries": {"attempts": 3, "backoff_base": 0.005, "backoff_max": 0.02},
                "breaker": {"failures": 5, "cooldown": 0.5},
            },
        )
        return Fleet(gw, servers)

    yield make
    for server in servers:
        await server.close()


@dataclass
class Load:
    """``clients`` SDK clients sending chat completions until stopped; counts the outcomes."""

    sdk: openai.AsyncOpenAI
    clients: int = 3
    ok: int = 0
    failed: list[str] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def _one(self) -> None:
        while not self._stop.is_set():
            try:
                r = await self.sdk.chat.completions.create(
                    model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=3
                )
                assert r.choices
                self.ok += 1
            except Exception as exc:
                self.failed.append(repr(exc))

    def start(self) -> Load:
        self._tasks = [asyncio.create_task(self._one()) for _ in range(self.clients)]
        return self

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        await self.sdk.close()
