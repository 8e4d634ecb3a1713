"""Active health checks of static backends (``health_checks:`` settings).

Consul checks the backends it knows; static backends had nothing but the first-byte deadline,
so a frozen backend (SIGSTOP, a hung GPU) kept receiving requests for ``timeouts.ttft``. Every
``interval`` seconds each static backend gets ``GET <origin><path>`` (``meta.health_path``
overrides ``path``). Any HTTP answer below 500 within ``timeout`` passes, so a backend
without a health route (404) is not taken out for that; no answer, a reset or a 5xx fails.

A failed probe is repeated at once until ``unhealthy_threshold`` failures in a row take the
backend out; a frozen backend is therefore out within ``interval + unhealthy_threshold *
timeout`` (under two intervals with the defaults). A backend that is out is probed once
per interval and comes back after ``healthy_threshold`` passes in a row. Both transitions
are logged.

"Out" is an ejection in the shared :class:`~switchgear.proxy.breaker.BackendState` with a
reason starting with :data:`REASON`. A check only readmits what it ejected itself; a
backend an operator or the detector ejected stays out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from switchgear.proxy import keys
from switchgear.settings.gateway import HealthChecks
from switchgear.types import Backend
from switchgear.urls import URLRefused, check_health_path

log = logging.getLogger("switchgear.proxy.health_checks")

REASON = "health check"
MAX_PARALLEL = 64  # probes in flight at once


@dataclass(slots=True)
class Health:
    up: bool = True
    passes: int = 0  # in a row, while out
    detail: str = ""


def probe_url(backend: Backend, default_path: str) -> str:
    parts = urlsplit(backend.url)
    path = backend.meta.get("health_path") or default_path
    try:
        check_health_path(path)
    except URLRefused:
        path = default_path
    return f"{parts.scheme}://{parts.netloc}{path}"


class HealthChecker:
    """Probes the static backends of one app; ``health`` is the last verdict per backend id."""

    def __init__(self, app: web.Application, settings: HealthChecks) -> None:
        self.app = app
        self.settings = settings
        self.health: dict[str, Health] = {}
        self.rounds = 0
        self._limit = asyncio.Semaphore(MAX_PARALLEL)
        self._session: aiohttp.ClientSession | None = None

    async def probe(self, backend: Backend) -> str | None:
        """None when the backend answered; else why not."""
        assert self._session is not None
        url = probe_url(backend, self.settings.path)
        try:
            async with self._limit, self._session.get(url, allow_redirects=False) as resp:
                if resp.status >= 500:
                    return f"{url} answered {resp.status}"
                return None
        except TimeoutError:
            return f"no answer from {url} within {self.settings.timeout:g}s"
        except aiohttp.ClientError as exc:
            return f"{url}: {exc.__class__.__name__}: {exc}"

    async def check(self, backend: Backend) -> None:
        h = self.health.setdefault(backend.id, Health())
        failure = await self.probe(backend)
        if h.up:
            fails = 0
            while failure is not None:
                fails += 1
                if fails >= self.settings.unhealthy_threshold:
                    self._down(backend, h, failure)
                    return
                failure = await self.probe(backend)
            return
        if failure is not None:
            h.passes, h.detail = 0, failure
            state = self.app[keys.BACKEND_STATE]
            if state.get(backend.id).ejected is None:  # readmitted by someone else, still down
                state.eject(backend.id, f"{REASON}: {failure}")
            return
        h.passes += 1
        if h.passes >= self.settings.healthy_threshold:
            self._up(backend, h)

    def _down(self, backend: Backend, h: Health, failure: str) -> None:
        h.up, h.passes, h.detail = False, 0, failure
        state = self.app[keys.BACKEND_STATE]
        if state.get(backend.id).ejected is None:
            state.eject(backend.id, f"{REASON}: {failure}")
        log.warning(
            "backend %s (%s at %s) is down: %s", backend.id, backend.model, backend.url, failure
        )

    def _up(self, backend: Backend, h: Health) -> None:
        h.up, h.passes, h.detail = True, 0, ""
        state = self.app[keys.BACKEND_STATE]
        if (state.get(backend.id).ejected or "").startswith(REASON):
            state.readmit(backend.id, REASON)
        log.info("backend %s (%s at %s) is up again", backend.id, backend.model, backend.url)

    def targets(self) -> list[Backend]:
        return [b for b in self.app[keys.REGISTRY].all_backends() if b.source == "static"]

    async def run_round(self) -> None:
        targets = self.targets()
        known = {b.id for b in targets}
        for gone in set(self.health) - known:
            del self.health[gone]
        await asyncio.gather(*(self.check(b) for b in targets))
        self.rounds += 1

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout)
        connector = aiohttp.TCPConnector(limit=MAX_PARALLEL, force_close=True)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            self._session = session
            loop = asyncio.get_running_loop()
            next_at = loop.time() + self.settings.interval  # start-up traffic goes first
            while True:
                await asyncio.sleep(max(0.0, next_at - loop.time()))  # the check interval
                next_at += self.settings.interval
                try:
                    await self.run_round()
                except Exception:  # a bug here must not end health checking
                    log.exception("health check round failed")
                next_at = max(next_at, loop.time())


def setup_health_checks(app: web.Application) -> None:
    """Run the checks while the app runs (a cleanup_ctx), unless ``health_checks.enabled`` is off."""

    async def health_checks(app: web.Application) -> AsyncIterator[None]:
        settings = app[keys.SETTINGS].health_checks
        if not settings.enabled:
            yield
            return
        checker = app[keys.HEALTH_CHECKS] = HealthChecker(app, settings)
        task = asyncio.create_task(checker.run(), name="health-checks")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.cleanup_ctx.append(health_checks)
