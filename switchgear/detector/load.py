"""The load a model is offered: its arrival rate, one point per tick.

The completed requests/s of a model flattens once its replicas are saturated: requests then
wait longer instead of finishing more often, so "every replica slow because the load rose"
would look like "every replica slow". The arrival rate keeps rising. It is not observed
directly (observations are finished attempts), but it follows from conservation: the
requests that arrived in a tick are the ones that finished in it plus the growth of the
requests in flight, ``arrivals = completed + in_flight(now) - in_flight(before)``.
``in_flight`` is the gateway's count of client requests being answered per model
(``switchgear_model_requests_in_flight``); without it the meter reads completed requests/s.

The load guard of the outlier rule (:func:`switchgear.detector.policy.load_rose`) and the
autoscaler's forecast both read this series, so scaling follows the offered load.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Iterable

InFlight = Callable[[], dict[str, int]]


class LoadMeter:
    """Per-model arrival rate, a point each :meth:`tick` (every ``resolution_s``)."""

    def __init__(
        self, in_flight: InFlight | None = None, resolution_s: float = 1.0, history: int = 3600
    ) -> None:
        self.in_flight: InFlight = in_flight or dict
        self.resolution_s = resolution_s
        self.history = history
        self.done: defaultdict[str, int] = defaultdict(int)
        self.flight: dict[str, int] = {}
        self.series: dict[str, deque[float]] = {}

    def completed(self, model: str) -> None:
        """One finished attempt of ``model`` (the gateway's traffic, not a probe)."""
        self.done[model] += 1

    def tick(self, models: Iterable[str] = ()) -> dict[str, float]:
        """Close one tick: the arrivals per second of every model with traffic so far."""
        try:
            flight = dict(self.in_flight())
        except Exception:  # a failing count must not stop the meter: completed only
            flight = dict(self.flight)
        out: dict[str, float] = {}
        for model in set(models) | set(self.done) | set(flight) | set(self.series):
            now = flight.get(model, 0)
            grew = now - self.flight.get(model, 0)
            # retried attempts count twice and requests parsed late once: never below 0
            rate = max(0.0, self.done.get(model, 0) + grew) / self.resolution_s
            if model not in self.series and rate == 0.0:
                # a series starts with the model's first traffic: the idle ticks before it
                # (workers still loading) would make any first load look like a rise
                continue
            out[model] = rate
            self.series.setdefault(model, deque(maxlen=self.history)).append(rate)
        self.flight, self.done = flight, defaultdict(int)
        return out

    def values(self, model: str) -> list[float]:
        """The model's arrivals per second, oldest first."""
        return list(self.series.get(model, ()))
