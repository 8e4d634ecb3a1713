"""The state of one gateway process as a member of its fleet.

:class:`FleetState` is the one object the gateway holds (``app[keys.FLEET]``). Without
``state.redis_url`` it is the embedded default: nothing is shared, this process leads its
own detector and has the whole of every limit, exactly as a single gateway. With it, it
owns the Redis store and its background tasks (heartbeat and membership, detector
leadership, backend-health subscriber and writer, observation relay); :meth:`running` starts
them without waiting for Redis (a gateway starts even when Redis is down) and on exit
releases the leadership, leaves the fleet and closes the connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from switchgear.settings.state import StateSettings
from switchgear.state.health import HealthSync, HealthTarget, ModelTarget
from switchgear.state.leader import Leadership
from switchgear.state.limits import RedisLimits
from switchgear.state.metrics import StateMetrics
from switchgear.state.observations import Feed, ObservationRelay
from switchgear.state.store import RedisStore
from switchgear.types import Observation

log = logging.getLogger("switchgear.state")

#: How long start-up waits for Redis before serving on local state.
CONNECT_WAIT_S = 1.0


class FleetState:
    def __init__(
        self,
        settings: StateSettings,
        metrics: StateMetrics,
        *,
        workers: int = 1,
    ) -> None:
        self.settings, self.metrics, self.workers = settings, metrics, workers
        self.store: RedisStore | None = None
        self.limits: RedisLimits | None = None
        self.health: HealthSync | None = None
        self.leader: Leadership | None = None
        self.relay: ObservationRelay | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def shared(self) -> bool:
        return self.settings.redis_url is not None

    def is_leader(self) -> bool:
        """Whether this process's detector may act (always, when nothing is shared)."""
        return self.leader is None or self.leader.is_leader()

    def share(self) -> int:
        """How many processes split a limit while Redis is down."""
        return self.store.members if self.store is not None else 1

    def observe(self, obs: Observation) -> None:
        if self.relay is not None:
            self.relay.observe(obs)

    def _spawn(self, name: str, coro: Coroutine[Any, Any, None]) -> None:
        self._tasks.append(asyncio.create_task(coro, name=f"switchgear-state-{name}"))

    @contextlib.asynccontextmanager
    async def running(
        self,
        backends: HealthTarget,
        feed: Callable[[], Feed | None] | None = None,
        models: ModelTarget | None = None,
    ) -> AsyncIterator[FleetState]:
        if not self.shared:
            yield self
            return
        store = self.store = RedisStore(self.settings, self.metrics, workers=self.workers)
        self.limits = RedisLimits(store)
        self.health = HealthSync(store, backends, models)
        store.metrics.up.set(0)
        if not await store.beat():
            log.warning(
                "state backend %s unreachable at start; serving on local state until it answers",
                self.settings.redis_url,
            )
        self._spawn("heartbeat", store.heartbeat())
        self._spawn("health", self.health.subscriber())
        self._spawn("health-writer", self.health.writer())
        if store.up:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CONNECT_WAIT_S):
                    await self.health.synced.wait()  # serve with the fleet's ejections loaded
        if feed is not None:  # leadership only matters to a detector
            self.leader = Leadership(store)
            self._spawn("leader", self.leader.run())
            self.relay = ObservationRelay(store, self.leader, feed)
            self._spawn("observations", self.relay.run())
        try:
            yield self
        finally:
            for t in self._tasks:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks.clear()
            if store.up and self.leader is not None:
                await self.leader.release()
                await store.leave()
            await store.aclose()
