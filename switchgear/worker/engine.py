"""The generation engine: one thread per loaded model that batches requests.

Requests that arrive together are served in one batch: prompts are left-padded, the batch
is prefilled once and decoded step by step with the KV cache; a row that finishes (EOS,
stop sequence, ``max_tokens``) or whose client went away is pruned from the batch and the
cache at the next step, so it stops costing compute. Other work for the model (embeddings,
gate probes) runs on the same thread between batches, so the model is only ever used by
one thread. The event loop only submits and reads results (``call_soon_threadsafe``).

Preparing a request (chat template, tokenization) runs on a second thread of the engine,
:meth:`Engine.prepare`: it takes seconds for a multi-megabyte prompt, so it must not run on
the event loop, and on the engine thread it would wait for the running batch to finish.
The tokenizer is only read there (encoding), as the engine thread reads it (decoding).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from switchgear.worker.generation import (
    EngineMetrics,
    GenEvent,
    NoMetrics,
    SamplingParams,
)
from switchgear.worker.loading import ModelBundle

log = logging.getLogger("switchgear.worker.engine")

T = TypeVar("T")


@dataclass(eq=False)
class _Request:
    prompt_ids: list[int]
    params: SamplingParams
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[tuple[int, GenEvent | BaseException]]
    index: int = 0
    created: float = field(default_factory=time.perf_counter)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def emit(self, item: GenEvent | BaseException) -> None:
        if not self.cancelled.is_set():
            self.loop.call_soon_threadsafe(self.queue.put_nowait, (self.index, item))


@dataclass(eq=False)
class _Job:
    fn: Callable[[ModelBundle], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


class EngineClosed(RuntimeError):
    """The engine no longer accepts work (it is draining or stopped)."""


class Engine:
    """Batching generation for one :class:`ModelBundle` on a dedicated thread."""

    def __init__(
        self,
        bundle: ModelBundle,
        *,
        max_batch_size: int = 8,
        batch_wait_ms: float = 2.0,
        metrics: EngineMetrics | None = None,
    ) -> None:
        self.bundle = bundle
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_ms / 1000
        self.metrics: EngineMetrics = metrics or NoMetrics()
        self._pending: collections.deque[_Request | _Job] = collections.deque()
        self._cond = threading.Condition()
        self._running = threading.Event()
        self._running.set()
        self._accepting = True
        self._stop = False
        self._active = 0
        self._thread = threading.Thread(
            target=self._loop, name=f"engine-{bundle.name}", daemon=True
        )
        self._thread.start()
        self._prepare = ThreadPoolExecutor(1, thread_name_prefix=f"prepare-{bundle.name}")

    # --- called from the event loop ----------------------------------------------------

    async def generate(
        self, prompt_ids: list[int], params: SamplingParams
    ) -> AsyncGenerator[GenEvent, None]:
        """Stream events for one request; closing the iterator early cancels the request."""
        async for _, ev in self.generate_many(prompt_ids, [params]):
            yield ev

    async def generate_many(
        self, prompt_ids: list[int], params: list[SamplingParams]
    ) -> AsyncGenerator[tuple[int, GenEvent], None]:
        """``(choice index, event)`` for one prompt sampled once per ``params``; the choices
        are queued together, so they are decoded in one batch (up to ``max_batch_size``)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[int, GenEvent | BaseException]] = asyncio.Queue()
        reqs = [_Request(list(prompt_ids), p, loop, queue, i) for i, p in enumerate(params)]
        self._submit(*reqs)
        open_ = len(reqs)
        try:
            while open_:
                index, item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield index, item
                if item.finish_reason is not None:
                    open_ -= 1
        finally:
            for req in reqs:
                req.cancelled.set()

    async def run(self, fn: Callable[[ModelBundle], Any]) -> Any:
        """Run ``fn(bundle)`` on the engine thread between batches; returns its result."""
        loop = asyncio.get_running_loop()
        job = _Job(fn, loop, loop.create_future())
        self._submit(job)
        return await job.future

    async def prepare(self, fn: Callable[[ModelBundle], T]) -> T:
        """Run ``fn(bundle)`` (template, tokenizer) on the engine's preparing thread."""
        try:
            job = asyncio.get_running_loop().run_in_executor(self._prepare, fn, self.bundle)
        except RuntimeError:  # shut down by close()
            raise EngineClosed(f"engine for {self.bundle.name} is closed") from None
        return await job

    def _submit(self, *items: _Request | _Job) -> None:
        with self._cond:
            if not self._accepting:
                raise EngineClosed(f"engine for {self.bundle.name} is closed")
            self._pending.extend(items)
            self.metrics.set_queue_depth(len(self._pending))
            self._cond.notify_all()

    # --- control ------------------------------------------------------------------------

    def pause(self) -> None:
        """Hold new batches (requests queue up); tests use it to form a batch deterministically."""
        self._running.clear()

    def resume(self) -> None:
        self._running.set()
        with self._cond:
            self._cond.notify_all()

    def wait_queued(self, n: int, timeout: float = 30.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self._pending) >= n, timeout)

    @property
    def load(self) -> int:
        with self._cond:
            return len(self._pending) + self._active

    def wait_idle(self, timeout: float = 30.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and self._active == 0, timeout)

    def drain(self, timeout: float | None = None) -> bool:
        """Stop accepting work and wait until everything queued or running has finished."""
        with self._cond:
            self._accepting = False
            return self._cond.wait_for(lambda: not self._pending and self._active == 0, timeout)

    def close(self) -> None:
        with self._cond:
            self._accepting = False
            self._stop = True
            leftover = list(self._pending)
            self._pending.clear()
            self._cond.notify_all()
        for item in leftover:
            _fail(item, EngineClosed("engine stopped"))
        self._prepare.shutdown(wait=False)
        self._running.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=30)

    # --- the engine thread --------------------------------------------------------------

    def _take(self) -> list[_Request] | _Job | None:
        with self._cond:
            self._cond.wait_for(lambda: self._stop or (self._pending and self._running.is_set()))
            if self._stop:
                return None
            if isinstance(self._pending[0], _Job):
                self._active += 1
                return self._pending.popleft()  # type: ignore[return-value]
            if len(self._pending) < self.max_batch_size and self.batch_wait_s > 0:
                self._cond.wait(self.batch_wait_s)
            batch: list[_Request] = []
            while (
                self._pending
                and len(batch) < self.max_batch_size
                and isinstance(self._pending[0], _Request)
            ):
                req = self._pending.popleft()
                if not req.cancelled.is_set():  # type: ignore[union-attr]
                    batch.append(req)  # type: ignore[arg-type]
            self._active += len(batch)
            self.metrics.set_queue_depth(len(self._pending))
            return batch

    def _admit(self, room: int) -> list[_Request]:
        """Waiting requests that may join the running batch (none while a job or a pause waits)."""
        taken: list[_Request] = []
        with self._cond:
            if self._stop or not self._running.is_set():
                return taken
            while self._pending and len(taken) < room and isinstance(self._pending[0], _Request):
                req = self._pending.popleft()
                if not req.cancelled.is_set():  # type: ignore[union-attr]
                    taken.append(req)  # type: ignore[arg-type]
            self._active += len(taken)
            self.metrics.set_queue_depth(len(self._pending))
        return taken

    def _done(self, n: int) -> None:
        with self._cond:
            self._active -= n
            self._cond.notify_all()

    def _loop(self) -> None:
        from switchgear.worker.decode import run_batch

        while True:
            work = self._take()
            if work is None:
                return
            if isinstance(work, _Job):
                try:
                    result = work.fn(self.bundle)
                except BaseException as exc:  # noqa: BLE001 - delivered to the awaiting caller
                    work.loop.call_soon_threadsafe(_set_exc, work.future, exc)
                else:
                    work.loop.call_soon_threadsafe(_set_result, work.future, result)
                self._done(1)
                continue
            if not work:
                continue
            self.metrics.observe_batch(len(work))
            try:
                run_batch(self.bundle, work, self.metrics, self._admit, self.max_batch_size)
            except Exception as exc:
                log.exception("batch of %d failed", len(work))
                for req in work:
                    req.emit(exc)
            finally:
                self._done(len(work))


def _set_result(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exc(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


def _fail(item: _Request | _Job, exc: BaseException) -> None:
    if isinstance(item, _Job):
        item.loop.call_soon_threadsafe(_set_exc, item.future, exc)
    else:
        item.emit(exc)
