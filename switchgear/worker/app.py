"""The worker's aiohttp app, composed from small ``setup_*`` functions.

``create_worker_app(settings, *, plugin_manager=None, extra_contexts=())`` is the seam for
Consul registration: ``extra_contexts`` are more cleanup-context factories (they run after
the model slot exists, so they may read :func:`worker_info` once ``SLOT`` is ready), and
``SWAP_LISTENERS`` callbacks run after each successful swap.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import pluggy
from aiohttp import web

from switchgear.auth import bearer_token, encode_keys, match_key
from switchgear.errors import (
    APIError,
    AuthenticationFailed,
    InternalError,
    InvalidRequest,
    error_response,
    for_status,
)
from switchgear.plugins.host import Host
from switchgear.plugins.manager import call_hook, make_plugin_manager
from switchgear.settings import Settings, load_settings
from switchgear.settings.worker import ModelSpec
from switchgear.worker import keys
from switchgear.worker.engine import EngineClosed
from switchgear.worker.faults import Faults, ballast_ctx
from switchgear.worker.metrics import WorkerMetrics
from switchgear.worker.swap import ModelSlot
from switchgear.worker.views import admin, chat, completions, embeddings, health, models

log = logging.getLogger("switchgear.worker")

GATES_PLUGIN = "switchgear.worker.gates"
# Only the built-ins that act on a worker: the gateway's routing, discovery, detection and
# scaling plugins would otherwise add their routes and startup work to the worker app.
WORKER_BUILTINS = ("switchgear.default_plugins.quantization",)
CleanupCtx = Callable[[web.Application], AsyncIterator[None]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def worker_plugin_manager(settings: Settings) -> pluggy.PluginManager:
    """The worker's built-ins, entry points and config plugins, plus the gates."""
    pm = make_plugin_manager(settings=settings, builtins=WORKER_BUILTINS)
    register_gates(pm)
    return pm


def register_gates(pm: pluggy.PluginManager) -> None:
    """Register the built-in gates unless present or disabled (``plugins.disabled: [gates]``)."""
    from switchgear.worker import gates

    if pm.has_plugin(GATES_PLUGIN) or pm.is_blocked(GATES_PLUGIN) or pm.is_blocked("gates"):
        return
    pm.register(gates, name=GATES_PLUGIN)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error becomes OpenAI-shaped JSON (:func:`switchgear.errors.error_response`)."""
    try:
        return await handler(request)
    except APIError as exc:
        return error_response(exc, request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc, request)
    except EngineClosed as exc:
        return error_response(for_status(503, str(exc)), request)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception as exc:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(exc, request, internal="the worker failed to handle the request")


@web.middleware
async def v1_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """API keys (when configured), fault injection, and per-route request counts on /v1."""
    if not request.path.startswith("/v1/"):
        return await handler(request)
    allowed = request.app[keys.API_KEYS]
    if allowed and match_key(bearer_token(request.headers), allowed) is None:
        raise AuthenticationFailed("invalid API key")
    faults = request.app[keys.FAULTS]
    if faults.delay_ms:
        await asyncio.sleep(faults.delay_ms / 1000)
    if faults.should_fail():
        raise InternalError("injected fault")
    metrics = request.app[keys.METRICS]
    try:
        resp = await handler(request)
    except APIError as exc:
        metrics.requests.labels(request.path, str(exc.status)).inc()
        raise
    metrics.requests.labels(request.path, str(resp.status)).inc()
    return resp


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/v1/chat/completions", chat.chat_completions)
    r.add_post("/v1/completions", completions.completions)
    r.add_post("/v1/embeddings", embeddings.embeddings)
    r.add_get("/v1/models", models.list_models)
    r.add_get("/health", health.health)
    r.add_get("/metrics", health.metrics)
    r.add_post("/admin/swap", admin.swap)
    r.add_post("/admin/swap/preflight", admin.preflight)
    r.add_post("/admin/rollback", admin.rollback)
    r.add_post("/admin/restart", admin.restart)
    r.add_get("/admin/backups", admin.backups)
    r.add_get("/admin/faults", admin.get_faults)
    r.add_post("/admin/faults", admin.set_faults)


def setup_plugin_routes(app: web.Application, pm: pluggy.PluginManager) -> None:
    from switchgear.plugins.manager import call_hook_sync

    def register(method: str, path: str, handler: Callable[..., Any]) -> None:
        app.router.add_route(method, path, handler)

    call_hook_sync(pm, "register_routes", register=register)


async def slot_ctx(app: web.Application) -> AsyncIterator[None]:
    """Load the model in the background (/health says ``loading``) and free it on exit."""
    settings = app[keys.SETTINGS]
    assert settings.worker is not None
    slot = ModelSlot(settings.worker, app[keys.PLUGINS], app[keys.METRICS])
    app[keys.SLOT] = slot
    task = asyncio.create_task(slot.start(settings.worker.model), name="worker-load")
    app[keys.LOAD_TASK] = task
    await call_hook(app[keys.PLUGINS], "startup", app=app, host=Host("worker", settings))
    yield
    await call_hook(app[keys.PLUGINS], "shutdown", app=app)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await slot.close()


async def config_watch_ctx(app: web.Application) -> AsyncIterator[None]:
    """Swap when the config file's ``worker.model`` section changes (mtime polled)."""
    path = app[keys.CONFIG_PATH]
    settings = app[keys.SETTINGS]
    if not path or settings.worker is None or not settings.worker.watch_config:
        yield
        return
    interval = settings.worker.watch_interval_s

    async def watch() -> None:
        p = Path(path)
        seen_mtime = (await asyncio.to_thread(p.stat)).st_mtime_ns
        seen_model = settings.worker.model  # type: ignore[union-attr]
        while True:
            await asyncio.sleep(interval)
            try:
                mtime = (await asyncio.to_thread(p.stat)).st_mtime_ns
            except OSError:
                continue
            if mtime == seen_mtime:
                continue
            seen_mtime = mtime
            try:
                fresh = load_settings(path)
            except Exception as exc:
                log.error(
                    "config %s changed but is invalid; keeping the current model: %s", path, exc
                )
                continue
            if fresh.worker is None or fresh.worker.model == seen_model:
                continue
            seen_model = fresh.worker.model
            await app[keys.SLOT].ready()
            log.info("config %s changed: swapping to %s", path, seen_model.model_name_or_path)
            try:
                out = await admin.swap_to(
                    app,
                    admin.SwapBody(
                        model_name_or_path=seen_model.model_name_or_path,
                        quantization=seen_model.quantization,
                        dtype=seen_model.dtype,
                        name=seen_model.name,
                    ),
                )
                log.info("swap from config change: ok=%s failed=%s", out["ok"], out["failed"])
            except APIError as exc:
                log.error("swap from config change refused: %s", exc.message)

    task = asyncio.create_task(watch(), name="worker-config-watch")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def create_worker_app(
    settings: Settings,
    *,
    config_path: str | None = None,
    plugin_manager: pluggy.PluginManager | None = None,
    extra_contexts: Iterable[CleanupCtx] = (),
) -> web.Application:
    if settings.worker is None:
        raise InvalidRequest("no worker section")  # pragma: no cover - validated by callers
    pm = plugin_manager or worker_plugin_manager(settings)
    register_gates(pm)
    app = web.Application(
        middlewares=[errors_middleware, v1_middleware],
        client_max_size=settings.limits.max_body_bytes,
    )
    app[keys.SETTINGS] = settings
    app[keys.CONFIG_PATH] = config_path
    app[keys.PLUGINS] = pm
    app[keys.METRICS] = WorkerMetrics()
    app[keys.FAULTS] = Faults()
    app[keys.SWAP_LISTENERS] = []
    app[keys.ADMIN_KEY] = encode_keys([settings.auth.resolved_admin_key()])
    app[keys.API_KEYS] = encode_keys(settings.auth.resolved_api_keys())
    setup_routes(app)
    setup_plugin_routes(app, pm)
    app.cleanup_ctx.extend([slot_ctx, ballast_ctx, config_watch_ctx, *extra_contexts])
    setup_registration(app, settings)
    return app


def setup_registration(app: web.Application, settings: Settings) -> None:
    """Register in the local Consul agent while serving, when a ``consul:`` section is set.

    The registration context runs after the model slot exists, so the service's Meta carries
    the loaded model; a hot swap updates Meta through ``SWAP_LISTENERS``; clean shutdown
    (SIGTERM) deregisters.
    """
    if settings.consul is None or not settings.consul.enabled:
        return
    from switchgear.discovery.registration import registration_context

    ctx = registration_context(
        settings.consul, lambda: worker_info(app), settings.listen.host, settings.listen.port
    )
    app.cleanup_ctx.append(ctx)
    app[keys.SWAP_LISTENERS].append(ctx.on_swap)

    async def meta_after_load(app: web.Application) -> AsyncIterator[None]:
        # Registered while loading (its check is critical until /health is ready); once the
        # model is loaded, Meta gains the model id, context length, languages and device.
        async def refresh() -> None:
            await asyncio.gather(app[keys.LOAD_TASK], return_exceptions=True)
            try:
                await ctx.refresh()
            except Exception as exc:  # Consul down: the resync loop registers again later
                log.warning("could not update Consul Meta after loading: %s", exc)

        task = asyncio.create_task(refresh(), name="worker-registration-meta")
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    app.cleanup_ctx.append(meta_after_load)


def worker_info(app: web.Application) -> dict[str, Any]:
    """What registration needs: model id, quantization, context length, languages, device."""
    slot = app[keys.SLOT]
    engine = slot.engine
    if engine is None:
        return {"status": slot.state}
    b = engine.bundle
    return {
        "status": slot.state,
        "model": b.name,
        "quantization": b.quantization,
        "context_length": b.context_length,
        "languages": list(b.spec.languages),
        "device": b.device,
        "dtype": b.dtype,
        "format": b.fmt,
        "supports_continuation": "true",
        "version": model_version(b.spec),
    }


def model_version(spec: ModelSpec) -> str:
    """A short hash of the served model's config: it changes with every swap to another model."""
    text = spec.model_dump_json(include={"model_name_or_path", "quantization", "dtype", "name"})
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()
