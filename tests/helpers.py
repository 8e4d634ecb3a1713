"""Helpers every part's tests share: a free loopback port and waiting for a condition.

Tests never sleep to synchronise: they wait for the condition itself, with a deadline, through
:func:`poll_until` (or :func:`poll_until_sync` in a synchronous fixture that waits for another
process). When the code under test offers a change event (the registry, the Consul double's
catalog), pass it as ``wake`` so the wait ends on the change instead of on a polling tick.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

#: Waits for the next change, at most the given seconds (its result is ignored).
Wake = Callable[[float], Awaitable[Any]]


def free_port() -> int:
    """A free TCP port on loopback (for servers started in another process)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def poll_until(
    check: Callable[[], Any],
    within: float = 5.0,
    what: str | Callable[[], str] = "condition",
    *,
    interval: float = 0.01,
    wake: Wake | None = None,
) -> Any:
    """Until ``check()`` (awaited when it returns an awaitable) is truthy; returns that value.

    Between checks it awaits ``wake(remaining)`` when given, else sleeps ``interval`` (the
    polling tick, not synchronisation). Raises ``AssertionError`` naming ``what`` (called
    then, when it is a function, so it can describe the state at the deadline) when
    ``within`` seconds pass first; a wake that times out is not an error by itself.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError(f"{what() if callable(what) else what}: not within {within:g} s")
        if wake is None:
            await asyncio.sleep(min(interval, remaining))
        else:
            try:
                await asyncio.wait_for(wake(remaining), remaining)
            except TimeoutError:
                pass


async def seconds_until(
    check: Callable[[], Any], within: float = 5.0, what: str | Callable[[], str] = "condition"
) -> float:
    """:func:`poll_until`, returning the seconds it took (for tests that bound a delay)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    await poll_until(check, within, what)
    return loop.time() - started


def poll_until_sync(
    check: Callable[[], T | None], within: float, what: str, *, interval: float = 0.2
) -> T:
    """:func:`poll_until` for synchronous fixtures (no event loop), e.g. waiting for children."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{what}: not within {within:g} s")
        time.sleep(min(interval, remaining))  # polling tick of another process's readiness
