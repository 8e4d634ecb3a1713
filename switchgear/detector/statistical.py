"""The statsmodels detector: STL (or simple exponential smoothing) refit on a sliding window.

Every ``refit_every`` points a fit task snapshots the last ``window`` points and, off the
loop, looks for a season with the autocorrelation function (the highest local peak above
``min_acf`` at a lag of at least ``min_period`` and at most the window's length over
``cycles``: 2 by default, as STL needs two full cycles; waiting for three left a daily
season of 5-minute points unmodelled for its first 864 points, most of a short series).
With a season it fits a robust STL and keeps the last cycle of the seasonal component, the
trend's last value and a scale for every phase of the season (the robust spread, at that
phase and its neighbours, of the detrended series' change from one cycle to the next: an
honest forecast error, where STL's in-sample residuals, fitted to the noise of the few
cycles in the window, are not); without a season it fits ``SimpleExpSmoothing`` for the
smoothing constant. Each point is then scored by its one-step-ahead residual against
``level + season[phase]`` in its phase's scale; the level follows the deseasonalised series
with the fitted constant (Huberised, so a spike does not move it). Raw residuals go
through the likelihood stage.
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from switchgear.detector.base import FitTask
from switchgear.detector.baseline import squash
from switchgear.detector.likelihood import Likelihood, NewRange


@dataclass(frozen=True, slots=True)
class SeasonalModel:
    """A fitted model: seasonal profile (empty = none), level at ``end``, alpha, scale and the
    scale of each phase of the season (empty = none; the same phase indexing as ``season``)."""

    season: np.ndarray
    level: float
    alpha: float
    scale: float
    end: int  # count of points seen when the snapshot was taken
    scales: np.ndarray = field(default_factory=lambda: np.zeros(0))


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


def fit_model(
    y: np.ndarray, end: int, min_period: int, min_acf: float, cycles: int = 2
) -> SeasonalModel:
    """Fit on one window (runs in an executor; pure function of its arguments); a season
    is looked for among periods that the window holds at least ``cycles`` times."""
    period = find_period(y, min_period, len(y) // cycles, min_acf)
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
            level_curve = np.asarray(res.trend, dtype=float)
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
            level_curve = y
    # STL's residuals understate one-step errors (the smoothers see both sides of a point);
    # the robust spread of first differences of the deseasonalised series does not.
    d = np.diff(deseason)
    mad = max(
        float(np.median(np.abs(d - np.median(d)))) / math.sqrt(2.0),
        float(np.median(np.abs(resid - np.median(resid)))),
    )
    scale = max(1.4826 * mad, float(np.std(resid)) * 0.1, floor)
    scales = np.zeros(0)
    if period:
        # STL's seasonal follows the few cycles a window holds closely, noise included, so
        # its residuals understate the error of forecasting the next cycle; the change of
        # the detrended series from one cycle to the next (over sqrt 2) does not.
        detrended = y - level_curve
        dev = np.abs(detrended[period:] - detrended[:-period]) / math.sqrt(2.0)
        phase = 1.4826 * phase_median(dev, period)
        scale = max(scale, float(np.median(phase)))
        scales = np.maximum(phase, 0.5 * scale)
    return SeasonalModel(season, level, alpha, scale, end, scales)


def phase_median(dev: np.ndarray, period: int) -> np.ndarray:
    """Median of ``dev`` at each phase of the season (phase 0 = ``period`` points before the
    end), pooled over neighbouring phases (``period // 48``, at least 2, each side) so the few
    cycles a window holds give enough samples. Noise often depends on the phase (a busy
    daytime is noisier than the night); one scale for all phases makes the quiet ones deaf
    and the noisy ones raise alarms every cycle."""
    n = len(dev)
    cycles = -(-n // period)
    flat = np.full(cycles * period, np.nan)
    flat[cycles * period - n :] = dev
    grid = flat.reshape(cycles, period)
    h = max(2, period // 48)
    pooled = np.concatenate([np.roll(grid, k, axis=1) for k in range(-h, h + 1)], axis=0)
    return np.asarray(np.nanmedian(pooled, axis=0), dtype=float)


class Statistical:
    """STL / exponential smoothing residual detector; see the module docstring."""

    name = "stl"

    def __init__(  # noqa: PLR0913 - keyword-only, one per `detector.params` key
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
        cycles: int = 2,
    ) -> None:
        if cycles < 2:
            raise ValueError("a season needs at least two cycles in the window")
        self.cycles = cycles
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
        self.err = math.nan  # |value - forecast| of the latest point (nan: no forecast yet)

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
        self.err = abs(err)
        scale = float(m.scales[(i - m.end) % len(m.scales)]) if len(m.scales) else m.scale
        bound = self.clip * scale
        self.level += m.alpha * max(-bound, min(bound, err))
        return abs(err) / scale

    def update(self, value: float) -> float:
        z = 0.0
        self.err = math.nan
        if self.model is not None:
            z = self._learn(self.n, value)
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
        end, min_period, min_acf, cycles = self.n, self.min_period, self.min_acf, self.cycles
        return lambda: fit_model(y, end, min_period, min_acf, cycles)

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
