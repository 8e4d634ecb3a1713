"""The async engine: ticks, events to the callback, fits off the event loop."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from switchgear.detector.base import FitTask
from switchgear.detector.engine import DetectorEngine
from switchgear.detector.events import SeriesKey
from switchgear.detector.series import parse_prometheus
from switchgear.settings.detector import DetectorSettings
from switchgear.types import AnomalyEvent, Observation


class Threshold:
    """Scores 1 above ``limit`` else 0; asks for a fit every 5 points and records its thread."""

    name = "threshold"

    def __init__(self, limit: float = 1.0) -> None:
        self.limit = limit
        self.n = 0
        self.pending = False
        self.fit_threads: list[int] = []
        self.installed = 0
        self.last = 0.0

    def update(self, value: float) -> float:
        self.n += 1
        self.last = 1.0 if value > self.limit else 0.0
        return self.last

    def fit_task(self) -> FitTask | None:
        if self.pending or self.n % 5:
            return None
        self.pending = True
        return lambda: self.fit_threads.append(threading.get_ident()) or "model"

    def install(self, fitted: Any) -> None:
        self.pending = False
        self.installed += fitted == "model"

    def contributions(self) -> dict[str, float]:
        return {self.name: self.last}


def settings(**events: Any) -> DetectorSettings:
    ev = {"open_after": 2, "close_after": 2, **events}
    return DetectorSettings(
        enabled=True, resolution_s=0.01, detectors={"*": "threshold"}, events=ev
    )


async def test_tick_scores_series_and_emits_events() -> None:
    seen: list[AnomalyEvent] = []
    made: list[Threshold] = []

    def factory(**params: Any) -> Threshold:
        made.append(Threshold(**params))
        return made[-1]

    engine = DetectorEngine(settings(), {"threshold": factory}, seen.append)
    latencies = [0.1, 0.1, 2.0, 3.0, 2.5, 0.1, 0.1, 0.1]
    for lat in latencies:
        engine.observe(Observation("b1", "m", "local", 200, latency_s=lat, ttft_s=lat / 2))
        await engine.tick()
    await engine.drain()
    kinds = [(e.metric, e.open) for e in seen]
    assert ("latency_p95", True) in kinds and ("latency_p95", False) in kinds
    opened = next(e for e in seen if e.metric == "latency_p95" and e.open)
    assert opened.backend_id == "b1" and opened.model == "m"
    assert opened.contributions == {"threshold": 1.0}
    assert [e.metric for e in engine.open_events()] == ["rps"]  # 100 requests/s all along
    assert any(e.metric == "latency_p95" for e in engine.recent_events())
    assert engine.scores[SeriesKey("b1", "m", "error_rate")] == 0.0
    # fits ran in the executor, never on the loop's thread, and were installed
    loop_thread = threading.get_ident()
    fitted = [d for d in made if d.fit_threads]
    assert fitted and all(t != loop_thread for d in fitted for t in d.fit_threads)
    assert all(d.installed == len(d.fit_threads) for d in made)


async def test_scraped_gauges_become_series() -> None:
    engine = DetectorEngine(settings(), {"threshold": lambda: Threshold(limit=5)})
    engine.add_samples("w1", "m", parse_prometheus("switchgear_worker_rss_bytes 9"))
    await engine.tick()
    assert engine.scores[SeriesKey("w1", "m", "memory_rss")] == 1.0


async def test_points_pair_tick_times_values_and_scores() -> None:
    clock = iter(range(100, 200))
    engine = DetectorEngine(
        settings(), {"threshold": lambda: Threshold(limit=5)}, clock=lambda: float(next(clock))
    )
    await engine.tick()  # no series yet
    for value in (1, 9):
        engine.add_samples("w1", "m", parse_prometheus(f"switchgear_worker_rss_bytes {value}"))
        await engine.tick()
    key = SeriesKey("w1", "m", "memory_rss")
    assert engine.points(key) == [(101.0, 1.0, 0.0), (102.0, 9.0, 1.0)]
    assert engine.points(key, since=101.0) == [(102.0, 9.0, 1.0)]


async def test_running_context_ticks_on_its_own_and_stops_cleanly() -> None:
    opened = asyncio.Event()

    def on_event(event: AnomalyEvent) -> None:
        if event.open:
            opened.set()

    engine = DetectorEngine(settings(), {"threshold": Threshold}, on_event)
    async with engine.running():
        engine.add_samples("w1", "m", parse_prometheus("tgi_queue_size 50"))
        await asyncio.wait_for(opened.wait(), 5)
    ticks = engine.ticks
    assert ticks >= 2
    assert engine.open_events()[0].metric == "queue_depth"


async def test_callback_errors_do_not_stop_the_engine() -> None:
    async def boom(event: AnomalyEvent) -> None:
        raise RuntimeError("callback failed")

    engine = DetectorEngine(settings(open_after=1), {"threshold": Threshold}, boom)
    engine.add_samples("w1", "m", parse_prometheus("tgi_queue_size 50"))
    assert len(await engine.tick()) == 1
    assert await engine.tick() == []
