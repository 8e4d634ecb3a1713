"""Running the gateway: one process, or N processes sharing one port with SO_REUSEPORT.

``serve_from_cli`` is what ``switchgear serve`` calls. Each process runs one event loop
(uvloop when installed). SIGTERM/SIGINT stop accepting, let in-flight requests finish for
up to ``shutdown_grace`` seconds, cut the streams still open with an in-band error event,
then close: the process exits within ``shutdown_grace`` + :data:`~switchgear.proxy.drain.
SHUTDOWN_BOUND_S` (see :mod:`switchgear.proxy.drain`). Every connection passes through the
edge limits of :mod:`switchgear.proxy.edge` (``edge:`` settings). With ``workers > 1`` the
parent only starts, watches and signals its children; the kernel spreads connections over
them.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
import signal
import sys
from typing import Any

from aiohttp import web

from switchgear.discovery.consul_client import ConsulACLError
from switchgear.proxy import drain as drains
from switchgear.proxy import keys
from switchgear.proxy.app import create_app
from switchgear.proxy.edge import EdgeGuard, EdgeSite, raise_nofile_limit
from switchgear.proxy.metrics import multiprocess_dir
from switchgear.settings import Settings

log = logging.getLogger("switchgear.proxy")

#: Descriptors beyond the client connections: upstream pool, Consul, logs, the listener.
NOFILE_HEADROOM = 2048

ACCESS_LOG_FORMAT = '%a "%r" %s %b %Tfs rid=%{x-request-id}o'


def runner_kwargs(settings: Settings) -> dict[str, Any]:
    """AppRunner options shared by the CLI and tests: cancel handlers of gone clients."""
    kw: dict[str, Any] = {
        "handler_cancellation": True,
        "shutdown_timeout": settings.shutdown_grace,
        "keepalive_timeout": settings.edge.keepalive_timeout,
    }
    if settings.access_log:
        kw["access_log"] = logging.getLogger("aiohttp.access")
        kw["access_log_format"] = ACCESS_LOG_FORMAT
    else:
        kw["access_log"] = None
    return kw


async def start(
    app: web.Application, settings: Settings, *, host: str, port: int, reuse_port: bool = False
) -> web.AppRunner:
    """Start ``app`` on host:port; returns the runner (``runner.addresses`` has the bound port)."""
    drains.install(app)
    runner = web.AppRunner(app, **runner_kwargs(settings))
    try:
        await runner.setup()
    except BaseException:
        await runner.cleanup()  # close what the contexts that did start opened
        raise
    ssl_context = None
    if settings.listen.tls_cert and settings.listen.tls_key:
        import ssl

        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(settings.listen.tls_cert, settings.listen.tls_key)
    site = EdgeSite(
        runner,
        host,
        port,
        guard=edge_guard(settings),
        reuse_port=reuse_port or None,
        ssl_context=ssl_context,
        backlog=1024,
    )
    await site.start()
    return runner


def edge_guard(settings: Settings) -> EdgeGuard:
    e = settings.edge
    return EdgeGuard(
        max_connections=e.max_connections,
        header_timeout=e.header_timeout,
        body_timeout=e.body_timeout,
    )


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


#: The collector's thresholds in a serving process. CPython's default (700, 10, 10) runs a
#: young collection every 700 net allocations; under load the objects of the requests in
#: flight survive it, are promoted and rescanned, so the collector's cost per request grows
#: with concurrency (a third of the CPU per request at 64 in flight). Collected this rarely,
#: a request's objects are freed by reference counting before a collection meets them.
GC_THRESHOLDS = (50_000, 20, 10)


def tune_gc() -> None:
    """Freeze what start-up built (the collector no longer scans it) and collect less often.

    Called once the app is serving, in the serving process only: the modules, settings,
    plugins and registry are there for the life of the process.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def _serve(settings: Settings, reuse_port: bool) -> None:
    raise_nofile_limit(settings.edge.max_connections + NOFILE_HEADROOM)
    app = create_app(settings)
    runner = await start(
        app, settings, host=settings.listen.host, port=settings.listen.port, reuse_port=reuse_port
    )
    tune_gc()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    addr = runner.addresses[0] if runner.addresses else (settings.listen.host, settings.listen.port)
    log.info("switchgear gateway listening on http://%s:%s (pid %d)", addr[0], addr[1], os.getpid())
    try:
        await stop.wait()
    finally:
        log.info(
            "switchgear gateway (pid %d) draining for up to %.0fs",
            os.getpid(),
            settings.shutdown_grace,
        )
        took = await drains.drain_and_close(runner, app[keys.DRAIN], settings.shutdown_grace)
        log.info("switchgear gateway (pid %d) stopped in %.1fs", os.getpid(), took)


def run_process(settings: Settings, reuse_port: bool = False) -> int:
    """Serve in this process until SIGTERM/SIGINT; 1 when a start-up check refused to start."""
    loop = _new_loop()
    try:
        loop.run_until_complete(_serve(settings, reuse_port))
    except ConsulACLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        loop.close()
    return 0


def _child(settings_json: str) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"
    )
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent forwards SIGTERM; Ctrl-C reaches all
    sys.exit(run_process(Settings.model_validate_json(settings_json), reuse_port=True))


def serve_settings(settings: Settings) -> int:
    """Serve checked settings: one process, or ``workers`` processes on one port."""
    if settings.workers == 1:
        return run_process(settings)
    if settings.listen.port == 0:
        print("error: --workers > 1 needs a fixed port", file=sys.stderr)
        return 2
    with multiprocess_dir():  # one /metrics scrape covers every worker
        return _run_workers(settings)


def _run_workers(settings: Settings) -> int:
    ctx = multiprocessing.get_context("spawn")
    payload = settings.model_dump_json()
    procs = [
        ctx.Process(target=_child, args=(payload,), name=f"switchgear-gateway-{i}")
        for i in range(settings.workers)
    ]
    for p in procs:
        p.start()

    def forward(signum: int, _frame: Any) -> None:
        for p in procs:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for p in procs:
        p.join()
    return max((p.exitcode or 0) for p in procs)
