"""The connection to Redis, and whether it is usable now.

:class:`RedisStore` wraps one ``redis.asyncio.Redis`` (its own connection pool) with the
rules every shared component follows:

* each call on the request path runs under ``timeout_s``, with no client retries, so a slow
  or dead Redis costs a request at most one timeout, once;
* the first failure marks the store *down* (one warning line, ``switchgear_state_backend_up``
  0, an error counted by operation); while down nobody calls Redis on the request path;
* the heartbeat (every :attr:`interval` seconds) pings, refreshes this process's membership
  in the fleet and marks the store *up* again when Redis answers (one info line), waking the
  components that wait in :meth:`wait_up` to resynchronise.

Membership: a sorted set of member ids scored by Redis time; members not seen for three
heartbeats are dropped. :attr:`members` (the last count) is how many processes share a limit
while Redis is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from switchgear.settings.state import StateSettings
from switchgear.state.metrics import StateMetrics

log = logging.getLogger("switchgear.state")

T = TypeVar("T")

#: What a failing Redis call raises (connection refused/reset, timeouts, server errors).
FAILURES = (RedisError, OSError, TimeoutError, ConnectionError)

_MEMBERSHIP = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) * 1000))
return redis.call('ZCARD', KEYS[1])
"""


def cancelled_meanwhile() -> None:
    """Raise CancelledError when the current task is being cancelled.

    redis-py's asyncio client can absorb a cancellation that lands inside a call (the call
    then returns, or fails as a timeout or connection error); loops that survive Redis
    failures call this so they still stop when cancelled.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def member_id() -> str:
    """This process's id in the fleet: host, pid and a random part (a reused pid differs)."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"


class RedisStore:
    def __init__(self, settings: StateSettings, metrics: StateMetrics, *, workers: int = 1) -> None:
        assert settings.redis_url is not None
        self.settings = settings
        self.metrics = metrics
        self.prefix = settings.key_prefix
        self.member = member_id()
        self.interval = min(1.0, settings.leader_ttl_s / 3)
        self.members = settings.fleet_size or workers
        self.up = False
        self._up_event = asyncio.Event()
        self._ever_up = False
        self.client = aioredis.Redis.from_url(
            settings.redis_url,
            socket_timeout=settings.timeout_s,
            socket_connect_timeout=settings.timeout_s,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._membership = self.client.register_script(_MEMBERSHIP)

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # --- up and down ----------------------------------------------------------------------

    def failed(self, op: str, exc: BaseException) -> None:
        self.metrics.error(op)
        if self.up:
            log.warning(
                "state backend unreachable (%s: %s); using local state until it answers",
                op,
                exc.__class__.__name__ if not str(exc) else exc,
            )
        self.up = False
        self._up_event.clear()
        self.metrics.up.set(0)

    def _recovered(self) -> None:
        if not self.up:
            if self._ever_up:
                log.info("state backend answers again; shared state resumes")
            self._ever_up = True
        self.up = True
        self.metrics.up.set(1)
        self._up_event.set()

    async def wait_up(self) -> None:
        await self._up_event.wait()

    async def call(self, op: str, aw: Awaitable[T]) -> T:
        """Await one Redis call under the timeout; a failure marks the store down and raises."""
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                result = await aw
        except FAILURES as exc:
            cancelled_meanwhile()
            self.failed(op, exc)
            raise
        cancelled_meanwhile()  # the client may finish a call its cancellation interrupted
        return result

    # --- heartbeat ------------------------------------------------------------------------

    async def beat(self) -> bool:
        """One heartbeat: membership (which also proves Redis answers); True when up."""
        if not self.up:  # pooled connections may be from before a restart: start afresh
            with contextlib.suppress(*FAILURES):
                await self.client.connection_pool.disconnect(inuse_connections=False)
        try:
            n = await self.call(
                "heartbeat",
                self._membership(keys=[self.key("members")], args=[self.member, self.interval * 3]),
            )
        except FAILURES:
            return False
        if self.settings.fleet_size is None:
            self.members = max(1, int(n))
        self._recovered()
        return True

    async def heartbeat(self) -> None:
        while True:
            await self.beat()
            await asyncio.sleep(self.interval)

    async def leave(self) -> None:
        with contextlib.suppress(*FAILURES):
            await self.call("leave", self.client.zrem(self.key("members"), self.member))

    async def aclose(self) -> None:
        await self.client.aclose()
