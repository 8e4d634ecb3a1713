"""A memory leak is sustained growth: a Theil-Sen slope over the window and over each of
its thirds above a rate.

A step (a model load, a cache filling once) lifts the level once: the slope over the whole
window may be positive, but at most one third of the window contains the step, so the
other thirds are flat and the rule says no. A leak grows in every third.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def theil_sen(values: Sequence[float], dt: float = 1.0) -> float:
    """The median of the pairwise slopes (per second at ``dt`` seconds per point)."""
    n = len(values)
    slopes = [(values[j] - values[i]) / ((j - i) * dt) for i in range(n) for j in range(i + 1, n)]
    return statistics.median(slopes) if slopes else 0.0


def sustained_growth(values: Sequence[float], dt: float, min_rate: float) -> bool:
    """Whether ``values`` (oldest first, ``dt`` s apart) grow by at least ``min_rate`` per
    second over the whole window and within each of its thirds."""
    n = len(values)
    if n < 9:
        return False
    thirds = [values[i * n // 3 : (i + 1) * n // 3] for i in range(3)]
    return theil_sen(values, dt) >= min_rate and all(theil_sen(t, dt) >= min_rate for t in thirds)
