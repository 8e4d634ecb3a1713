"""Fixtures of the dashboard tests: a gateway on loopback fed by in-process test sources.

``Sources`` is a :class:`~switchgear.proxy.views.dashboard.DashboardSources` whose events,
actions and series a test writes directly, so a test can inject an anomaly without a
detector. Events and actions are the real ``AnomalyEvent`` / ``Action`` dataclasses.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as ChromeService

from switchgear.detector.report import action_dict, event_dict
from switchgear.plugins.manager import make_plugin_manager
from switchgear.proxy import keys
from switchgear.proxy.app import create_app
from switchgear.proxy.server import start
from switchgear.settings import parse_settings
from switchgear.types import Action, AnomalyEvent
from tests.fakes import FakeUpstream

PLUGINS = (
    "switchgear.default_plugins.static_discovery",
    "switchgear.default_plugins.balancing",
    "switchgear.default_plugins.openai_adapter",
)
ADMIN_KEY = "sk-admin-dashboard"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@dataclass
class Sources:
    open: list[AnomalyEvent] = field(default_factory=list)
    recent: list[AnomalyEvent] = field(default_factory=list)
    taken: list[Action] = field(default_factory=list)
    #: (backend_id, model, metric) -> [(ts, value, score)]
    points: dict[tuple[str, str, str], list[tuple[float, float, float | None]]] = field(
        default_factory=dict
    )

    def anomalies(self) -> Mapping[str, Sequence[Any]]:
        return {
            "open": [event_dict(e) for e in self.open],
            "recent": [event_dict(e) for e in self.recent],
        }

    def actions(self) -> Sequence[Any]:
        return [action_dict(a) for a in self.taken]

    def series(self, since: float) -> Mapping[str, Any]:
        return {
            "resolution_s": 1.0,
            "series": [
                {
                    "backend_id": b,
                    "model": m,
                    "metric": metric,
                    "points": [list(p) for p in pts if p[0] > since],
                }
                for (b, m, metric), pts in self.points.items()
            ],
        }

    def fill(self, backend_id: str, model: str, seconds: int = 240, lag: int = 30) -> None:
        """Calm history for every charted metric, one point a second, ending ``lag`` s ago
        (room for :meth:`spike` to append points the page has not seen yet)."""
        now = time.time() - lag
        base = {
            "latency_p50": 0.08,
            "latency_p95": 0.15,
            "ttft": 0.05,
            "rps": 4.0,
            "error_rate": 0.0,
            "memory_rss": 2.1e9,
        }
        for metric, value in base.items():
            self.points[(backend_id, model, metric)] = [
                (
                    now - seconds + i,
                    value * (1 + 0.1 * math.sin(i / 9)),
                    0.05 + 0.03 * math.sin(i / 5),
                )
                for i in range(seconds)
            ]

    def spike(self, backend_id: str, model: str, metric: str, seconds: int = 20) -> AnomalyEvent:
        """``seconds`` high, high-scoring points after the last one and an open event over them."""
        now = time.time()
        pts = self.points.setdefault((backend_id, model, metric), [])
        last = pts[-1][0] if pts else now - seconds
        pts += [(last + i + 1, 1.9 + 0.1 * (i % 3), 0.95) for i in range(seconds)]
        event = AnomalyEvent(
            id=f"ev-{backend_id}-{metric}",
            metric=metric,
            score=0.95,
            started_at=last + 1,
            backend_id=backend_id,
            model=model,
            contributions={"baseline": 0.95, "statsmodels": 0.9},
        )
        self.open.append(event)
        return event


@dataclass
class DashGateway:
    app: web.Application
    url: str
    sources: Sources | None


DashFactory = Callable[..., Awaitable[DashGateway]]


@pytest.fixture
async def dash_gateway() -> AsyncIterator[DashFactory]:
    """``await dash_gateway(config, sources=..., plugins=(module, ...), register=(obj, ...))``
    starts a gateway on loopback with the ``PLUGINS`` built-ins, ``plugins`` and ``register``."""
    runners: list[web.AppRunner] = []

    async def make(
        config: dict[str, Any],
        *,
        sources: Sources | None = None,
        plugins: tuple[str, ...] = (),
        register: tuple[object, ...] = (),
    ) -> DashGateway:
        settings = parse_settings({"shutdown_grace": 0.5, **config})
        pm = make_plugin_manager(load_entrypoints=False, builtins=PLUGINS + plugins)
        for plugin in register:
            pm.register(plugin, name=type(plugin).__name__)
        app = create_app(settings, plugin_manager=pm)
        if sources is not None:
            app[keys.DASHBOARD_SOURCES] = sources
        runner = await start(app, settings, host="127.0.0.1", port=0)
        runners.append(runner)
        return DashGateway(app, f"http://127.0.0.1:{runner.addresses[0][1]}", sources)

    yield make
    for runner in reversed(runners):
        await runner.cleanup()


@pytest.fixture
async def upstreams() -> AsyncIterator[list[FakeUpstream]]:
    """Three fake upstreams: m1 in dc1 and dc2 (named a, b) and m2 (named c)."""
    ups = [
        await FakeUpstream("m1", name="a").start(),
        await FakeUpstream("m1", name="b").start(),
        await FakeUpstream("m2", name="c").start(),
    ]
    yield ups
    for up in ups:
        await up.close()


def config_for(ups: list[FakeUpstream], **auth: Any) -> dict[str, Any]:
    a, b, c = ups
    return {
        "backends": [
            {
                "model": "m1",
                "url": a.url,
                "id": "m1-a",
                "datacenter": "dc1",
                "meta": {"quantization": "int8"},
            },
            {"model": "m1", "url": b.url, "id": "m1-b", "datacenter": "dc2"},
            {"model": "m2", "url": c.url, "id": "m2-c", "datacenter": "dc1"},
        ],
        "models": {"m1": {"fallback": ["m2"], "aliases": ["fast"]}},
        "consul": None,
        "auth": {"admin_key": ADMIN_KEY, **auth},
    }


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    """Debian's headless chromium through the system chromedriver, with the browser log on,
    sending the admin key (``ADMIN_KEY``) on every request."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,1700",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=ChromeService(CHROMEDRIVER))
    # The dashboard needs the admin key: every request of the page (its fetches too) sends it.
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd(
        "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Bearer {ADMIN_KEY}"}}
    )
    try:
        yield driver
    finally:
        driver.quit()
