"""The dashboard in a real headless chromium, against gateways on loopback.

Selenium blocks, so every browser call runs in a thread (``asyncio.to_thread``) while the
gateway keeps serving on the test's event loop. Waits are WebDriverWait on DOM conditions.
The first test injects a real anomaly: traffic flows through the gateway with its detector
on, then one backend turns slow, and the detector, its policy and the page must all see it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
from selenium import webdriver
from selenium.webdriver.support.ui import WebDriverWait

from switchgear.types import Action, AnomalyEvent
from tests.dashboard.conftest import DashFactory, Sources, config_for
from tests.dashboard.slow_detector import ThresholdPlugin
from tests.fakes import FakeUpstream, Fault

QUERY_COUNT = "return document.querySelectorAll(arguments[0]).length"
QUERY_ATTRS = (
    "return [...document.querySelectorAll(arguments[0])].map(e => e.getAttribute(arguments[1]))"
)
QUERY_TEXT = "const e = document.querySelector(arguments[0]); return e ? e.innerText : ''"
SCREENSHOT = Path(__file__).resolve().parents[2] / "artifacts" / "dashboard.png"
BACKENDS = (("m1-a", "m1"), ("m1-b", "m1"), ("m2-c", "m2"))
DETECTOR_PLUGINS = ("switchgear.default_plugins.detectors", "switchgear.default_plugins.policy")
#: Only a p95 latency above 0.3 s scores (1.0); it opens an event after two ticks and ejects.
DETECTOR = {
    "enabled": True,
    "resolution_s": 0.25,
    "detectors": {"*": "threshold"},
    "params": {"threshold@latency_p95": {"above": 0.3}},
    "scrape_interval_s": 60.0,
    "events": {"open_score": 0.9, "close_score": 0.3, "open_after": 2, "close_after": 1000},
    "policy": {"eject_metrics": ["latency_p95"], "memory_metrics": [], "probe_interval_s": 60.0},
}


async def wait_for(
    driver: webdriver.Chrome, condition: Callable[[Any], Any], within: float = 20
) -> Any:
    return await asyncio.to_thread(WebDriverWait(driver, within).until, condition)


# The page re-renders every poll, so element handles go stale: every query below runs as
# one script in the page and returns plain values.
def count(driver: Any, selector: str) -> int:
    return int(driver.execute_script(QUERY_COUNT, selector))


def attrs(driver: Any, selector: str, name: str) -> list[str | None]:
    return list(driver.execute_script(QUERY_ATTRS, selector, name))


def text(driver: Any, selector: str) -> str:
    return str(driver.execute_script(QUERY_TEXT, selector))


def severe(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


async def open_page(driver: webdriver.Chrome, url: str) -> None:
    await asyncio.to_thread(driver.get_log, "browser")  # drop what earlier pages logged
    await asyncio.to_thread(driver.get, url + "/dashboard")
    await wait_for(driver, lambda d: count(d, "[data-backend-id]") == len(BACKENDS))


@contextlib.asynccontextmanager
async def traffic(url: str, *models: str) -> AsyncIterator[None]:
    """One client per model sending chat requests back to back until the block ends."""

    async def client(session: aiohttp.ClientSession, model: str) -> None:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        while True:
            async with session.post(url + "/v1/chat/completions", json=body) as resp:
                await resp.read()

    async with aiohttp.ClientSession() as session:
        tasks = [asyncio.create_task(client(session, m)) for m in models]
        try:
            yield
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def test_dashboard_marks_an_anomaly_the_detector_found(
    browser: webdriver.Chrome, dash_gateway: DashFactory, upstreams: list[FakeUpstream]
) -> None:
    for up in upstreams:
        up.always = Fault(first_delay=0.03)  # paces the clients: about 30 requests/s each
    config = config_for(upstreams) | {"detector": DETECTOR}
    config["models"]["m2"] = {"fallback": ["m1"]}
    gw = await dash_gateway(config, plugins=DETECTOR_PLUGINS, register=(ThresholdPlugin(),))
    async with traffic(gw.url, "m1", "m2"):
        await open_page(browser, gw.url)
        warm = '[data-backend-id="m2-c"] figure[data-metric="latency_p95"]'
        await wait_for(
            browser, lambda d: any(int(n or 0) >= 20 for n in attrs(d, warm, "data-points"))
        )
        assert await asyncio.to_thread(text, browser, "#detector-state") == "detector on"

        upstreams[2].always = Fault(first_delay=0.6)  # m2's only backend turns slow
        marked = '[data-backend-id="m2-c"][data-status="ejected"].anomalous'
        await wait_for(browser, lambda d: count(d, f"{marked} .badge.b-anomaly[data-event-id]"))
        await wait_for(browser, lambda d: count(d, f"{marked} rect.event-open[data-event-id]"))
        await wait_for(browser, lambda d: count(d, '[data-model="m2"] .badge.b-fallback'))
        actions = await asyncio.to_thread(text, browser, "#actions tbody")
        assert "eject" in actions and "m2-c" in actions and "fallback" in actions
        dcs = await asyncio.to_thread(attrs, browser, '[data-model="m1"] .dc', "data-datacenter")
        assert dcs == ["dc1", "dc2"]

        SCREENSHOT.parent.mkdir(exist_ok=True)
        assert await asyncio.to_thread(browser.save_screenshot, str(SCREENSHOT))
        assert await asyncio.to_thread(severe, browser) == []


async def test_dashboard_reads_test_sources(
    browser: webdriver.Chrome, dash_gateway: DashFactory, upstreams: list[FakeUpstream]
) -> None:
    sources = Sources()
    for backend_id, model in BACKENDS:
        sources.fill(backend_id, model)
    now = time.time()
    sources.recent.append(
        AnomalyEvent("ev-old", "ttft", 0.7, now - 110, "m2-c", "m2", ended_at=now - 80)
    )
    sources.taken.append(Action("scale_up", "m2", "forecast 9.0 rps for 1 replicas", ts=now - 100))
    gw = await dash_gateway(config_for(upstreams), sources=sources)
    await open_page(browser, gw.url)
    await wait_for(browser, lambda d: count(d, '[data-backend-id="m1-a"] svg.chart path.line'))
    assert await asyncio.to_thread(count, browser, 'rect.event-closed[data-event-id="ev-old"]')

    event = sources.spike("m1-a", "m1", "latency_p95")
    marked = '[data-backend-id="m1-a"].anomalous'
    await wait_for(
        browser, lambda d: count(d, f'{marked} rect.event-open[data-event-id="{event.id}"]')
    )
    assert "1 open anomaly" in await asyncio.to_thread(text, browser, "#status")
    assert await asyncio.to_thread(severe, browser) == []


async def test_dashboard_without_detector_says_so(
    browser: webdriver.Chrome, dash_gateway: DashFactory, upstreams: list[FakeUpstream]
) -> None:
    gw = await dash_gateway(config_for(upstreams))
    await open_page(browser, gw.url)
    assert await asyncio.to_thread(text, browser, "#detector-state") == "detector off"
    assert await asyncio.to_thread(
        count, browser, '[data-backend-id="m1-a"][data-status="healthy"]'
    )
    assert "static_discovery" in await asyncio.to_thread(text, browser, "#plugins tbody")
    assert await asyncio.to_thread(severe, browser) == []
