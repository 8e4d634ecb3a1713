"""The ensemble: runs several detectors on one series and scores their combined surprise.

Members are any :class:`~switchgear.detector.base.Detector`. Each built-in member exposes
its raw surprise (``raw``: its deviation in scales, squashed to [0, 1) by
:func:`~switchgear.detector.baseline.squash`, before its own likelihood stage) and its
latest absolute forecast error (``err``, in the series' units; nan before it forecasts); a
member without ``raw`` contributes its score. The ensemble's raw surprise is a weighted
mean of the members' blended with their maximum (``max_weight``), and it goes through one
likelihood stage of its own (plus the new-range flag), exactly as a single detector's does.

The weights follow the series (Bates & Granger 1969, forecast combination): each member's
configured weight is divided by the square of its recent mean absolute error (an EWMA over
about ``span`` points), so the model that forecasts this series best speaks loudest — the
seasonal model on a daily cycle, the robust level where there is no season. A member that
has not forecast yet is left out; one without ``err`` counts as a member of typical skill.
In the maximum a member counts in proportion to its weight relative to the heaviest one's.

Combining before the likelihood rather than after is what makes members help each other:
a point that one model finds mildly odd and another finds normal stays quiet, a point that
every model finds odd stands out, and the likelihood calibrates the combination against its
own history. Averaging the members' likelihood scores instead dilutes the one member that
is right (each score is sparse) and was worse than the best member alone on NAB.

Due fits of all members are bundled into one fit task, so the engine schedules one
executor job per tick.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from switchgear.detector.base import Detector, FitTask, run_inline
from switchgear.detector.likelihood import Likelihood, NewRange

log = logging.getLogger("switchgear.detector")


def _guarded(task: FitTask) -> Any:
    """A failing member fit yields None (the member keeps its old model and retries later)."""
    try:
        return task()
    except Exception:
        log.exception("detector fit failed; keeping the previous model")
        return None


def _raw(det: Detector, score: float) -> float:
    return float(getattr(det, "raw", score))


def _err(det: Detector) -> float:
    return float(getattr(det, "err", math.nan))


class Ensemble:
    name = "ensemble"

    def __init__(
        self,
        members: Mapping[str, Detector],
        *,
        weights: Mapping[str, float] | None = None,
        max_weight: float = 0.5,
        likelihood: Likelihood | None = None,
        new_range: bool = True,
        span: int = 500,
    ) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = dict(members)
        w = {k: float((weights or {}).get(k, 1.0)) for k in self.members}
        total = sum(w.values()) or 1.0
        self.weights = {k: v / total for k, v in w.items()}
        self.max_weight = max_weight
        self.span = span
        self.mae: dict[str, float] = {k: math.nan for k in self.members}
        self._seen: dict[str, int] = {k: 0 for k in self.members}
        self._blind = {k for k, d in self.members.items() if not hasattr(d, "err")}
        self.lik = likelihood if likelihood is not None else Likelihood()
        self.range = NewRange() if new_range else None
        self.scores: dict[str, float] = {k: 0.0 for k in self.members}
        self.raw = 0.0
        self.last = 0.0

    def _combine(self, raws: Mapping[str, float], errs: Mapping[str, float], value: float) -> float:
        weights = dict(self.weights)
        known = [k for k in raws if not math.isnan(self.mae[k])]
        if known:
            floor = 1e-9 + 1e-6 * abs(value)
            skill = {k: 1.0 / (self.mae[k] + floor) ** 2 for k in known}
            ranked = sorted(skill.values())
            typical = ranked[len(ranked) // 2]
            for k in self.weights:
                # a member that never reports an error counts as a typical one
                weights[k] = self.weights[k] * skill.get(k, typical if k in self._blind else 0.0)
        total = sum(weights.values()) or 1.0
        mean = sum(w * raws[k] for k, w in weights.items()) / total
        # the maximum counts a member in proportion to its skill relative to the best one,
        # so a member that forecasts this series badly cannot raise an alarm on its own
        best = max(weights.values()) or 1.0
        top = max((w / best * raws[k] for k, w in weights.items() if w > 0), default=0.0)
        for k, e in errs.items():
            if not math.isnan(e):
                n = self._seen[k] = self._seen[k] + 1
                a = max(1.0 / self.span, 1.0 / n)
                self.mae[k] = e if n == 1 else self.mae[k] + a * (e - self.mae[k])
        return self.max_weight * top + (1.0 - self.max_weight) * mean

    def _finish(self, value: float, raw: float) -> float:
        self.raw = raw
        self.last = self.lik.update(raw)
        if self.range is not None and self.range.update(value) == 1.0:
            self.last = 1.0
        return self.last

    def update(self, value: float) -> float:
        raws, errs = {}, {}
        for key, det in self.members.items():
            self.scores[key] = det.update(value)
            raws[key] = _raw(det, self.scores[key])
            errs[key] = _err(det)
        return self._finish(value, self._combine(raws, errs, value))

    def score_block(self, values: np.ndarray) -> np.ndarray:
        """Offline scoring: each member scores the whole block (batched where it can, in
        which case it leaves its raw surprises in ``block_raw``); same results as ``update``."""
        n = len(values)
        raws, errs = {}, {}
        for key, det in self.members.items():
            block = getattr(det, "score_block", None)
            if block is not None:
                scores = np.asarray(block(values), dtype=float)
                raws[key] = np.asarray(getattr(det, "block_raw", scores), dtype=float)
                errs[key] = np.asarray(getattr(det, "block_err", np.full(n, math.nan)))
            else:
                raws[key], errs[key] = np.empty(n), np.empty(n)
                for i, v in enumerate(values):
                    raws[key][i] = _raw(det, run_inline(det, float(v)))
                    errs[key][i] = _err(det)
        out = np.empty(n)
        for i, v in enumerate(values):
            raw = self._combine(
                {k: float(c[i]) for k, c in raws.items()},
                {k: float(c[i]) for k, c in errs.items()},
                float(v),
            )
            out[i] = self._finish(float(v), raw)
        return out

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
