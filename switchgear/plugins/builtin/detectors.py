"""Built-in detectors: ``baseline``, ``zscore`` (baseline without the likelihood stage),
``stl``, ``lstm`` and ``ensemble`` (baseline, stl and lstm combined).

Factories take keyword parameters (``detector.params.<name>`` in config). The LSTM needs
torch (the ``ml`` extra); without it ``lstm`` is not registered and ``ensemble`` combines
the other two.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

from switchgear.plugins.hookspecs import hookimpl


def baseline(*, likelihood: dict[str, Any] | None = None, **params: Any) -> Any:
    """``likelihood`` (a mapping) configures the likelihood stage (``warmup``, ``long``, ...)."""
    from switchgear.detector.baseline import Baseline
    from switchgear.detector.likelihood import Likelihood

    if likelihood is not None:
        params["likelihood"] = Likelihood(**likelihood)
    return Baseline(**params)


def zscore(**params: Any) -> Any:
    from switchgear.detector.zscore import ZScore

    return ZScore(**params)


def stl(**params: Any) -> Any:
    from switchgear.detector.statistical import Statistical

    return Statistical(**params)


def lstm(**params: Any) -> Any:
    from switchgear.detector.lstm import LSTMDetector

    return LSTMDetector(**params)


def ensemble(
    *,
    members: dict[str, dict[str, Any]] | None = None,
    weights: dict[str, float] | None = None,
    max_weight: float = 0.3,
) -> Any:
    """``members`` maps member names (baseline, stl, lstm) to their parameters."""
    from switchgear.detector.ensemble import Ensemble

    makers: dict[str, Callable[..., Any]] = {"baseline": baseline, "stl": stl}
    if _has_torch():
        makers["lstm"] = lstm
    chosen = members if members is not None else {name: {} for name in makers}
    if weights is None:
        weights = {"stl": 2.0}  # the season-aware member counts double; the others 1
    return Ensemble(
        {name: makers[name](**p) for name, p in chosen.items()},
        weights=weights,
        max_weight=max_weight,
    )


def _has_torch() -> bool:
    return importlib.util.find_spec("torch") is not None


@hookimpl(trylast=True)
def register_detectors(register: Callable[[str, Callable[..., Any]], None]) -> None:
    register("baseline", baseline)
    register("zscore", zscore)
    register("stl", stl)
    if _has_torch():
        register("lstm", lstm)
    register("ensemble", ensemble)
