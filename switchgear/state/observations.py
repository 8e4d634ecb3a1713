"""Every gateway's observations reach the detector leader, through one Redis list.

A process that does not lead batches the :class:`~switchgear.types.Observation` of its
upstream attempts and appends each batch (every :data:`FLUSH_S`) to ``<prefix>:obs`` in one
``RPUSH``; the list is trimmed to :data:`MAX_BATCHES` so it stays bounded when no leader
drains it. The leader pops batches at the same pace and feeds them to its detector engine
next to its own observations, so it judges the traffic of the whole fleet. While Redis is
down, observations stay local (the buffer is bounded too).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import deque
from collections.abc import Callable
from typing import Protocol

import orjson

from switchgear.state.store import FAILURES, RedisStore, cancelled_meanwhile
from switchgear.types import Observation

FLUSH_S = 0.25
MAX_BATCHES = 2_000
MAX_BUFFER = 10_000
POP = 200

Feed = Callable[[Observation], None]


class Leader(Protocol):
    def is_leader(self) -> bool: ...


class ObservationRelay:
    def __init__(self, store: RedisStore, leader: Leader, feed: Callable[[], Feed | None]) -> None:
        self.store, self.leader, self.feed = store, leader, feed
        self.key = store.key("obs")
        self._buffer: deque[tuple[object, ...]] = deque(maxlen=MAX_BUFFER)

    def observe(self, obs: Observation) -> None:
        """An observer callback (``app[OBSERVERS]``): cheap, never touches Redis."""
        if not self.leader.is_leader():
            self._buffer.append(dataclasses.astuple(obs))

    async def _push(self) -> None:
        batch = list(self._buffer)
        self._buffer.clear()
        pipe = self.store.client.pipeline(transaction=False)
        pipe.rpush(self.key, orjson.dumps(batch))
        pipe.ltrim(self.key, -MAX_BATCHES, -1)
        try:
            await self.store.call("observations", pipe.execute())
        except FAILURES:
            self._buffer.extendleft(reversed(batch))
            raise

    async def _drain(self, feed: Feed) -> None:
        batches: list[bytes] | None = await self.store.call(
            "observations",
            self.store.client.lpop(self.key, POP),  # type: ignore[arg-type]
        )
        for raw in batches or ():
            for row in orjson.loads(raw):
                feed(Observation(*row))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            if not self.store.up:
                continue
            try:
                if self.leader.is_leader():
                    self._buffer.clear()
                    feed = self.feed()
                    if feed is not None:
                        await self._drain(feed)
                elif self._buffer:
                    await self._push()
            except FAILURES:
                cancelled_meanwhile()
