"""A test plugin for the detector: ``threshold`` scores 1 above ``above`` and 0 otherwise.

Registered through the public ``register_detectors`` hook, it lets a test open a real
anomaly event deterministically: the engine, hysteresis, policy and actions all run as in
production, only the statistics are replaced by a fixed line.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from switchgear import hookimpl
from switchgear.detector.base import SimpleDetector


class Threshold(SimpleDetector):
    name = "threshold"

    def __init__(self, *, above: float = math.inf) -> None:
        self.above = above

    def update(self, value: float) -> float:
        self.last = 1.0 if value > self.above else 0.0
        return self.last


class ThresholdPlugin:
    @hookimpl
    def register_detectors(self, register: Callable[[str, Callable[..., Any]], None]) -> None:
        register("threshold", Threshold)
