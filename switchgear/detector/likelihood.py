"""Anomaly likelihood: turns a detector's raw surprise into a calibrated, sparse score.

After Numenta's HTM anomaly likelihood (Ahmad et al., Neurocomputing 2017): the mean of the
last ``short`` raw scores is compared with a normal distribution fitted to the history of
such means (the last ``long`` of them, re-estimated every ``reestimate`` points). With
``instant`` the raw score itself is also compared with the history of raw scores, so a
single large spike is not diluted by the averaging (only a raw score above every one in
the history counts there); the smaller tail probability wins.
A mean no higher than one already in the history is never rarer than once in that history
(``guard``), which keeps recurring bursts quiet. The tail probability ``q`` becomes
``log(q) / log(1e-10)`` in [0, 1], so 0.5 means "a 1-in-100,000 event under the recent
regime". As in HTM, a red-zone value that follows another is damped to the yellow zone, so
a long anomaly alerts once rather than on every point; "follows" means within
``refractory`` points (default ``short``: while the previous red point is still inside the
averaging window, the same surprise is being counted again). The first ``warmup`` points
score 0.
"""

from __future__ import annotations

import math
from collections import deque

_LOG_EPS = math.log(1e-10)
_SQRT2 = math.sqrt(2.0)


class _Tail:
    """The last ``long`` values of one statistic, their normal fit and running maximum."""

    __slots__ = ("values", "maxq", "long", "mu", "sd", "min_std")

    def __init__(self, long: int, min_std: float) -> None:
        self.values: deque[float] = deque(maxlen=long)
        self.maxq: deque[tuple[int, float]] = deque()
        self.long = long
        self.min_std = min_std
        self.mu = 0.0
        self.sd = 1.0

    def tail(self, x: float, guard: bool, strict: bool = False) -> float:
        if strict and self.maxq and x <= self.maxq[0][1]:
            return 1.0
        z = (x - self.mu) / self.sd
        q = 0.5 * math.erfc(z / _SQRT2) if z > 0 else 1.0
        if guard and self.maxq and x <= self.maxq[0][1]:
            q = max(q, 1.0 / len(self.values))
        return q

    def remember(self, n: int, x: float) -> None:
        self.values.append(x)
        q = self.maxq
        while q and q[-1][1] <= x:
            q.pop()
        q.append((n, x))
        if q[0][0] <= n - self.long:
            q.popleft()

    def estimate(self) -> None:
        n = len(self.values)
        if n < 2:
            return
        mu = sum(self.values) / n
        var = sum((m - mu) ** 2 for m in self.values) / (n - 1)
        self.mu = mu
        self.sd = max(math.sqrt(var), self.min_std)


class Likelihood:
    """Streaming likelihood of raw scores; O(1) per point plus an O(long) re-estimate."""

    def __init__(  # noqa: PLR0913 - keyword-only, one per `detector.params` key
        self,
        *,
        short: int = 15,
        long: int = 500,
        reestimate: int = 100,
        warmup: int = 300,
        min_std: float = 0.02,
        red: float = 1e-5,
        yellow: float = 1e-4,
        guard: bool = True,
        instant: bool = False,
        refractory: int | None = None,
    ) -> None:
        self.short = short
        self.reestimate = reestimate
        self.warmup = warmup
        self.red = red
        self.yellow = yellow
        self.guard = guard
        self._recent: deque[float] = deque(maxlen=short)
        self._sum = 0.0
        self._means = _Tail(long, min_std)
        self._raws = _Tail(long, min_std) if instant else None
        self._n = 0
        self.refractory = short if refractory is None else refractory
        self._last_red = -(10**9)

    def update(self, raw: float) -> float:
        if len(self._recent) == self.short:
            self._sum -= self._recent[0]
        self._recent.append(raw)
        self._sum += raw
        avg = self._sum / len(self._recent)
        n = self._n = self._n + 1
        if n % self.reestimate == 0 or n == self.warmup:
            self._means.estimate()
            if self._raws is not None:
                self._raws.estimate()
        tail = 1.0
        if n > self.warmup:
            tail = self._means.tail(avg, self.guard)
            if self._raws is not None:
                tail = min(tail, self._raws.tail(raw, self.guard, strict=True))
        self._means.remember(n, avg)
        if self._raws is not None:
            self._raws.remember(n, raw)
        if n <= self.warmup:
            return 0.0
        if tail < self.red:
            if n - self._last_red <= self.refractory:
                tail = self.yellow
            self._last_red = n
        return min(1.0, max(0.0, math.log(tail + 1e-10) / _LOG_EPS))


class NewRange:
    """NAB's "spatial anomaly" (from its HTM detector): 1 when a value leaves the range seen
    so far by more than ``tolerance`` of its width, else 0; silent for ``warmup`` points.

    A metric that reaches a level it has never reached (a latency far above any before, a
    queue deeper than ever) is anomalous whatever the models say; O(1) per point.
    """

    __slots__ = ("tolerance", "warmup", "lo", "hi", "n")

    def __init__(self, *, tolerance: float = 0.05, warmup: int = 300) -> None:
        self.tolerance = tolerance
        self.warmup = warmup
        self.lo = math.inf
        self.hi = -math.inf
        self.n = 0

    def update(self, value: float) -> float:
        self.n += 1
        flag = 0.0
        if self.n > self.warmup and self.hi > self.lo:
            margin = (self.hi - self.lo) * self.tolerance
            if value > self.hi + margin or value < self.lo - margin:
                flag = 1.0
        if value < self.lo:
            self.lo = value
        if value > self.hi:
            self.hi = value
        return flag
