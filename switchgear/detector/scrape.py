"""Scraping each backend's Prometheus ``/metrics`` into the engine's series.

``metrics_url`` derives the endpoint from a backend's API URL (``http://h:p/v1`` ->
``http://h:p/metrics``; ``meta["metrics_url"]`` overrides it). A failed scrape is logged
at debug level and skipped: a backend that stops answering shows up in the request
metrics (errors, latency) rather than as a hole in the gauges.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

import aiohttp

from switchgear.detector.engine import DetectorEngine
from switchgear.detector.series import Sample, parse_prometheus
from switchgear.types import Backend

log = logging.getLogger("switchgear.detector")


def metrics_url(backend: Backend) -> str:
    if "metrics_url" in backend.meta:
        return backend.meta["metrics_url"]
    base = backend.url.rstrip("/")
    if base.endswith("/v1"):
        base = base[: -len("/v1")]
    return base + "/metrics"


async def scrape(session: aiohttp.ClientSession, url: str, timeout_s: float = 2.0) -> list[Sample]:
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with session.get(url, timeout=timeout, allow_redirects=False) as resp:
        resp.raise_for_status()
        return parse_prometheus(await resp.text())


async def scrape_once(
    engine: DetectorEngine,
    session: aiohttp.ClientSession,
    backends: Iterable[Backend],
    timeout_s: float = 2.0,
    concurrency: int = 16,
) -> int:
    """Scrape every backend, at most ``concurrency`` at once; returns how many answered."""
    targets = list(backends)
    gate = asyncio.Semaphore(concurrency)

    async def one(backend: Backend) -> list[Sample]:
        async with gate:
            return await scrape(session, metrics_url(backend), timeout_s)

    results = await asyncio.gather(*(one(b) for b in targets), return_exceptions=True)
    ok = 0
    for backend, result in zip(targets, results, strict=True):
        if isinstance(result, BaseException):
            log.debug("scrape of %s failed: %r", backend.id, result)
            continue
        engine.add_samples(backend.id, backend.model, result)
        ok += 1
    return ok


async def scrape_loop(
    engine: DetectorEngine,
    session: aiohttp.ClientSession,
    backends: Callable[[], Iterable[Backend]],
) -> None:
    """Scrape every ``scrape_interval_s`` until cancelled (run it as a cleanup_ctx task)."""
    s = engine.settings
    while True:
        await scrape_once(engine, session, backends(), s.scrape_timeout_s, s.scrape_concurrency)
        await asyncio.sleep(engine.settings.scrape_interval_s)
