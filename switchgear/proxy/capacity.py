"""Per-model scaling signals any autoscaler can read on ``/metrics``:

- ``switchgear_model_desired_replicas``: the requests/s forecast over ``scaling.lead_time_s``
  divided by the per-replica capacity learned from observed throughput at
  ``scaling.target_latency_s``;
- ``switchgear_model_requests_in_flight``: client requests of the model being answered;
- ``switchgear_model_queue_depth``: requests held waiting for a first replica (scale from zero);
- ``switchgear_model_capacity_rps`` and ``switchgear_model_forecast_rps``, the two inputs.

Capacity learning: over the last ``window_s`` a replica that answered ≥95% of its requests
within the target latency handled its rate, so capacity rises to it; one that did not is
past its capacity, so capacity falls to its rate. Until a model has such evidence, capacity
is ``default_capacity_rps``. Fed by the gateway's observers (``keys.OBSERVERS``); the gauges
are computed when ``/metrics`` is scraped (a custom collector), so the hot path only appends.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client.core import GaugeMetricFamily

from switchgear.settings.detector import ScalingSettings
from switchgear.settings.scaling import ScalingSection
from switchgear.types import Observation

GOOD_SHARE = 0.95


def forecast_rps(history: Sequence[float], lead_time_s: float, resolution_s: float) -> float:
    """Requests/s ``lead_time_s`` ahead of a per-``resolution_s`` history.

    The one place that consumes the detector's forecaster (Holt's linear trend in
    :class:`switchgear.detector.policy.Autoscaler`), so a new forecaster changes only this.
    """
    from switchgear.detector.policy import Autoscaler

    fc = Autoscaler(ScalingSettings(horizon_s=lead_time_s), resolution_s)
    return float(fc.forecast(list(history)))


class Capacity:
    def __init__(self, settings: ScalingSection, clock: Callable[[], float] = time.time) -> None:
        self.s = settings
        self.clock = clock
        self.seen: dict[str, deque[tuple[float, str, bool]]] = defaultdict(deque)
        self.capacity: dict[str, float] = {}
        #: model -> requests held for a first replica (set by the cold-start hold)
        self.queued: Callable[[str], int] = lambda _m: 0
        #: model -> requests being answered (set by the in-flight middleware)
        self.in_flight: Callable[[], dict[str, int]] = dict

    def observe(self, obs: Observation) -> None:
        good = obs.error is None and obs.status < 500 and obs.latency_s <= self.s.target_latency_s
        seen = self.seen[obs.model]
        seen.append((obs.ts, obs.backend_id, good))
        # trimmed here too, so memory stays bounded by the window when nobody scrapes
        while seen[0][0] < obs.ts - self.s.window_s:
            seen.popleft()

    def _trim(self, model: str, now: float) -> deque[tuple[float, str, bool]]:
        seen = self.seen[model]
        while seen and seen[0][0] < now - self.s.window_s:
            seen.popleft()
        return seen

    def learn(self, model: str, now: float) -> float:
        """Update and return the per-replica capacity (requests/s) of ``model``."""
        per: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for _ts, backend, good in self._trim(model, now):
            per[backend][0] += 1
            per[backend][1] += good
        cap = self.capacity.get(model, self.s.default_capacity_rps)
        for total, within in per.values():
            rate = total / self.s.window_s
            if within >= GOOD_SHARE * total:
                cap = max(cap, rate)
            elif rate > 0:
                cap = min(cap, rate)
        self.capacity[model] = cap
        return cap

    def history(self, model: str, now: float, resolution_s: float = 1.0) -> list[float]:
        points = max(1, int(self.s.window_s / resolution_s))
        counts = [0.0] * points
        start = now - points * resolution_s
        for ts, _backend, _good in self._trim(model, now):
            i = int((ts - start) / resolution_s)
            if 0 <= i < points:
                counts[i] += 1.0 / resolution_s
        return counts

    def desired(self, model: str, now: float | None = None) -> tuple[int, float, float]:
        """(desired replicas, forecast requests/s, per-replica capacity) for ``model``."""
        now = self.clock() if now is None else now
        cap = self.learn(model, now)
        fc = forecast_rps(self.history(model, now), self.s.lead_time_s, 1.0)
        want = math.ceil(fc / cap - 1e-9) if fc > 0 else 0
        if self.queued(model) > 0:
            want = max(want, 1)
        return want, fc, cap

    def models(self) -> set[str]:
        return set(self.seen) | set(self.in_flight())

    def collect(self) -> Iterator[Any]:
        labels = ["model"]
        desired = GaugeMetricFamily(
            "switchgear_model_desired_replicas",
            "Replicas needed for the forecast requests/s at the target latency",
            labels=labels,
        )
        forecast = GaugeMetricFamily(
            "switchgear_model_forecast_rps", "Requests/s forecast over the lead time", labels=labels
        )
        capacity = GaugeMetricFamily(
            "switchgear_model_capacity_rps",
            "Learned requests/s one replica answers within the target latency",
            labels=labels,
        )
        queue = GaugeMetricFamily(
            "switchgear_model_queue_depth", "Requests waiting for a first replica", labels=labels
        )
        flight = GaugeMetricFamily(
            "switchgear_model_requests_in_flight", "Client requests being answered", labels=labels
        )
        in_flight = self.in_flight()
        for model in sorted(self.models()):
            want, fc, cap = self.desired(model)
            desired.add_metric([model], want)
            forecast.add_metric([model], fc)
            capacity.add_metric([model], cap)
            queue.add_metric([model], self.queued(model))
            flight.add_metric([model], in_flight.get(model, 0))
        yield from (desired, forecast, capacity, queue, flight)
