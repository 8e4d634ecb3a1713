"""Seeded synthetic series with planted anomalies, shared by the detector tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N = 1200
AT = 900  # where anomalies start
PERIOD = 60


@dataclass(frozen=True)
class Case:
    name: str
    values: np.ndarray
    anomaly_at: int | None  # None: a clean series


def _base(rng: np.random.Generator, seasonal: bool, noise: float = 1.0) -> np.ndarray:
    t = np.arange(N)
    y = 10.0 + rng.normal(0.0, noise, N)
    if seasonal:
        y += 5.0 * np.sin(2 * np.pi * t / PERIOD)
    return y


def clean_cases(seed: int = 0) -> list[Case]:
    rng = np.random.default_rng(seed)
    heavy = 10.0 + rng.standard_t(5, N)
    return [
        Case("noisy", _base(rng, False), None),
        Case("seasonal", _base(rng, True), None),
        Case("heavy_tailed", heavy, None),
        Case("very_noisy_seasonal", _base(rng, True, noise=3.0), None),
    ]


def anomaly_cases(seed: int = 0) -> list[Case]:
    rng = np.random.default_rng(seed)
    out = []
    for seasonal in (False, True):
        tag = "seasonal_" if seasonal else ""
        y = _base(rng, seasonal)
        y[AT:] += 8.0
        out.append(Case(tag + "level_shift", y, AT))
        y = _base(rng, seasonal)
        # a lone point without season; a 5-point burst (a few seconds) inside a seasonal swing
        y[AT : AT + (5 if seasonal else 1)] += 15.0
        out.append(Case(tag + "spike", y, AT))
        y = _base(rng, seasonal)
        y[AT:] += 0.1 * np.arange(N - AT)
        out.append(Case(tag + "drift", y, AT))
        y = _base(rng, seasonal)
        y[AT:] += rng.normal(0.0, 4.0, N - AT)
        out.append(Case(tag + "variance_change", y, AT))
    return out
