"""The robust online baseline: a Huberised EWMA z-score, O(1) per point.

The level and the scale are exponentially weighted means of the value and of the absolute
deviation; a point further than ``clip`` scales from the level moves them as if it were at
``clip`` scales, so one spike neither drags the level nor inflates the scale, while a real
level shift is absorbed within about ``1/alpha`` points. The raw surprise ``z`` (deviation
in scales) is squashed to [0, 1) and fed to the :class:`Likelihood` stage, whose output is
the score; ``RobustZ`` alone is also usable as a raw scorer by other detectors.
"""

from __future__ import annotations

import math

from switchgear.detector.base import SimpleDetector
from switchgear.detector.likelihood import Likelihood, NewRange

# The mean absolute deviation of a normal variable is sqrt(2/pi) of its standard deviation.
_MAD_TO_SD = math.sqrt(math.pi / 2.0)


class RobustZ:
    """Huberised EWMA level and scale of one series; ``update`` returns |z| before learning."""

    __slots__ = ("alpha", "beta", "clip", "floor", "level", "dev", "n", "err")

    def __init__(
        self, *, alpha: float = 0.02, beta: float = 0.02, clip: float = 3.0, floor: float = 1e-9
    ) -> None:
        self.alpha = alpha
        self.beta = beta
        self.clip = clip
        self.floor = floor
        self.level = 0.0
        self.dev = 0.0
        self.n = 0
        self.err = 0.0

    def update(self, x: float) -> float:
        if self.n == 0:
            self.level = x
            self.n = 1
            return 0.0
        self.n += 1
        scale = self.dev * _MAD_TO_SD + self.floor + 1e-6 * abs(self.level)
        err = x - self.level
        self.err = abs(err)
        z = abs(err) / scale
        bound = self.clip * scale
        if err > bound:
            err = bound
        elif err < -bound:
            err = -bound
        # warm up faster than 1/alpha so the first points do not all look surprising
        a = max(self.alpha, 1.0 / self.n)
        b = max(self.beta, 1.0 / self.n)
        self.level += a * err
        self.dev += b * (abs(err) - self.dev)
        return z


def squash(z: float, k: float = 4.0) -> float:
    """Map a deviation in scales to [0, 1): about 0.22 at 1 scale, 0.6 at 4, 0.9 at 10."""
    return 1.0 - math.exp(-z * z / (z + k) / 2.0) if z > 0 else 0.0


class Baseline(SimpleDetector):
    """The default detector of every metric: robust z-score plus anomaly likelihood."""

    name = "baseline"

    def __init__(
        self,
        *,
        alpha: float = 0.02,
        clip: float = 3.0,
        k: float = 4.0,
        likelihood: Likelihood | None = None,
        new_range: bool = True,
    ) -> None:
        self.z = RobustZ(alpha=alpha, beta=alpha, clip=clip)
        self.range = NewRange() if new_range else None
        self.k = k
        self.lik = likelihood if likelihood is not None else Likelihood()
        self.last = 0.0
        self.raw = 0.0
        self.err = 0.0  # |value - forecast| of the latest point, in the series' units

    def update(self, value: float) -> float:
        self.raw = squash(self.z.update(value), self.k)
        self.err = self.z.err
        self.last = self.lik.update(self.raw)
        if self.range is not None and self.range.update(value) == 1.0:
            self.last = 1.0
        return self.last
