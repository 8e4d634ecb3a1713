"""One detector leader per fleet: a Redis lock with a TTL.

The lock ``<prefix>:leader`` holds the member id of the leader and expires ``leader_ttl_s``
after its last renewal. Every process runs :meth:`Leadership.run`
(:class:`~switchgear.state.leadership.LeaderElection`): each heartbeat it renews the lock if
it holds it, or takes it if it is free, in one script. A process counts itself
leader until ``leader_ttl_s`` after the moment it *sent* its last successful renewal, which
is never later than Redis's own expiry, so two processes never both believe they lead
(clock drift aside). A leader that dies is replaced within ``leader_ttl_s`` plus one
heartbeat; one that stops cleanly releases the lock at once.

While Redis is unreachable for longer than the TTL, every process leads its own detector
(the single-gateway behaviour): health protection keeps working, at the price that scale
actions may be asked for by more than one process until Redis returns.
"""

from __future__ import annotations

from collections.abc import Callable

from switchgear.state.leadership import LeaderElection
from switchgear.state.store import FAILURES, RedisStore, cancelled_meanwhile

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


class Leadership(LeaderElection):
    """The detector leader's lock on Redis: ``SET NX PX`` and a renewal in one script."""

    failures = FAILURES

    def __init__(self, store: RedisStore, clock: Callable[[], float] | None = None) -> None:
        self.store = store
        self.ttl = store.settings.leader_ttl_s
        super().__init__(
            store.member,
            store.metrics,
            hold_s=self.ttl,
            handover_s=self.ttl,
            interval=store.interval,
            clock=clock,
        )
        self.key = store.key("leader")
        self._claim = store.client.register_script(_CLAIM)
        self._release = store.client.register_script(_RELEASE)

    async def _hold(self) -> bool:
        try:
            won = await self.store.call(
                "leader",
                self._claim(keys=[self.key], args=[self.store.member, int(self.ttl * 1000)]),
            )
        except FAILURES:
            cancelled_meanwhile()
            raise
        return bool(won)

    async def _let_go(self) -> None:
        try:
            await self.store.call(
                "leader_release", self._release(keys=[self.key], args=[self.store.member])
            )
        except FAILURES:
            pass
