"""The statsmodels detector: STL (or simple exponential smoothing) refit on a sliding window.

Every ``refit_every`` points a fit task snapshots the last ``window`` points and, off the
loop, looks for a season with the autocorrelation function (the highest local peak above
``min_acf`` at a lag of at least ``min_period``). With a season it fits a robust STL and
keeps the last cycle of the seasonal component, the trend's last value and the residuals'
robust scale; without one it fits ``SimpleExpSmoothing`` for the smoothing constant. Each
point is then scored by its standardised one-step-ahead residual against ``level +
season[phase]``; the level follows the deseasonalised series with the fitted constant
(Huberised, so a spike does not move it). Raw residuals go through the likelihood stage.
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from switchgear.detector.base import FitTask
from switchgear.detector.baseline import squash
from switchgear.detector.likelihood import Likelihood, NewRange


@dataclass(frozen=True, slots=True)
class SeasonalModel:
    """A fitted model: seasonal profile (empty = none), level at ``end``, alpha and scale."""

    season: np.ndarray
    level: float
    alpha: float
    scale: float
    end: int  # count of points seen when the snapshot was taken


def find_period(y: np.ndarray, min_period: int, max_period: int, min_acf: float) -> int:
    from statsmodels.tsa.stattools import acf

    if np.std(y) == 0 or len(y) < 2 * min_period:
        return 0
    r = acf(y - np.mean(y), nlags=min(max_period, len(y) // 2), fft=True)
    best, lag = min_acf, 0
    for k in range(min_period, len(r) - 1):
        if r[k] > best and r[k] >= r[k - 1] and r[k] >= r[k + 1]:
            best, lag = r[k], k
    return lag


def fit_model(y: np.ndarray, end: int, min_period: int, min_acf: float) -> SeasonalModel:
    """Fit on one window (runs in an executor; pure function of its arguments)."""
    period = find_period(y, min_period, len(y) // 3, min_acf)
    floor = 1e-6 * (abs(float(np.median(y))) + 1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if period:
            from statsmodels.tsa.seasonal import STL

            jump = max(1, period // 20)
            res = STL(
                y,
                period=period,
                seasonal=13,
                robust=True,
                seasonal_jump=jump,
                trend_jump=jump,
                low_pass_jump=jump,
            ).fit(outer_iter=2)
            season = np.asarray(res.seasonal[-period:], dtype=float)
            resid = np.asarray(res.resid, dtype=float)
            level = float(res.trend[-1])
            alpha = 0.05
            deseason = y - np.asarray(res.seasonal, dtype=float)
        else:
            from statsmodels.tsa.holtwinters import SimpleExpSmoothing

            fit = SimpleExpSmoothing(y, initialization_method="estimated").fit()
            alpha = float(np.clip(fit.params["smoothing_level"], 0.01, 0.5))
            resid = np.asarray(y[1:] - fit.fittedvalues[1:], dtype=float)
            level = float(fit.level[-1])
            season = np.zeros(0)
            deseason = y
    # STL's residuals understate one-step errors (the smoothers see both sides of a point);
    # the robust spread of first differences of the deseasonalised series does not.
    d = np.diff(deseason)
    mad = max(
        float(np.median(np.abs(d - np.median(d)))) / math.sqrt(2.0),
        float(np.median(np.abs(resid - np.median(resid)))),
    )
    scale = max(1.4826 * mad, float(np.std(resid)) * 0.1, floor)
    return SeasonalModel(season, level, alpha, scale, end)


class Statistical:
    """STL / exponential smoothing residual detector; see the module docstring."""

    name = "stl"

    def __init__(
        self,
        *,
        window: int = 1024,
        refit_every: int = 128,
        min_period: int = 8,
        min_acf: float = 0.3,
        clip: float = 3.0,
        k: float = 4.0,
        likelihood: Likelihood | None = None,
        new_range: bool = True,
    ) -> None:
        self.range = NewRange() if new_range else None
        self.window = window
        self.refit_every = refit_every
        self.min_period = min_period
        self.min_acf = min_acf
        self.clip = clip
        self.k = k
        self.lik = likelihood if likelihood is not None else Likelihood()
        self.history: deque[float] = deque(maxlen=window)
        self.n = 0
        self.model: SeasonalModel | None = None
        self.level = 0.0
        self.pending = False
        self.last = 0.0
        self.raw = 0.0

    def _forecast(self, i: int) -> float:
        m = self.model
        assert m is not None
        s = m.season
        return self.level + (float(s[(i - m.end) % len(s)]) if len(s) else 0.0)

    def _learn(self, i: int, x: float) -> float:
        """Residual of point ``i`` (0-based) against the forecast, then update the level."""
        m = self.model
        assert m is not None
        err = x - self._forecast(i)
        bound = self.clip * m.scale
        self.level += m.alpha * max(-bound, min(bound, err))
        return abs(err) / m.scale

    def update(self, value: float) -> float:
        z = self._learn(self.n, value) if self.model is not None else 0.0
        self.history.append(value)
        self.n += 1
        self.raw = squash(z, self.k)
        self.last = self.lik.update(self.raw)
        if self.range is not None and self.range.update(value) == 1.0:
            self.last = 1.0
        return self.last

    def fit_task(self) -> FitTask | None:
        if self.pending or self.n < min(self.window, 4 * self.min_period):
            return None
        due = self.model is None or self.n - self.model.end >= self.refit_every
        if not due:
            return None
        self.pending = True
        y = np.fromiter(self.history, dtype=float, count=len(self.history))
        end, min_period, min_acf = self.n, self.min_period, self.min_acf
        return lambda: fit_model(y, end, min_period, min_acf)

    def install(self, fitted: Any) -> None:
        self.pending = False
        if not isinstance(fitted, SeasonalModel):
            return
        self.model = fitted
        self.level = fitted.level
        # replay the points that arrived while the fit ran, so level and phase are current
        behind = self.n - fitted.end
        recent = list(self.history)[len(self.history) - behind :] if behind > 0 else []
        for j, x in enumerate(recent):
            self._learn(fitted.end + j, x)

    def contributions(self) -> dict[str, float]:
        return {self.name: self.last}
