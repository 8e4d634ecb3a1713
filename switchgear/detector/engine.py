"""The online detector engine: series in, scores and anomaly events out, once per tick.

:class:`DetectorEngine` is built to be mounted by the gateway in a ``cleanup_ctx``::

    async def detector_ctx(app):
        engine = DetectorEngine(settings.detector, detector_factories(pm), on_event)
        async with engine.running():
            app[DETECTOR] = engine
            yield

``observe`` (each finished upstream attempt) and ``add_samples`` (each scrape) are cheap
and synchronous. Every ``resolution_s`` the engine closes a bucket, scores each series with
the detector configured for its metric and feeds the scores to the hysteresis; opened and
closed events go to ``on_event``. Detector fits run in an executor (``max_fit_workers``
threads) and are installed on the loop when done, so the loop never waits for a fit; at
most one fit per series is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

from switchgear.detector.base import Detector, DetectorFactory, FitTask
from switchgear.detector.events import Hysteresis, SeriesKey
from switchgear.detector.series import Sample, SeriesStore
from switchgear.settings.detector import DetectorSettings
from switchgear.types import AnomalyEvent, Observation

log = logging.getLogger("switchgear.detector")

EventCallback = Callable[[AnomalyEvent], Awaitable[None] | None]


class DetectorEngine:
    def __init__(
        self,
        settings: DetectorSettings,
        factories: dict[str, DetectorFactory],
        on_event: EventCallback | None = None,
        *,
        executor: Executor | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.factories = factories
        self.on_event = on_event
        self.clock = clock
        self.store = SeriesStore(settings.resolution_s, settings.history)
        ev = settings.events
        self.events = Hysteresis(
            open_score=ev.open_score,
            close_score=ev.close_score,
            open_after=ev.open_after,
            close_after=ev.close_after,
            keep_recent=ev.keep_recent,
        )
        self.detectors: dict[SeriesKey, Detector] = {}
        self.scores: dict[SeriesKey, float] = {}
        # every series gets one value and one score per tick from its first tick on, so the
        # tails of these buffers line up with the tail of ``tick_times``
        self.tick_times: deque[float] = deque(maxlen=settings.history)
        self.score_history: dict[SeriesKey, deque[float]] = {}
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(
            settings.max_fit_workers, thread_name_prefix="switchgear-fit"
        )
        self._fits: set[asyncio.Future[Any]] = set()
        self.ticks = 0

    # --- input -------------------------------------------------------------------------

    def observe(self, obs: Observation) -> None:
        self.store.add_observation(obs)

    def add_samples(self, backend_id: str, model: str | None, samples: Iterable[Sample]) -> None:
        self.store.add_samples(backend_id, model, samples)

    # --- one tick ----------------------------------------------------------------------

    def _detector(self, key: SeriesKey) -> Detector:
        det = self.detectors.get(key)
        if det is None:
            name = self.settings.detector_for(key.metric)
            factory = self.factories[name]
            det = factory(**_online_params(factory, self.settings.params_for(name, key.metric)))
            self.detectors[key] = det
        return det

    async def tick(self) -> list[AnomalyEvent]:
        """Close one bucket, score every series, schedule due fits, emit events."""
        now = self.clock()
        emitted: list[AnomalyEvent] = []
        for key, value in self.store.tick().items():
            det = self._detector(key)
            score = det.update(value)
            self.scores[key] = score
            hist = self.score_history.get(key)
            if hist is None:
                hist = self.score_history[key] = deque(maxlen=self.settings.history)
            hist.append(score)
            task = det.fit_task()
            if task is not None:
                self._schedule(det, task)
            event = self.events.observe(key, score, now, det.contributions())
            if event is not None:
                emitted.append(event)
        self.ticks += 1
        self.tick_times.append(now)
        for event in emitted:
            await self._emit(event)
        return emitted

    def _schedule(self, det: Detector, task: FitTask) -> None:
        fut = asyncio.get_running_loop().run_in_executor(self._executor, task)
        self._fits.add(fut)

        def done(f: asyncio.Future[Any]) -> None:
            self._fits.discard(f)
            if f.cancelled():
                det.install(None)
            elif f.exception() is not None:
                log.error("detector %s fit failed: %r", det.name, f.exception())
                det.install(None)
            else:
                det.install(f.result())

        fut.add_done_callback(done)

    async def _emit(self, event: AnomalyEvent) -> None:
        if self.on_event is None:
            return
        try:
            res = self.on_event(event)
            if inspect.isawaitable(res):
                await res
        except Exception:
            log.exception("anomaly event callback failed for %s", event.id)

    async def drain(self) -> None:
        """Wait for the fits in flight (tests and shutdown)."""
        while self._fits:
            await asyncio.gather(*list(self._fits), return_exceptions=True)

    # --- lifecycle ---------------------------------------------------------------------

    async def run(self) -> None:
        """Tick every ``resolution_s`` on the loop's clock until cancelled."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += self.settings.resolution_s
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            try:
                await self.tick()
            except Exception:
                log.exception("detector tick failed")

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[DetectorEngine]:
        task = asyncio.create_task(self.run(), name="switchgear-detector")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self.aclose()

    async def aclose(self) -> None:
        """Wait for the fits in flight and release the executor (if the engine made it)."""
        await self.drain()
        if self._own_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)

    # --- views -------------------------------------------------------------------------

    def open_events(self) -> list[AnomalyEvent]:
        return self.events.open_events()

    def recent_events(self) -> list[AnomalyEvent]:
        return self.events.recent_events()

    def points(
        self, key: SeriesKey, since: float | None = None
    ) -> list[tuple[float, float, float | None]]:
        """``(tick time, value, score)`` of one series, oldest first, after ``since``."""
        values = self.store.values(key)
        times = list(self.tick_times)
        n = min(len(values), len(times))
        scores: list[float | None] = list(self.score_history.get(key, ()))
        scores = ([None] * max(0, n - len(scores)) + scores)[-n:] if n else []
        out = list(zip(times[len(times) - n :], values[len(values) - n :], scores, strict=True))
        return out if since is None else [p for p in out if p[0] > since]


def _online_params(factory: Callable[..., Any], params: dict[str, Any]) -> dict[str, Any]:
    """Tell a factory that accepts ``online`` that its detector runs in the gateway."""
    try:
        accepts = "online" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        accepts = False
    return {"online": True, **params} if accepts else params
