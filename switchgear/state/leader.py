"""One detector leader per fleet: a Redis lock with a TTL.

The lock ``<prefix>:leader`` holds the member id of the leader and expires ``leader_ttl_s``
after its last renewal. Every process runs :meth:`Leadership.run`: each heartbeat it renews
the lock if it holds it, or takes it if it is free, in one script. A process counts itself
leader until ``leader_ttl_s`` after the moment it *sent* its last successful renewal, which
is never later than Redis's own expiry, so two processes never both believe they lead
(clock drift aside). A leader that dies is replaced within ``leader_ttl_s`` plus one
heartbeat; one that stops cleanly releases the lock at once.

While Redis is unreachable for longer than the TTL, every process leads its own detector
(the single-gateway behaviour): health protection keeps working, at the price that scale
actions may be asked for by more than one process until Redis returns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from switchgear.state.store import FAILURES, RedisStore, cancelled_meanwhile

log = logging.getLogger("switchgear.state")

_CLAIM = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Leadership:
    def __init__(self, store: RedisStore, clock: Callable[[], float] | None = None) -> None:
        self.store = store
        self.ttl = store.settings.leader_ttl_s
        self.key = store.key("leader")
        self._claim = store.client.register_script(_CLAIM)
        self._release = store.client.register_script(_RELEASE)
        self._clock = clock or asyncio.get_running_loop().time
        self._until = 0.0
        self._down_since: float | None = None
        self.on_elected: list[Callable[[], None]] = []

    def is_leader(self) -> bool:
        now = self._clock()
        if now < self._until:
            return True
        return self._down_since is not None and now - self._down_since > self.ttl

    async def claim(self) -> bool:
        sent = self._clock()
        was = self.is_leader()
        try:
            won = await self.store.call(
                "leader",
                self._claim(keys=[self.key], args=[self.store.member, int(self.ttl * 1000)]),
            )
        except FAILURES:
            cancelled_meanwhile()
            if self._down_since is None:
                self._down_since = sent
            won = 0
        else:
            self._down_since = None
        if won:
            self._until = sent + self.ttl
        elif self._down_since is None:
            self._until = 0.0
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
            await asyncio.sleep(self.store.interval)

    async def release(self) -> None:
        self._until = 0.0
        self.store.metrics.leader.set(0)
        try:
            await self.store.call(
                "leader_release", self._release(keys=[self.key], args=[self.store.member])
            )
        except FAILURES:
            pass
