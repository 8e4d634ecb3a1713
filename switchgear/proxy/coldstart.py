"""Scale from zero: a request for a model with no ready replica is held until one is ready.

:meth:`ColdStart.hold` is called by the upstream client where it finds no backend. With
``scaling.cold_start_wait_s`` = 0 it returns nothing (the usual 503). Otherwise the model is
marked active (KEDA's ``StreamIsActive`` pushes it; :attr:`listeners` hear it), one scale-out
to ``max(1, min_replicas)`` goes through the ``scale`` hook, and the request waits for a
healthy backend of the model; past the wait it gets a 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pluggy

from switchgear.discovery.base import Registry
from switchgear.errors import NoHealthyBackend
from switchgear.plugins.manager import first_result
from switchgear.proxy.breaker import BackendState
from switchgear.settings.scaling import ScalingSection
from switchgear.types import Backend, ScaleRequest

log = logging.getLogger("switchgear.coldstart")


class ColdStart:
    def __init__(
        self,
        settings: ScalingSection,
        registry: Registry,
        state: BackendState,
        pm: pluggy.PluginManager,
        scale_timeout_s: float = 180.0,
    ) -> None:
        self.s = settings
        self.registry, self.state, self.pm = registry, state, pm
        self.scale_timeout_s = scale_timeout_s
        self.waiting: dict[str, int] = {}
        self.listeners: list[Callable[[str, bool], None]] = []
        self.tasks: set[asyncio.Task[None]] = set()

    def queued(self, model: str) -> int:
        return self.waiting.get(model, 0)

    def ready(self, model: str, exclude: frozenset[str] = frozenset()) -> list[Backend]:
        return [
            b
            for b in self.registry.backends(model)
            if self.state.healthy(b.id) and b.id not in exclude
        ]

    def active(self, model: str) -> bool:
        """KEDA's activity: requests are waiting for the model, or it has ready replicas."""
        return self.queued(model) > 0 or bool(self.ready(model))

    def _notify(self, model: str, active: bool) -> None:
        for listener in list(self.listeners):
            try:
                listener(model, active)
            except Exception:
                log.exception("cold-start listener failed")

    async def _scale_out(self, model: str) -> None:
        replicas = max(1, self.s.bounds(model).min_replicas)
        request = ScaleRequest(model, replicas, 0, "cold start: a request is waiting")
        result = await first_result(self.pm, "scale", timeout=self.scale_timeout_s, request=request)
        if result is None or getattr(result, "error", None):
            log.warning("scale from zero of %s: %s", model, getattr(result, "error", "no scaler"))

    async def hold(self, model: str, exclude: frozenset[str] = frozenset()) -> list[Backend]:
        """Wait for a ready backend of ``model``; raises a 503 with Retry-After past the wait."""
        wait_s = self.s.cold_start_wait_s
        if wait_s <= 0:
            return []
        first = self.queued(model) == 0
        self.waiting[model] = self.queued(model) + 1
        if first:
            self._notify(model, True)
            task = asyncio.create_task(self._scale_out(model), name=f"cold-start:{model}")
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        try:
            while not (ready := self.ready(model, exclude)):
                left = deadline - loop.time()
                if left <= 0:
                    raise NoHealthyBackend(
                        f"model {model} has no ready replica yet; it is starting, retry later",
                        code="model_starting",
                        headers={"Retry-After": str(self.s.cold_start_retry_after_s)},
                    )
                # a health change does not touch the registry, so wake at least once a second
                await self.registry.wait_changed(min(left, 1.0))
            return ready
        finally:
            self.waiting[model] -= 1
            if not self.waiting[model]:
                del self.waiting[model]

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
