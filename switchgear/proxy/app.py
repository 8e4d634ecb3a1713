"""The gateway's aiohttp application, composed from small ``setup_*`` functions.

Resource rules: the discovery tasks, the upstream ClientSession and shadow requests live in
cleanup_ctx contexts, so they exist exactly while the app runs; tasks are cancelled and
awaited on exit (shadow requests first, then the session, then discovery). The ``startup``
hook runs after those resources exist, ``shutdown`` before they close.

Start-up checks: every discovery source with a ``preflight()`` runs it before its task
starts; a :class:`~switchgear.discovery.consul_client.ConsulACLError` (a wrong or weak
Consul token) stops the start, and ``switchgear serve`` prints it on one line.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping

import aiohttp
import pluggy
from aiohttp import web

from switchgear import telemetry
from switchgear.discovery.base import Registry
from switchgear.discovery.consul_client import ConsulACLError
from switchgear.plugins.host import Host
from switchgear.plugins.manager import call_hook, call_hook_sync, make_plugin_manager
from switchgear.proxy import keys
from switchgear.proxy.bodybudget import BodyBudget
from switchgear.proxy.breaker import BackendState
from switchgear.proxy.catalog import ModelCatalog
from switchgear.proxy.detection import setup_detection
from switchgear.proxy.health_checks import setup_health_checks
from switchgear.proxy.metrics import Metrics
from switchgear.proxy.middlewares import middlewares
from switchgear.proxy.policy import Policies
from switchgear.proxy.ratelimit import RateLimiter
from switchgear.proxy.rollout import setup_rollouts
from switchgear.proxy.scaling import setup_scaling
from switchgear.proxy.shadow import setup_shadow
from switchgear.proxy.upstream import Upstream
from switchgear.proxy.views import (
    admin,
    anomalies,
    chat,
    completions,
    embeddings,
    health,
    models,
    openapi,
    responses,
    rollouts,
)
from switchgear.proxy.views.dashboard import setup_dashboard
from switchgear.settings import Settings
from switchgear.state import FleetState, StateMetrics
from switchgear.types import ModelInfo, Observation

log = logging.getLogger("switchgear.proxy")

READ_BUFSIZE = 2**18  # SSE lines up to ~512 KiB (logprobs chunks can be large)
PREFLIGHT_S = 10.0  # longest start-up check of one discovery source before starting degraded


def create_app(
    settings: Settings, *, plugin_manager: pluggy.PluginManager | None = None
) -> web.Application:
    """The gateway app for ``settings``; ``plugin_manager`` defaults to one built from settings."""
    pm = plugin_manager or make_plugin_manager(settings=settings, load_entrypoints=True)
    app = web.Application(
        middlewares=middlewares(settings), client_max_size=settings.limits.max_body_bytes
    )
    setup_state(app, settings, pm)
    setup_tracing(app)
    setup_routes(app)
    setup_dashboard(app)
    setup_discovery(app)
    setup_fleet(app)
    setup_health_checks(app)
    setup_upstream(app)
    setup_shadow(app)
    setup_detection(app)
    setup_scaling(app)
    setup_rollouts(app)
    setup_lifecycle(app)
    return app


def setup_state(app: web.Application, settings: Settings, pm: pluggy.PluginManager) -> None:
    app[keys.SETTINGS] = settings
    app[keys.PLUGINS] = pm
    app[keys.REGISTRY] = Registry()
    app[keys.BACKEND_STATE] = BackendState(
        failures=settings.breaker.failures, cooldown=settings.breaker.cooldown
    )
    app[keys.METRICS] = Metrics()
    app[keys.OBSERVERS] = []
    catalog = ModelCatalog(settings, app[keys.REGISTRY], Policies(settings))
    app[keys.CATALOG] = catalog
    app[keys.ALIASES] = catalog.aliases
    app[keys.API_KEYS] = tuple(k.encode() for k in settings.auth.resolved_api_keys())
    admin_key = settings.auth.resolved_admin_key()
    app[keys.ADMIN_KEY] = (admin_key.encode(),) if admin_key else ()
    app[keys.FLEET] = FleetState(
        settings.state,
        StateMetrics(app[keys.METRICS].registry),
        workers=settings.workers,
        consul=settings.consul,
    )
    app[keys.RATE_LIMITER] = RateLimiter(settings.rate_limits, app[keys.FLEET])
    app[keys.BODY_BUDGET] = BodyBudget(settings.limits.max_body_bytes_in_flight)


def setup_tracing(app: web.Application) -> None:
    """OpenTelemetry tracing (``tracing``); its exporter is flushed and stopped on exit."""
    app[keys.TRACING] = tracing = telemetry.make_tracing(app[keys.SETTINGS].tracing)
    if not tracing.enabled:
        return

    async def exporter(app: web.Application) -> AsyncIterator[None]:
        yield
        await asyncio.get_running_loop().run_in_executor(None, tracing.shutdown)

    app.cleanup_ctx.append(exporter)


def setup_routes(app: web.Application) -> None:
    for module in (
        chat,
        completions,
        embeddings,
        responses,
        models,
        health,
        admin,
        anomalies,
        openapi,
        rollouts,
    ):
        module.setup(app)

    def register(method: str, path: str, handler: Callable[..., object]) -> None:
        app.router.add_route(method, path, handler)  # type: ignore[arg-type]

    call_hook_sync(app[keys.PLUGINS], "register_routes", register=register)


def setup_discovery(app: web.Application) -> None:
    async def discovery(app: web.Application) -> AsyncIterator[None]:
        sources: list[object] = []
        call_hook_sync(
            app[keys.PLUGINS],
            "register_discovery",
            register=sources.append,
            settings=app[keys.SETTINGS],
        )
        for source in sources:
            await _preflight(source)
        registry, catalog = app[keys.REGISTRY], app[keys.CATALOG]
        unsubscribe = [
            _follow_models(source, catalog) for source in sources if hasattr(source, "on_models")
        ]
        tasks = [
            asyncio.create_task(_run_source(s, registry), name=f"discovery:{getattr(s, 'name', s)}")
            for s in sources
        ]
        await asyncio.sleep(0)  # let each source publish what it already knows before serving
        try:
            yield
        finally:
            for stop in unsubscribe:
                stop()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    app.cleanup_ctx.append(discovery)


async def _preflight(source: object) -> None:
    """Run a source's start-up check; only an ACL error is fatal (an outage starts degraded)."""
    check = getattr(source, "preflight", None)
    if check is None:
        return
    name = getattr(source, "name", source)
    try:
        async with asyncio.timeout(PREFLIGHT_S):
            await check()
    except ConsulACLError:
        raise
    except Exception as exc:
        log.warning("discovery source %s: start-up check failed, starting degraded: %s", name, exc)


def _follow_models(source: object, catalog: ModelCatalog) -> Callable[[], None]:
    """Merge the source's KV model catalogue (aliases, fallback chains) over the config."""
    name = str(getattr(source, "name", source))

    def changed(models: Mapping[str, ModelInfo]) -> None:
        catalog.set_kv(name, models)
        log.info("model catalogue from %s: %d models", name, len(models))

    stop: Callable[[], None] = source.on_models(changed)  # type: ignore[attr-defined]
    return stop


async def _run_source(source: object, registry: Registry) -> None:
    try:
        await source.run(registry)  # type: ignore[attr-defined]
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception(
            "discovery source %s failed; its backends stay as last published",
            getattr(source, "name", source),
        )


def setup_fleet(app: web.Application) -> None:
    """Shared state (``state.redis_url``, ``state.consul``): limits, health, detector leadership."""

    async def fleet(app: web.Application) -> AsyncIterator[None]:
        state, settings = app[keys.FLEET], app[keys.SETTINGS]

        def feed() -> Callable[[Observation], None] | None:
            service = app.get(keys.DETECTOR)
            return service.engine.observe if service is not None else None

        detecting = settings.detector.enabled and state.shared
        async with state.running(
            app[keys.BACKEND_STATE],
            feed if detecting else None,
            models=app[keys.CATALOG].policies,
        ):
            if detecting:
                app[keys.OBSERVERS].append(state.observe)
                assert state.leader is not None
                state.leader.on_elected.append(lambda: _adopt_ejections(app))
            try:
                yield
            finally:
                if detecting:
                    app[keys.OBSERVERS].remove(state.observe)

    app.cleanup_ctx.append(fleet)


def _adopt_ejections(app: web.Application) -> None:
    """A new detector leader takes over the detector's ejections, so it re-probes them."""
    service = app.get(keys.DETECTOR)
    if service is None:
        return
    models = {b.id: b.model for b in app[keys.REGISTRY].all_backends()}
    for backend_id, reason in app[keys.BACKEND_STATE].ejected_ids().items():
        if reason.startswith("detector:"):
            service.policy.ejected.setdefault(backend_id, models.get(backend_id, ""))


def setup_upstream(app: web.Application) -> None:
    async def upstream(app: web.Application) -> AsyncIterator[None]:
        settings = app[keys.SETTINGS]
        connector = aiohttp.TCPConnector(
            limit=settings.limits.upstream_connections, limit_per_host=0, ttl_dns_cache=300
        )
        session = aiohttp.ClientSession(
            connector=connector,
            read_bufsize=READ_BUFSIZE,
            skip_auto_headers=("User-Agent",),
            auto_decompress=True,
        )
        metrics, observers = app[keys.METRICS], app[keys.OBSERVERS]

        def retry(model: str) -> None:
            metrics.retry(model)
            telemetry.event("switchgear.retry", {"gen_ai.request.model": model})

        def observe(obs: Observation) -> None:
            metrics.observe(obs)
            for callback in observers:
                try:
                    callback(obs)
                except Exception:
                    log.exception("observer %r failed", callback)

        app[keys.UPSTREAM] = Upstream(
            session,
            app[keys.PLUGINS],
            app[keys.REGISTRY],
            app[keys.BACKEND_STATE],
            app[keys.CATALOG].policies,
            observe,
            retry,
        )
        try:
            yield
        finally:
            await session.close()

    app.cleanup_ctx.append(upstream)


def setup_lifecycle(app: web.Application) -> None:
    async def on_startup(app: web.Application) -> None:
        settings = app[keys.SETTINGS]
        host = Host("gateway", settings, app[keys.REGISTRY])
        await call_hook(
            app[keys.PLUGINS], "startup", timeout=settings.plugins.timeout, app=app, host=host
        )

    async def on_shutdown(app: web.Application) -> None:
        await call_hook(
            app[keys.PLUGINS], "shutdown", timeout=app[keys.SETTINGS].plugins.timeout, app=app
        )

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
