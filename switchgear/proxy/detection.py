"""The anomaly detector inside the gateway: a cleanup_ctx and the gateway's control surface.

``setup_detection(app)`` adds a cleanup context that, when ``detector.enabled``, builds a
:class:`~switchgear.detector.service.DetectorService` (``app[DETECTOR]``), subscribes it to
every upstream :class:`~switchgear.types.Observation` (``app[OBSERVERS]``), and runs its
supervised tasks (ticks, ``/metrics`` scrapes, actions, re-probes and autoscaling) until the
app stops, when they are cancelled and awaited and the observer is removed.

:class:`Gateway` is the :class:`~switchgear.detector.control.GatewayControl` the policy acts
through: ``eject``/``readmit`` are ``app[BACKEND_STATE]``'s; ``set_fallback`` adds the model
to ``Policies.in_fallback``, where the fallback chain is computed, so its requests go
straight to the next model of the chain; ``restart`` and ``scale`` call the ``scale`` hook
(``first_result``), a restart as ``ScaleRequest(reason="restart:<backend id>")`` for the
current count; when no scale plugin restarted it, a switchgear worker is restarted through
its ``POST /admin/restart``, and ``restart`` returns False for any other backend. ``registry`` is the gateway's, for plugins that publish backends.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence

import aiohttp
import pluggy
from aiohttp import web

from switchgear.detector.policy import Policy
from switchgear.detector.registry import detector_factories
from switchgear.detector.report import DetectorMetrics
from switchgear.detector.scrape import metrics_url
from switchgear.detector.service import DetectorService
from switchgear.discovery.base import Registry
from switchgear.errors import ConfigError
from switchgear.plugins.manager import first_result
from switchgear.proxy import keys
from switchgear.proxy.breaker import BackendState
from switchgear.proxy.policy import Policies
from switchgear.settings.detector import DetectorSettings
from switchgear.types import Backend, ScaleRequest, ScaleResult

log = logging.getLogger("switchgear.detector")

RESTART_REASON = "restart:"


class Gateway:
    """The gateway as the policy sees it (implements ``GatewayControl``)."""

    def __init__(
        self,
        settings: DetectorSettings,
        registry: Registry,
        state: BackendState,
        policies: Policies,
        pm: pluggy.PluginManager,
        session: aiohttp.ClientSession,
    ) -> None:
        self.settings = settings
        self.registry, self.state, self.policies = registry, state, policies
        self.pm, self.session = pm, session
        self.policy = Policy(settings.policy)  # found by the built-in on_anomaly plugin

    def backends(self, model: str) -> Sequence[Backend]:
        return self.registry.backends(model)

    def _backend(self, backend_id: str) -> Backend | None:
        return next((b for b in self.registry.all_backends() if b.id == backend_id), None)

    def has_fallback(self, model: str) -> bool:
        return bool(self.policies.get(model).fallback)

    async def eject(self, backend_id: str, reason: str) -> None:
        self.state.eject(backend_id, f"detector: {reason}")

    async def readmit(self, backend_id: str) -> None:
        self.state.readmit(backend_id, "detector")

    async def probe(self, backend_id: str) -> bool:
        """``/health`` (when the backend has one) and ``/models`` both answer 2xx in time."""
        backend = self._backend(backend_id)
        if backend is None:
            return False
        timeout = aiohttp.ClientTimeout(total=self.settings.policy.probe_timeout_s)
        health = metrics_url(backend).removesuffix("/metrics") + "/health"
        headers = {"Authorization": f"Bearer {backend.api_key}"} if backend.api_key else {}
        try:
            async with self.session.get(health, timeout=timeout, allow_redirects=False) as resp:
                if resp.status != 404 and resp.status >= 300:
                    return False
            url = backend.url.rstrip("/") + "/models"
            async with self.session.get(
                url, timeout=timeout, headers=headers, allow_redirects=False
            ) as resp:
                return resp.status < 300
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def set_fallback(self, model: str, active: bool) -> None:
        self.policies.set_fallback(model, active, "detector")

    async def _scale(self, request: ScaleRequest) -> ScaleResult | None:
        result = await first_result(
            self.pm, "scale", timeout=self.settings.action_timeout_s, request=request
        )
        return result if isinstance(result, ScaleResult) else None

    async def restart(self, backend_id: str) -> bool:
        backend = self._backend(backend_id)
        if backend is None:
            return False
        n = len(self.registry.backends(backend.model))
        result = await self._scale(
            ScaleRequest(backend.model, n, n, f"{RESTART_REASON}{backend_id}")
        )
        if result is None or not result.started:
            return await self._admin_restart(backend)
        return True

    async def _admin_restart(self, backend: Backend) -> bool:
        """``POST /admin/restart`` of a switchgear worker, wherever it runs (its admin key is
        ``detector.worker_admin_key``); False for backends without it (vLLM, TGI, Ollama)."""
        url = metrics_url(backend).removesuffix("/metrics") + "/admin/restart"
        key = self.settings.worker_admin_key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        timeout = aiohttp.ClientTimeout(total=self.settings.action_timeout_s)
        try:
            async with self.session.post(
                url, headers=headers, timeout=timeout, allow_redirects=False
            ) as resp:
                if resp.status < 300:
                    return True
                log.warning("restart of %s refused: HTTP %s", backend.id, resp.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("restart of %s failed: %r", backend.id, exc)
        return False

    async def scale(self, model: str, replicas: int) -> ScaleResult | None:
        current = len(self.registry.backends(model))
        return await self._scale(ScaleRequest(model, replicas, current, "detector"))


def setup_detection(app: web.Application) -> None:
    async def detection(app: web.Application) -> AsyncIterator[None]:
        settings = app[keys.SETTINGS].detector
        if not settings.enabled:
            yield
            return
        pm, registry = app[keys.PLUGINS], app[keys.REGISTRY]
        factories = detector_factories(pm)
        unknown = sorted({*settings.detectors.values()} - set(factories))
        if unknown:
            raise ConfigError(
                "detector.detectors",
                f"unknown detector {', '.join(unknown)}; known: {', '.join(sorted(factories))}",
            )
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=settings.scrape_concurrency * 2),
            skip_auto_headers=("User-Agent",),
        )
        control = Gateway(
            settings,
            registry,
            app[keys.BACKEND_STATE],
            app[keys.CATALOG].policies,
            pm,
            session,
        )
        service = DetectorService(
            settings,
            factories,
            pm,
            control,
            control.policy,
            targets=registry.all_backends,
            session=session,
            metrics=DetectorMetrics(app[keys.METRICS].registry),
            leader=app[keys.FLEET].is_leader,
            in_flight=lambda: app[keys.CAPACITY].in_flight(),
        )
        observers = app[keys.OBSERVERS]
        observers.append(service.observe)
        app[keys.DETECTOR] = service
        try:
            async with service.running():
                yield
        finally:
            observers.remove(service.observe)
            await session.close()

    app.cleanup_ctx.append(detection)
