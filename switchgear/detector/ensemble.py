"""The ensemble: runs several detectors on one series and combines their scores.

Members are any :class:`~switchgear.detector.base.Detector`; the score is the weighted
mean of the members' scores blended with their maximum (``max_weight``), so one confident
member can raise an alarm on its own while agreement raises it further. Due fits of all
members are bundled into one fit task, so the engine schedules one executor job per tick.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from switchgear.detector.base import Detector, FitTask, run_inline

log = logging.getLogger("switchgear.detector")


def _guarded(task: FitTask) -> Any:
    """A failing member fit yields None (the member keeps its old model and retries later)."""
    try:
        return task()
    except Exception:
        log.exception("detector fit failed; keeping the previous model")
        return None


class Ensemble:
    name = "ensemble"

    def __init__(
        self,
        members: Mapping[str, Detector],
        *,
        weights: Mapping[str, float] | None = None,
        max_weight: float = 0.5,
    ) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = dict(members)
        w = {k: float((weights or {}).get(k, 1.0)) for k in self.members}
        total = sum(w.values()) or 1.0
        self.weights = {k: v / total for k, v in w.items()}
        self.max_weight = max_weight
        self.scores: dict[str, float] = {k: 0.0 for k in self.members}
        self.last = 0.0

    def _combine(self, scores: Mapping[str, float]) -> float:
        mean = sum(self.weights[k] * s for k, s in scores.items())
        return self.max_weight * max(scores.values()) + (1.0 - self.max_weight) * mean

    def update(self, value: float) -> float:
        for key, det in self.members.items():
            self.scores[key] = det.update(value)
        self.last = self._combine(self.scores)
        return self.last

    def score_block(self, values: np.ndarray) -> np.ndarray:
        """Offline scoring: each member scores the whole block (batched where it can)."""
        cols = {}
        for key, det in self.members.items():
            block = getattr(det, "score_block", None)
            cols[key] = (
                block(values)
                if block is not None
                else np.array([run_inline(det, float(v)) for v in values])
            )
        mean = sum(self.weights[k] * c for k, c in cols.items())
        top = np.max(np.stack(list(cols.values())), axis=0)
        return self.max_weight * top + (1.0 - self.max_weight) * mean

    def fit_task(self) -> FitTask | None:
        tasks = {k: t for k, d in self.members.items() if (t := d.fit_task()) is not None}
        if not tasks:
            return None
        return lambda: {k: _guarded(t) for k, t in tasks.items()}

    def install(self, fitted: Any) -> None:
        for key, result in dict(fitted).items():
            self.members[key].install(result)

    def contributions(self) -> dict[str, float]:
        return dict(self.scores)
