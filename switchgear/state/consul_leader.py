"""One detector leader per fleet through Consul (``state.consul``): a session with a TTL
holds the KV lock ``<root>leader``.

Every process keeps one session (``Behavior: release``, the agent's node and its
``serfHealth`` check, a lock delay of 1 ms) and, each beat (:attr:`interval`), renews it,
reads the lock and, when nobody holds it, takes it with ``PUT ?acquire=<session>``. A
session Consul no longer knows (404 on renew) is replaced by a new one.

Timing. Consul sessions last at least 10 s (``session_ttl_min``; py-consul enforces the same
bound), and Consul invalidates a session that is not renewed *no sooner* than its TTL and up
to twice the TTL after the last renewal. The session TTL is ``leader_ttl_s / 2``, at least
10 s; so a leader that dies is replaced within ``2 × session TTL`` plus one beat: within
``leader_ttl_s`` (plus a beat) when ``leader_ttl_s >= 20``, else within 20 s. A process counts
itself leader only until one session TTL after it *sent* its last successful renewal, which
is never later than Consul's own invalidation, so two processes never both believe they lead
(clock drift aside). One that stops cleanly releases the lock and destroys its session.

While Consul is unreachable for longer than ``2 × session TTL`` every process leads its own
detector, as with Redis (:mod:`switchgear.state.leader`).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable

import consul

from switchgear.state.consul_store import ConsulStore
from switchgear.state.leadership import LeaderElection

log = logging.getLogger("switchgear.state")

SESSION_TTL_MIN_S = 10
LOCK_DELAY_S = 0.001  # Consul wants a lock delay above 0; the TTL bound above makes it moot


class ConsulLeadership(LeaderElection):
    """The detector leader's lock on Consul: a session with a TTL holds ``<root>leader``."""

    def __init__(
        self, store: ConsulStore, interval: float, clock: Callable[[], float] | None = None
    ) -> None:
        self.store = store
        self.session_ttl = max(SESSION_TTL_MIN_S, math.ceil(store.state.leader_ttl_s / 2))
        super().__init__(
            store.member,
            store.metrics,
            hold_s=self.session_ttl,
            handover_s=2 * self.session_ttl,
            interval=interval,
            clock=clock,
        )
        self.key = store.key("leader")
        self.session: str | None = None
        if self.handover_s > store.state.leader_ttl_s:
            log.info(
                "detector leadership on Consul: session TTL %ds, a dead leader is replaced "
                "within %ds (state.leader_ttl_s is %gs)",
                self.session_ttl,
                self.handover_s,
                store.state.leader_ttl_s,
            )

    async def _session(self) -> str:
        c, token = self.store.client, self.store.token
        if self.session is not None:
            try:
                await self.store.call("consul_leader", c.session.renew(self.session, token=token))
                return self.session
            except consul.NotFound:
                log.info("Consul session %s is gone; creating a new one", self.session)
                self.session = None
        self.session = str(
            await self.store.call(
                "consul_leader",
                c.session.create(
                    name=f"switchgear detector {self.store.member}",
                    ttl=self.session_ttl,
                    lock_delay=LOCK_DELAY_S,
                    behavior="release",
                    token=token,
                ),
            )
        )
        return self.session

    async def _hold(self) -> bool:
        """Renew (or create) the session; hold the lock or take it when free."""
        session = await self._session()
        kv, token = self.store.client.kv, self.store.token
        _, entry = await self.store.call("consul_leader", kv.get(self.key, token=token))
        holder = (entry or {}).get("Session") or ""
        if holder:
            return bool(holder == session)
        won = await self.store.call(
            "consul_leader", kv.put(self.key, self.store.member, acquire=session, token=token)
        )
        return bool(won)

    async def _let_go(self) -> None:
        if self.session is None:
            return
        c, token = self.store.client, self.store.token
        with contextlib.suppress(Exception):
            await self.store.call(
                "consul_leader_release",
                c.kv.put(self.key, self.store.member, release=self.session, token=token),
            )
            await self.store.call(
                "consul_leader_release", c.session.destroy(self.session, token=token)
            )
        self.session = None
