"""``zscore``: the baseline's robust z-score without the likelihood stage.

The raw surprise ``1 − exp(−z²/(z+k)/2)`` of the Huberised EWMA deviation (see
:mod:`switchgear.detector.baseline`) is the score, so a level shift scores near 1 on the
first point after ``warmup`` points, where ``baseline`` needs its 300-point likelihood
history. It alerts more often on noisy series (no regime model): use it for short-lived
series, small deployments that want an answer within seconds, and end-to-end tests, with a
high ``open_score`` and ``open_after`` of a few ticks.

``min_change`` gates it by size: a point whose distance from the level is below
``min_change × |level|`` scores 0 however many scales away it is, so a latency that merely
doubles on a quiet series (``min_change`` 4: five times the level is needed) or memory that
breathes by a few percent does not alert. Give metrics their own gate through per-metric
parameters (``detector.params["zscore@latency_p95"]``).
"""

from __future__ import annotations

from switchgear.detector.base import SimpleDetector
from switchgear.detector.baseline import RobustZ, squash


class ZScore(SimpleDetector):
    name = "zscore"

    def __init__(
        self,
        *,
        alpha: float = 0.05,
        clip: float = 3.0,
        k: float = 4.0,
        warmup: int = 20,
        min_change: float = 0.0,
    ) -> None:
        self.z = RobustZ(alpha=alpha, beta=alpha, clip=clip)
        self.k = k
        self.warmup = warmup
        self.min_change = min_change
        self.last = 0.0

    def update(self, value: float) -> float:
        level = self.z.level
        raw = squash(self.z.update(value), self.k)
        small = abs(value - level) < self.min_change * abs(level)
        self.last = raw if self.z.n > self.warmup and not small else 0.0
        return self.last
