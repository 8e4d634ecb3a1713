"""Calibrated scores: a detector's raw surprise as a tail probability against its own past.

A detector's likelihood stage fits a normal distribution to its recent raw scores; on a
series whose surprises are heavy-tailed or that stays anomalous for a while, that fit's
tail saturates, scores pile up at 1.0 and no single threshold separates the series (the
gateway's online mode, which does not damp repeats, scored 14–16 on NAB for that reason).
:class:`Calibrator` replaces it with a conformal p-value: the rank of the new raw score
among the last ``window`` raw scores of the same series, ``p = (1 + #{past >= x}) / (n +
1)``. Under exchangeability (iid noise of any distribution and scale) that p-value is
uniform, so a threshold on it means the same on every series. Above the largest past
value the rank runs out; there the tail is extrapolated as an exponential fitted to the
excesses of the top ``tail`` share of the history over their lower bound (peaks over
threshold, as in SPOT; Siffer et al., KDD 2017), continuous at the maximum.

Two statistics are ranked, each against its own history: the raw score, and the mean of
the last ``short`` raw scores (so a sustained moderate change counts, as HTM's averaging
does); the smaller p-value wins, doubled (Bonferroni). The score is ``log(p) /
log(floor)`` in [0, 1]: 0.5 with the default ``floor`` 1e-6 means a 1-in-1,000 event
against the series' own recent history. The first ``warmup`` raw scores are not kept (a
detector's own warm-up makes its first surprises meaningless: the robust baseline's scale
starts at zero and its first few dozen points all look extreme), and nothing scores above
0 until ``min_history`` raw scores have been kept.

:class:`Calibrated` wraps any detector with it (``calibrate`` in a built-in detector's
parameters); everything else — fits off the loop, contributions — is the inner detector's.
Per point it costs two sorted-list insertions and deletions (``O(window)`` memory moves,
microseconds at the default 1,000) and, every ``reestimate`` points, a tail fit.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from typing import Any

from switchgear.detector.base import Detector, FitTask


class _Ranked:
    """The last ``window`` values of one statistic, kept sorted, with an exponential tail."""

    __slots__ = ("order", "sorted", "window", "tail", "scale", "top")

    def __init__(self, window: int, tail: float) -> None:
        self.order: deque[float] = deque()
        self.sorted: list[float] = []
        self.window = window
        self.tail = tail
        self.scale = 0.0
        self.top = math.inf

    def p_value(self, x: float) -> float:
        n = len(self.sorted)
        above = n - bisect.bisect_left(self.sorted, x)
        if above > 0 or n == 0:
            return (1 + above) / (n + 1)
        # beyond every past value: P(X > x | X > max) ~ exp(-(x - max) / scale)
        excess = x - self.sorted[-1]
        if self.scale <= 0.0:
            # no spread among the largest values yet (a flat series): any excess is news
            return 1.0 / (n + 1) if excess <= 0 or self.top == math.inf else 1e-300
        return math.exp(-excess / self.scale) / (n + 1)

    def add(self, x: float) -> None:
        self.order.append(x)
        bisect.insort(self.sorted, x)
        if len(self.order) > self.window:
            old = self.order.popleft()
            del self.sorted[bisect.bisect_left(self.sorted, old)]

    def estimate(self) -> None:
        """Fit the exponential tail: mean excess of the top ``tail`` share over its bound."""
        n = len(self.sorted)
        k = max(2, int(self.tail * n))
        if n < k + 1:
            return
        bound = self.sorted[n - k - 1]
        top = self.sorted[n - k :]
        self.scale = sum(v - bound for v in top) / k
        self.top = self.sorted[-1]


class Calibrator:
    """Streaming conformal calibration of one series' raw scores; see the module docstring."""

    def __init__(
        self,
        *,
        window: int = 1000,
        short: int = 10,
        warmup: int = 150,
        min_history: int = 100,
        floor: float = 1e-6,
        tail: float = 0.1,
        reestimate: int = 50,
    ) -> None:
        if not 0.0 < floor < 1.0:
            raise ValueError("floor must lie in (0, 1)")
        self.short = short
        self.warmup = warmup
        self.min_history = min_history
        self.reestimate = reestimate
        self._log_floor = math.log(floor)
        self._raws = _Ranked(window, tail)
        self._means = _Ranked(window, tail) if short > 1 else None
        self._recent: deque[float] = deque(maxlen=max(short, 1))
        self._sum = 0.0
        self.n = 0
        self.p = 1.0

    def update(self, raw: float) -> float:
        if len(self._recent) == self._recent.maxlen:
            self._sum -= self._recent[0]
        self._recent.append(raw)
        self._sum += raw
        mean = self._sum / len(self._recent)
        self.n += 1
        if self.n <= self.warmup:
            return 0.0
        if self.n % self.reestimate == 0:
            self._raws.estimate()
            if self._means is not None:
                self._means.estimate()
        p = self._raws.p_value(raw)
        if self._means is not None:
            p = min(1.0, 2.0 * min(p, self._means.p_value(mean)))
            self._means.add(mean)
        self._raws.add(raw)
        self.p = p
        if self.n <= self.warmup + self.min_history:
            return 0.0
        return min(1.0, max(0.0, math.log(max(p, 1e-300)) / self._log_floor))


class Calibrated:
    """Any detector with its score replaced by the calibrated tail of its raw surprise
    (its ``raw`` attribute where it has one, else its score)."""

    def __init__(self, inner: Detector, calibrator: Calibrator | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.calibrator = calibrator if calibrator is not None else Calibrator()
        self.last = 0.0

    @property
    def raw(self) -> float:
        return float(getattr(self.inner, "raw", self.last))

    def update(self, value: float) -> float:
        score = self.inner.update(value)
        self.last = self.calibrator.update(float(getattr(self.inner, "raw", score)))
        return self.last

    def fit_task(self) -> FitTask | None:
        return self.inner.fit_task()

    def install(self, fitted: Any) -> None:
        self.inner.install(fitted)

    def contributions(self) -> dict[str, float]:
        return {**self.inner.contributions(), "calibrated": self.last}


def calibrated(detector: Detector, options: dict[str, Any] | bool | None) -> Detector:
    """``detector`` wrapped per ``options`` (a mapping of :class:`Calibrator` parameters, or
    True for its defaults); unchanged for None or False."""
    if options is None or options is False:
        return detector
    params = {} if options is True else dict(options)
    return Calibrated(detector, Calibrator(**params))
