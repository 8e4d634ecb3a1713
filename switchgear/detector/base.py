"""The detector contract: a cheap per-point ``update`` and an optional heavy ``fit`` off the loop.

A detector scores every point of one series in [0, 1]. Model fitting is split in two so it
never runs on the event loop: :meth:`Detector.fit_task` snapshots what the fit needs (on the
loop, cheap) and returns a callable that runs in an executor and returns a fitted model;
:meth:`Detector.install` swaps that model in (on the loop). Until a fit is installed,
``update`` keeps scoring with the previous model, so a slow fit delays nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

FitTask = Callable[[], Any]
DetectorFactory = Callable[..., "Detector"]


@runtime_checkable
class Detector(Protocol):
    """One series' detector. ``update`` is O(1) amortised apart from installed-model inference."""

    name: str

    def update(self, value: float) -> float:
        """Score ``value`` (the next point of the series) in [0, 1] and learn from it."""
        ...

    def fit_task(self) -> FitTask | None:
        """A fit to run off the loop now, or None when no fit is due (or one is in flight)."""
        ...

    def install(self, fitted: Any) -> None:
        """Adopt the result of a fit task (called on the thread that calls ``update``)."""
        ...

    def contributions(self) -> dict[str, float]:
        """The latest score of each part of this detector (one entry for simple detectors)."""
        ...


class SimpleDetector:
    """Base for detectors with no off-loop fit: subclasses implement ``update`` only."""

    name = "simple"
    last = 0.0

    def update(self, value: float) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def fit_task(self) -> FitTask | None:
        return None

    def install(self, fitted: Any) -> None:
        return None

    def contributions(self) -> dict[str, float]:
        return {self.name: self.last}


def run_inline(detector: Detector, value: float) -> float:
    """Update and run any due fit synchronously (offline scoring, benchmarks, tests)."""
    score = detector.update(value)
    task = detector.fit_task()
    if task is not None:
        detector.install(task())
    return score
