"""Wiring of the scaling signals into the gateway app (``setup_scaling``): the capacity
collector on ``/metrics``, the per-model in-flight middleware, the cold-start hold, the
decision logs of the orchestrator plugins and, when enabled, the KEDA external scaler.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client.core import CounterMetricFamily

from switchgear.orchestrators.policy import DecisionLog
from switchgear.proxy import keys
from switchgear.proxy.capacity import Capacity
from switchgear.proxy.coldstart import ColdStart

log = logging.getLogger("switchgear.scaling")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class DecisionCounts:
    """``switchgear_scale_decisions_total{model, kind}`` from the plugins' decision logs."""

    def __init__(self, logs: list[DecisionLog]) -> None:
        self.logs = logs

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "switchgear_scale_decisions",
            "Decisions of the orchestrator scale plugins by model and kind",
            labels=["model", "kind"],
        )
        totals: Counter[tuple[str, str]] = Counter()
        for log_ in self.logs:
            totals.update(log_.counts)
        for (model, kind), n in sorted(totals.items()):
            family.add_metric([model, kind], n)
        yield family


def setup_scaling(app: web.Application) -> None:
    settings = app[keys.SETTINGS]
    capacity = Capacity(settings.scaling)
    app[keys.CAPACITY] = capacity
    app[keys.SCALE_DECISIONS] = []
    app[keys.OBSERVERS].append(capacity.observe)
    live: dict[int, web.Request] = {}  # id -> request (requests are not hashable)

    @web.middleware
    async def in_flight(request: web.Request, handler: Handler) -> web.StreamResponse:
        live[id(request)] = request
        try:
            return await handler(request)
        finally:
            live.pop(id(request), None)

    def by_model() -> dict[str, int]:
        # the model is known once the view parsed the body; earlier requests are not counted
        return dict(
            Counter(p.model for r in list(live.values()) if (p := r.get(keys.PARSED_REQUEST)))
        )

    capacity.in_flight = by_model
    app.middlewares.append(in_flight)
    app[keys.METRICS].registry.register(capacity)
    app[keys.METRICS].registry.register(DecisionCounts(app[keys.SCALE_DECISIONS]))

    async def scaling(app: web.Application) -> AsyncIterator[None]:
        cold = ColdStart(
            settings.scaling,
            app[keys.REGISTRY],
            app[keys.BACKEND_STATE],
            app[keys.PLUGINS],
            settings.detector.action_timeout_s,
        )
        app[keys.COLD_START] = cold
        capacity.queued = cold.queued
        upstream = app.get(keys.UPSTREAM)
        if upstream is not None:
            upstream.cold_start = cold
        keda: Any = None
        if settings.scaling.keda.enabled:
            from switchgear.proxy.keda import KedaServer

            keda = KedaServer(settings.scaling.keda, cold, capacity)
            try:
                await keda.start()
            except Exception as exc:  # the OpenAI API keeps serving without the scaler
                log.error("KEDA external scaler did not start: %s", exc)
                keda = None
            else:
                app[keys.KEDA_SERVER] = keda
        try:
            yield
        finally:
            if keda is not None:
                await keda.stop()
            await cold.close()

    app.cleanup_ctx.append(scaling)
