"""The state of one gateway process as a member of its fleet.

:class:`FleetState` is the one object the gateway holds (``app[keys.FLEET]``). Without
``state.redis_url`` and ``state.consul`` it is the embedded default: nothing is shared, this
process leads its own detector and has the whole of every limit, exactly as a single
gateway. Otherwise it owns the stores and their background tasks; :meth:`running` starts
them without waiting for Redis or Consul (a gateway starts even when they are down) and on
exit releases the leadership, leaves the fleet and closes the connections.

Who carries what:

============================  ===========================  ===========================
piece                         ``redis_url`` only           ``consul: true`` (± Redis)
============================  ===========================  ===========================
rate limits                   Redis                        Redis, else each process
backend health                Redis (pub/sub + hashes)     Consul KV (blocking watch)
detector leadership           Redis lock with a TTL        Consul session + KV lock
observations to the leader    Redis list                   Redis list, else none
============================  ===========================  ===========================
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from switchgear.settings.consul import ConsulSettings
from switchgear.settings.state import StateSettings
from switchgear.state.consul_health import ConsulHealth
from switchgear.state.consul_leader import ConsulLeadership
from switchgear.state.consul_store import ConsulStore
from switchgear.state.health import HealthSync
from switchgear.state.health_changes import HealthChanges, HealthTarget, ModelTarget
from switchgear.state.leader import Leadership
from switchgear.state.leadership import LeaderElection
from switchgear.state.limits import RedisLimits
from switchgear.state.metrics import StateMetrics
from switchgear.state.observations import Feed, ObservationRelay
from switchgear.state.store import RedisStore, member_id
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
        consul: ConsulSettings | None = None,
    ) -> None:
        self.settings, self.metrics, self.workers = settings, metrics, workers
        self.consul_settings = consul if settings.consul else None
        self.store: RedisStore | None = None
        self.consul: ConsulStore | None = None
        self.limits: RedisLimits | None = None
        self.health: HealthChanges | None = None
        self.leader: LeaderElection | None = None
        self.relay: ObservationRelay | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def shared(self) -> bool:
        return self.settings.redis_url is not None or self.consul_settings is not None

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

    async def _start_redis(self, store: RedisStore) -> None:
        self.limits = RedisLimits(store)
        store.metrics.up.set(0)
        if not await store.beat():
            log.warning(
                "state backend %s unreachable at start; serving on local state until it answers",
                self.settings.redis_url,
            )
        self._spawn("heartbeat", store.heartbeat())

    def _start_health(
        self, backends: HealthTarget, models: ModelTarget | None
    ) -> HealthSync | ConsulHealth:
        if self.consul is not None:
            on_consul = ConsulHealth(self.consul, backends, models)
            self._spawn("health", on_consul.watch())
            self._spawn("health-writer", on_consul.writer())
            return on_consul
        assert self.store is not None
        on_redis = HealthSync(self.store, backends, models)
        self._spawn("health", on_redis.subscriber())
        self._spawn("health-writer", on_redis.writer())
        return on_redis

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
        store = consul = None
        if self.settings.redis_url is not None:
            store = self.store = RedisStore(self.settings, self.metrics, workers=self.workers)
            await self._start_redis(store)
        if self.consul_settings is not None:
            member = store.member if store is not None else member_id()
            consul = self.consul = ConsulStore(
                self.settings, self.consul_settings, self.metrics, member
            )
            self.metrics.consul_up.set(0)
        health = self.health = self._start_health(backends, models)
        if consul is not None or (store is not None and store.up):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CONNECT_WAIT_S):
                    await health.synced.wait()  # serve with the fleet's ejections loaded
        if feed is not None:  # leadership only matters to a detector
            self._start_leader(feed)
        try:
            yield self
        finally:
            await self._stop()

    def _start_leader(self, feed: Callable[[], Feed | None]) -> None:
        interval = min(1.0, self.settings.leader_ttl_s / 3)
        if self.consul is not None:
            self.leader = ConsulLeadership(self.consul, interval)
        else:
            assert self.store is not None
            self.leader = Leadership(self.store)
        self._spawn("leader", self.leader.run())
        if self.store is not None:  # observations travel through Redis only
            self.relay = ObservationRelay(self.store, self.leader, feed)
            self._spawn("observations", self.relay.run())

    async def _stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        store, consul = self.store, self.consul
        up = consul.up if consul is not None else store is not None and store.up
        if self.leader is not None and up:
            await self.leader.release()
        if store is not None:
            if store.up:
                await store.leave()
            await store.aclose()
        if consul is not None:
            await consul.aclose()
