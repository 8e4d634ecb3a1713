"""The attempt deadline behaves as ``asyncio.timeout``: the same outcome for each way a block
can end, which the same scenarios run under both check."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from switchgear.proxy.deadline import Deadline

Guard = Callable[[float], contextlib.AbstractAsyncContextManager[object]]


@contextlib.asynccontextmanager
async def _deadline(delay: float) -> AsyncIterator[object]:
    with Deadline(delay) as d:
        yield d


@contextlib.asynccontextmanager
async def _asyncio(delay: float) -> AsyncIterator[object]:
    async with asyncio.timeout(delay) as t:
        yield t


GUARDS = pytest.mark.parametrize("guard", [_deadline, _asyncio], ids=["Deadline", "asyncio"])


async def _outcome(body: Callable[[], Awaitable[object]]) -> str:
    task = asyncio.ensure_future(body())
    try:
        return f"returned {await task!r}"
    except TimeoutError:
        return "TimeoutError"
    except asyncio.CancelledError:
        return f"CancelledError (cancelling={task.cancelling()})"


@GUARDS
async def test_the_time_running_out_raises_timeout_error(guard: Guard) -> None:
    async def body() -> object:
        async with guard(0.01):
            await asyncio.Event().wait()
        return "after"

    assert await _outcome(body) == "TimeoutError"


@GUARDS
async def test_a_zero_or_negative_delay_times_out_at_the_first_wait(guard: Guard) -> None:
    async def body() -> object:
        async with guard(-1):
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        return "after"

    assert await _outcome(body) == "TimeoutError"


@GUARDS
async def test_a_block_done_in_time_is_untouched_and_its_timer_is_cancelled(guard: Guard) -> None:
    async def body() -> object:
        async with guard(0.05):
            await asyncio.sleep(0)
        await asyncio.sleep(0.1)  # past the deadline: nothing may cancel the task now
        return "after"

    assert await _outcome(body) == "returned 'after'"


async def _cancelled_from_outside(guard: Guard, delay: float) -> asyncio.Task[object]:
    """A task blocked inside ``guard(delay)``, cancelled from outside once it is in the block;
    the cancellation must reach the awaiter."""
    entered = asyncio.Event()

    async def body() -> object:
        async with guard(delay):
            entered.set()
            await asyncio.Event().wait()
        return "after"

    task = asyncio.ensure_future(body())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return task


@GUARDS
async def test_a_cancellation_from_outside_passes_through(guard: Guard) -> None:
    task = await _cancelled_from_outside(guard, 30)
    assert task.cancelling() == 1


@GUARDS
async def test_a_cancellation_from_outside_beside_the_expiry_is_not_swallowed(
    guard: Guard,
) -> None:
    """Both the deadline and someone else cancel the task: it stays cancelled."""
    await _cancelled_from_outside(guard, 0)


@GUARDS
async def test_other_errors_leave_unchanged(guard: Guard) -> None:
    async def body() -> object:
        async with guard(30):
            await asyncio.sleep(0)
            raise KeyError("x")

    with pytest.raises(KeyError):
        await body()


@GUARDS
async def test_an_inner_deadline_that_expires_does_not_trip_the_outer_one(guard: Guard) -> None:
    async def body() -> object:
        async with guard(30):
            try:
                async with guard(0.01):
                    await asyncio.Event().wait()
            except TimeoutError:
                return "inner timed out"
        return "after"

    assert await _outcome(body) == "returned 'inner timed out'"


async def test_a_deadline_records_that_it_expired_and_is_entered_once() -> None:
    d = Deadline(0)
    with pytest.raises(TimeoutError):
        with d:
            await asyncio.Event().wait()
    assert d.expired
    with pytest.raises(RuntimeError):
        with d:
            pass
    ok = Deadline(30)
    with ok:
        await asyncio.sleep(0)
    assert not ok.expired
