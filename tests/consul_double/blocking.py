"""The injectable clock and the blocking-query algorithm of contract §3.1.

The clock runs at ``speed`` × real time and can jump with :meth:`Clock.advance`, so TTL
expiry, the DeregisterCriticalServiceAfter reaper and blocking waits are testable without
real sleeps.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.consul_double.util import DurationError, bad_request, parse_duration

DEFAULT_WAIT = 300.0
MAX_WAIT = 600.0


class Clock:
    def __init__(self, speed: float = 1.0) -> None:
        self.speed = speed
        self._t0 = time.monotonic()
        self._offset = 0.0
        self._advanced = asyncio.Event()

    def now(self) -> float:
        return self._offset + (time.monotonic() - self._t0) * self.speed

    def advance(self, seconds: float) -> None:
        """Jump forward; every sleeper whose deadline passed wakes up."""
        self._offset += seconds
        ev, self._advanced = self._advanced, asyncio.Event()
        ev.set()

    async def wait(self, event: asyncio.Event | None, seconds: float) -> bool:
        """Wait until ``event`` is set (True) or ``seconds`` of clock time pass (False)."""
        deadline = self.now() + seconds
        while True:
            if event is not None and event.is_set():
                return True
            remaining = deadline - self.now()
            if remaining <= 0:
                return False
            waiters = [asyncio.ensure_future(self._advanced.wait())]
            if event is not None:
                waiters.append(asyncio.ensure_future(event.wait()))
            try:
                await asyncio.wait(
                    waiters, timeout=remaining / self.speed, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for w in waiters:
                    w.cancel()

    async def sleep(self, seconds: float) -> None:
        await self.wait(None, seconds)


def parse_blocking(request: web.Request) -> tuple[int, float | None]:
    """``(min_index, wait)`` from the query; 400 on a bad ``index`` or ``wait`` (§3.1.6)."""
    min_index = 0
    raw_index = request.query.get("index")
    if raw_index is not None and raw_index != "":
        if not raw_index.isdigit():
            raise bad_request("Invalid index")
        min_index = int(raw_index)
    wait: float | None = None
    raw_wait = request.query.get("wait")
    if raw_wait is not None and raw_wait != "":
        try:
            wait = parse_duration(raw_wait)
        except DurationError:
            raise bad_request("Invalid wait time") from None
    return min_index, wait


def block_timeout(wait: float | None, max_wait: float | None = None) -> float:
    """Default 5 m, clamp 10 m, plus jitter in [0, timeout/16); ``max_wait`` shrinks it for tests."""
    timeout = DEFAULT_WAIT if wait is None or wait <= 0 else min(wait, MAX_WAIT)
    timeout += random.uniform(0, timeout / 16)
    if max_wait is not None:
        timeout = min(timeout, max_wait)
    return timeout


async def run_blocking(
    request: web.Request,
    clock: Clock,
    changed: Callable[[], asyncio.Event],
    query: Callable[[], tuple[int, Any]],
    *,
    max_wait: float | None = None,
) -> tuple[int, Any]:
    """Run ``query`` per §3.1: answer at once without an index, else when its index exceeds
    the requested one or the timeout fires (200 with the current data either way)."""
    min_index, wait = parse_blocking(request)
    if min_index == 0:
        idx, data = query()
        return max(idx, 1), data
    deadline = clock.now() + block_timeout(wait, max_wait)
    while True:
        ev = changed()  # taken before the query, so a write in between still wakes us
        idx, data = query()
        if idx > min_index:
            return max(idx, 1), data
        remaining = deadline - clock.now()
        if remaining <= 0 or not await clock.wait(ev, remaining):
            idx, data = query()
            return max(idx, 1), data
