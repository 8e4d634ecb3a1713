"""Stopping a gateway process within ``shutdown_grace`` plus a small fixed bound.

On SIGTERM :func:`drain_and_close` stops listening, closes idle connections and waits for
the requests in flight until ``shutdown_grace`` has passed. Streams still open then get one
OpenAI-shaped error event in band (``data: {"error": {..., "code": "shutting_down"}}``),
counted in ``switchgear_streams_cut_at_shutdown_total``; the handlers still running are
cancelled, and the app's cleanup contexts get at most :data:`CLEANUP_BOUND_S`. The total is
at most ``shutdown_grace + SHUTDOWN_BOUND_S`` seconds.

aiohttp's own ``runner.cleanup()`` waits up to its shutdown timeout for each handler, then
as long again for the cancelled handler, then runs the cleanup contexts unbounded: twice the
grace and more. Here the waiting is done first, once, against one deadline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import Counter

from switchgear.errors import error_body
from switchgear.proxy import keys

log = logging.getLogger("switchgear.proxy.drain")

CUT_WRITE_S = 0.5  # the error event of all cut streams, together
CANCEL_WAIT_S = 1.0  # cancelled handlers finishing
CLEANUP_BOUND_S = 3.0  # on_shutdown, the connections' close and the cleanup contexts
SHUTDOWN_BOUND_S = CUT_WRITE_S + CANCEL_WAIT_S + CLEANUP_BOUND_S + 0.5  # + process exit

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Drain:
    """The requests in flight in one gateway app and the SSE streams among them."""

    def __init__(self, registry: object | None = None) -> None:
        #: id(request) -> [request, its SSE response once prepared] (requests are unhashable)
        self.requests: dict[int, list[Any]] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self.cut = Counter(
            "switchgear_streams_cut_at_shutdown",
            "Streams still open when the shutdown grace ran out (each got an error event)",
            registry=registry,  # type: ignore[arg-type]
        )

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests[id(request)] = [request, None]
        self._idle.clear()
        try:
            return await handler(request)
        finally:
            self.requests.pop(id(request), None)
            if not self.requests:
                self._idle.set()

    async def on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        flight = self.requests.get(id(request))
        if flight is not None and response.content_type == "text/event-stream":
            flight[1] = response

    async def wait_idle(self, timeout: float) -> bool:  # noqa: ASYNC109 - the grace is the point
        """True once no request is in flight; False when ``timeout`` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), max(0.0, timeout))
        except TimeoutError:
            return False
        return True

    async def cut_streams(self, grace: float) -> int:
        """Write the shutdown error event into every open stream; how many got it."""
        event = error_body(
            f"the gateway is shutting down and the stream did not finish within {grace:g}s",
            "server_error",
            code="shutting_down",
        )
        frame = b"data: " + orjson.dumps(event) + b"\n\n"
        streams = [r for _, r in self.requests.values() if r is not None and r.prepared]

        async def write(resp: web.StreamResponse) -> bool:
            try:
                await resp.write(frame)
            except (ConnectionError, RuntimeError):
                return False
            return True

        if not streams:
            return 0
        done, pending = await asyncio.wait(
            [asyncio.ensure_future(write(r)) for r in streams], timeout=CUT_WRITE_S
        )
        for task in pending:
            task.cancel()
        n = sum(1 for t in done if not t.cancelled() and t.exception() is None and t.result())
        self.cut.inc(n)
        return n

    async def cancel_all(self) -> None:
        tasks = [t for t in (getattr(r, "task", None) for r, _ in self.requests.values()) if t]
        for task in tasks:
            task.cancel()
        await self.wait_idle(CANCEL_WAIT_S)


def install(app: web.Application) -> Drain:
    """Track ``app``'s requests (before the app is frozen); the Drain is ``app[keys.DRAIN]``."""
    metrics = app.get(keys.METRICS)
    drain = Drain(metrics.registry if metrics is not None else None)
    app[keys.DRAIN] = drain
    app.middlewares.append(drain.middleware)
    app.on_response_prepare.append(drain.on_prepare)
    return drain


async def drain_and_close(runner: web.AppRunner, drain: Drain, grace: float) -> float:
    """Stop ``runner`` within ``grace + SHUTDOWN_BOUND_S``; the seconds it took."""
    t0 = time.monotonic()
    for site in list(runner.sites):
        await site.stop()  # no new connections
    if runner.server is not None:
        runner.server.pre_shutdown()  # idle keep-alive connections close now
    if not await drain.wait_idle(grace):
        cut = await drain.cut_streams(grace)
        log.warning(
            "shutdown grace (%gs) over: %d request(s) still in flight, %d stream(s) got an "
            "error event; cancelling them",
            grace,
            len(drain.requests),
            cut,
        )
        await drain.cancel_all()
    try:
        await asyncio.wait_for(runner.cleanup(), CLEANUP_BOUND_S)
    except TimeoutError:
        log.warning("cleanup did not finish within %.0fs; exiting anyway", CLEANUP_BOUND_S)
    return time.monotonic() - t0
