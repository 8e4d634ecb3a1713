"""The running detector of one gateway: engine, scraper, policy and actions, supervised.

:class:`DetectorService` owns five background tasks, each restarted with backoff when it
crashes (logged; the gateway keeps serving): the engine's ticks, the ``/metrics`` scraper,
the *actor* that hands anomaly events to the ``on_anomaly`` hook one at a time, the
*timer* that calls :meth:`Policy.reprobe` every ``probe_interval_s``, the outlier rule and
:meth:`Policy.autoscale` once per tick, and the *load meter* that adds one point of every
model's arrival rate per tick (:mod:`switchgear.detector.load`; the load guard and the
scaler read it). The engine never waits for an action: events go
through a queue, so a scale-out that waits for a worker to load delays no tick. The actor
and the timer share one lock, so policy state changes one action at a time.

An event that opens on a "higher is worse" metric (the policy's eject and memory metrics)
while the value went *down* (latency back to normal after a readmission, memory freed) is
shown in ``/admin/anomalies`` but not acted on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

import aiohttp
import pluggy

from switchgear.detector.base import DetectorFactory
from switchgear.detector.control import GatewayControl
from switchgear.detector.engine import DetectorEngine
from switchgear.detector.events import SeriesKey
from switchgear.detector.leak import sustained_growth, theil_sen
from switchgear.detector.load import InFlight, LoadMeter
from switchgear.detector.policy import Policy
from switchgear.detector.probes import Prober
from switchgear.detector.report import DetectorMetrics
from switchgear.detector.scrape import scrape_loop
from switchgear.plugins.manager import call_hook
from switchgear.settings.detector import DetectorSettings
from switchgear.types import Action, AnomalyEvent, Backend, Observation

log = logging.getLogger("switchgear.detector")

MAX_BACKOFF_S = 30.0


async def supervise(
    name: str,
    run: Callable[[], Awaitable[None]],
    backoff_s: float,
    on_crash: Callable[[str], None] | None = None,
) -> None:
    """Run ``run`` until cancelled; when it raises or returns, log and restart it after a
    backoff that doubles up to :data:`MAX_BACKOFF_S` (and resets after a minute of health)."""
    loop = asyncio.get_running_loop()
    delay = backoff_s
    while True:
        started = loop.time()
        try:
            await run()
            log.error("detector task %s returned; restarting in %.1fs", name, delay)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("detector task %s crashed; restarting in %.1fs", name, delay)
        if on_crash is not None:
            on_crash(name)
        if loop.time() - started > 60.0:
            delay = backoff_s
        await asyncio.sleep(delay)
        delay = min(MAX_BACKOFF_S, delay * 2)


class DetectorService:
    def __init__(  # noqa: PLR0913 - the gateway parts it drives, each handed in
        self,
        settings: DetectorSettings,
        factories: dict[str, DetectorFactory],
        pm: pluggy.PluginManager,
        control: GatewayControl,
        policy: Policy,
        *,
        targets: Callable[[], Iterable[Backend]],
        session: aiohttp.ClientSession,
        metrics: DetectorMetrics | None = None,
        keep_actions: int = 500,
        leader: Callable[[], bool] | None = None,
        in_flight: InFlight | None = None,
    ) -> None:
        self.settings = settings
        self.pm, self.control, self.policy = pm, control, policy
        self.targets, self.session, self.metrics = targets, session, metrics
        self.engine = DetectorEngine(settings, factories, self._on_event)
        self.actions: deque[Action] = deque(maxlen=keep_actions)
        self.restarts: dict[str, int] = {}
        self._queue: asyncio.Queue[AnomalyEvent] = asyncio.Queue()
        self._lock = asyncio.Lock()
        self._worse = set(settings.policy.eject_metrics) | set(settings.policy.memory_metrics)
        self._tasks: list[asyncio.Task[None]] = []
        self._hooks: set[asyncio.Task[None]] = set()
        #: In a fleet only the leader's detector acts (``state.leader``); the others observe.
        self.leader = leader
        self.prober = Prober(session, settings.policy.outliers, self._probed)
        #: the offered load per model (arrivals/s), read by the load guard and the scaler
        self.load = LoadMeter(in_flight, settings.resolution_s, settings.history)

    def observe(self, obs: Observation) -> None:
        """One finished upstream attempt: into the series and the outlier rule."""
        self.engine.observe(obs)
        self.load.completed(obs.model)
        self._judged(obs, probe=False)

    def _probed(self, obs: Observation) -> None:
        self._judged(obs, probe=True)

    def _judged(self, obs: Observation, *, probe: bool) -> None:
        flagged = obs.backend_id in self.policy.ejected or obs.model in self.policy.fallback_active
        self.policy.judge.observe(obs, flagged=flagged, probe=probe)

    def leads(self) -> bool:
        return self.leader is None or self.leader()

    # --- events in, actions out ----------------------------------------------------------

    def _on_event(self, event: AnomalyEvent) -> None:
        if self.metrics is not None:
            self.metrics.on_event(event, len(self.engine.open_events()))
        if event.open and not self._got_worse(event):
            log.info(
                "anomaly %s on %s/%s: value went down, no action",
                event.metric,
                event.backend_id,
                event.model,
            )
            return
        self._queue.put_nowait(event)

    def _got_worse(self, event: AnomalyEvent) -> bool:
        """For higher-is-worse metrics: is the last value above the median before the event?"""
        if event.metric not in self._worse:
            return True
        values = self.engine.store.values(SeriesKey(event.backend_id, event.model, event.metric))
        before = values[: -self.settings.events.open_after]
        if not before:
            return True
        return values[-1] > statistics.median(before)

    def record(self, actions: Iterable[Action]) -> None:
        done = list(actions)
        self.actions.extend(done)
        if self.metrics is not None:
            self.metrics.on_actions(done)
        for a in done:
            log.warning("detector action %s %s: %s", a.kind, a.target, a.reason)
            if a.kind == "alert" and self.settings.alert_webhook:
                task = asyncio.create_task(self._webhook(a, self.settings.alert_webhook))
                self._hooks.add(task)
                task.add_done_callback(self._hooks.discard)

    async def _webhook(self, action: Action, url: str) -> None:
        body = {"kind": action.kind, "target": action.target, "reason": action.reason,
                "event_id": action.event_id, "ts": action.ts}  # fmt: skip
        try:
            timeout = aiohttp.ClientTimeout(total=10)
            async with self.session.post(url, json=body, timeout=timeout) as resp:
                if resp.status >= 300:
                    log.warning("alert webhook answered HTTP %s", resp.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("alert webhook failed: %r", exc)

    async def _act(self) -> None:
        while True:
            event = await self._queue.get()
            if not self.leads():
                continue
            async with self._lock:
                results = await call_hook(
                    self.pm,
                    "on_anomaly",
                    timeout=self.settings.action_timeout_s,
                    event=event,
                    gateway=self.control,
                )
            for result in results:
                self.record(result if isinstance(result, list) else [result])

    async def _timer(self) -> None:
        loop = asyncio.get_running_loop()
        res = self.settings.resolution_s
        next_probe = loop.time() + self.settings.policy.probe_interval_s
        while True:
            await asyncio.sleep(res)
            if not self.leads():
                continue
            async with self._lock:
                if loop.time() >= next_probe:
                    next_probe = loop.time() + self.settings.policy.probe_interval_s
                    self.record(await self.policy.reprobe(self.control))
                if self.settings.policy.outliers.enabled:
                    await self._outliers(loop.time())
                if self.settings.policy.leak.enabled:
                    await self._leaks()
                if self.settings.policy.scaling.enabled:
                    for model in sorted({b.model for b in self._targets()}):
                        load = self.load.values(model)
                        if load:
                            self.record(
                                await self.policy.autoscale(
                                    model, load, self.control, resolution_s=res
                                )
                            )

    async def _meter(self) -> None:
        """One point of every model's arrivals per tick; never waits for the lock (a
        scale-out that waits for a worker to load would leave a gap in the series)."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += self.settings.resolution_s
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            self.load.tick({b.model for b in self._targets()})

    async def _outliers(self, _: float) -> None:
        now = time.time()
        by_id = {b.id: b for b in self._targets()}
        for model in sorted({b.model for b in by_id.values()}):
            load = self.load.values(model)
            actions, probe = await self.policy.outliers(model, self.control, now, load)
            self.record(actions)
            for backend_id in probe:
                if backend_id in by_id:
                    suspect = backend_id in self.policy.suspects.get(model, ())
                    self.prober.probe(by_id[backend_id], burst=suspect)

    async def _leaks(self) -> None:
        s = self.settings.policy.leak
        points = int(s.window_s / self.settings.resolution_s)
        for key in list(self.engine.store.series):
            if key.metric != s.metric or key.backend_id is None:
                continue
            values = self.engine.store.values(key)[-points:]
            if len(values) < points:
                continue
            rate = s.min_mb_per_s * 2**20
            if sustained_growth(values, self.settings.resolution_s, rate):
                slope = theil_sen(values, self.settings.resolution_s) / 2**20
                self.record(
                    await self.policy.leak(key.backend_id, slope, self.control, time.time())
                )

    def _targets(self) -> Iterable[Backend]:
        return self.targets()

    # --- lifecycle -----------------------------------------------------------------------

    def _crashed(self, name: str) -> None:
        self.restarts[name] = self.restarts.get(name, 0) + 1

    def _spawn(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        coro = supervise(name, run, self.settings.restart_backoff_s, self._crashed)
        self._tasks.append(asyncio.create_task(coro, name=f"switchgear-detector-{name}"))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[DetectorService]:
        """Start the supervised tasks; on exit cancel and await them, then the engine's fits."""
        self._spawn("engine", self.engine.run)
        self._spawn("scraper", lambda: scrape_loop(self.engine, self.session, self._targets))
        self._spawn("actor", self._act)
        self._spawn("timer", self._timer)
        self._spawn("load", self._meter)
        try:
            yield self
        finally:
            for t in self._tasks:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks.clear()
            await self.prober.aclose()
            await self.engine.aclose()
