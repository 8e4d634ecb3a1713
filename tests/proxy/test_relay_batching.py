"""Frames that are ready together share one write; nothing is held while the relay waits."""

from __future__ import annotations

import asyncio

import pytest

from switchgear.proxy.pump import _FlushFirst


class Flushes:
    def __init__(self) -> None:
        self.count = 0
        self.flushed = asyncio.Event()

    async def __call__(self) -> None:
        self.count += 1
        self.flushed.set()
        await asyncio.sleep(0)  # a write that yields to the loop, as a drain does


async def ready() -> str:
    return "ready"


async def test_a_value_ready_without_waiting_keeps_the_batch():
    flushes = Flushes()
    assert await _FlushFirst(ready(), flushes) == "ready"
    assert flushes.count == 0


async def test_the_batch_is_flushed_before_waiting():
    flushes = Flushes()
    fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def later() -> str:
        return await fut

    task = asyncio.ensure_future(_FlushFirst(later(), flushes))
    await flushes.flushed.wait()
    assert flushes.count == 1 and not task.done()
    fut.set_result("late")
    assert await task == "late"
    assert flushes.count == 1


async def test_errors_and_cancellation_reach_the_waiting_side():
    flushes = Flushes()
    fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    closed = asyncio.Event()

    async def waits() -> str:
        try:
            return await fut
        finally:
            closed.set()

    task = asyncio.ensure_future(_FlushFirst(waits(), flushes))
    await flushes.flushed.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert closed.is_set()

    fut2: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def fails() -> str:
        return await fut2

    flushes.flushed.clear()
    task = asyncio.ensure_future(_FlushFirst(fails(), flushes))
    await flushes.flushed.wait()
    fut2.set_exception(ConnectionError("cut"))
    with pytest.raises(ConnectionError):
        await task
