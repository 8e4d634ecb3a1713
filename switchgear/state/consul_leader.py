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

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable

import consul

from switchgear.state.consul_store import ConsulStore

log = logging.getLogger("switchgear.state")

SESSION_TTL_MIN_S = 10
LOCK_DELAY_S = 0.001  # Consul wants a lock delay above 0; the TTL bound above makes it moot


class ConsulLeadership:
    def __init__(
        self, store: ConsulStore, interval: float, clock: Callable[[], float] | None = None
    ) -> None:
        self.store, self.interval = store, interval
        self.session_ttl = max(SESSION_TTL_MIN_S, math.ceil(store.state.leader_ttl_s / 2))
        self.handover_s = 2 * self.session_ttl
        self.key = store.key("leader")
        self.session: str | None = None
        self._clock = clock or asyncio.get_running_loop().time
        self._until = 0.0
        self._down_since: float | None = None
        self.on_elected: list[Callable[[], None]] = []
        if self.handover_s > store.state.leader_ttl_s:
            log.info(
                "detector leadership on Consul: session TTL %ds, a dead leader is replaced "
                "within %ds (state.leader_ttl_s is %gs)",
                self.session_ttl,
                self.handover_s,
                store.state.leader_ttl_s,
            )

    def is_leader(self) -> bool:
        now = self._clock()
        if now < self._until:
            return True
        return self._down_since is not None and now - self._down_since > self.handover_s

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

    async def claim(self) -> bool:
        sent = self._clock()
        was = self.is_leader()
        try:
            won = await self._hold()
        except asyncio.CancelledError:
            raise
        except Exception:
            if self._down_since is None:
                self._down_since = sent
            won = False
        else:
            self._down_since = None
        if won:
            self._until = sent + self.session_ttl
        elif self._down_since is None:
            self._until = 0.0
        return self._report(was)

    def _report(self, was: bool) -> bool:
        now_leads = self.is_leader()
        self.store.metrics.leader.set(1 if now_leads else 0)
        if now_leads and not was:
            log.info("this process (%s) now leads the fleet's detector", self.store.member)
            for callback in self.on_elected:
                try:
                    callback()
                except Exception:
                    log.exception("leadership callback %r failed", callback)
        elif was and not now_leads:
            log.info("this process (%s) no longer leads the detector", self.store.member)
        return now_leads

    async def run(self) -> None:
        while True:
            await self.claim()
            await asyncio.sleep(self.interval)

    async def release(self) -> None:
        self._until = 0.0
        self.store.metrics.leader.set(0)
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
