"""Built-in detectors: ``baseline``, ``zscore`` (baseline without the likelihood stage),
``stl``, ``lstm`` and ``ensemble`` (baseline and stl combined by default; ``members`` may
add ``lstm``).

Factories take keyword parameters (``detector.params.<name>`` in config). The LSTM needs
torch (the ``ml`` extra); without it ``lstm`` is not registered and cannot be a member.
The ensemble's default members were chosen by leave-one-category-out NAB validation
(``bench/detector_loco.py``): with the lstm the ensemble scores 65.5 pooled against 75.5
without it, in seven times the time.

``online=True`` (the gateway's engine passes it to every factory that accepts it) tunes a
detector for operations instead of NAB scoring: no "new range" rule (every new maximum of
a latency series would score 1) and no damping of repeated alerts in the likelihood stage
(NAB rewards one alert per anomaly; an operator needs the score to stay high while a
backend stays slow, so that the event opens after ``events.open_after`` ticks).

``calibrate`` (True, or a mapping of :class:`~switchgear.detector.calibration.Calibrator`
parameters) replaces a detector's score with the calibrated tail probability of its raw
surprise against the series' own recent history, so that one threshold means the same on
every series (``detector.params.<name>.calibrate``). It is the online mode's default (False
turns it off there: the online likelihood stage, undamped, piles scores up at 1.0 on
heavy-tailed series); in NAB mode it is off unless asked for. An ensemble's members are
never calibrated themselves: their raw surprises are what it combines.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

from switchgear.plugins.hookspecs import hookimpl


def _likelihood(likelihood: dict[str, Any] | None, online: bool) -> Any:
    from switchgear.detector.likelihood import Likelihood

    if likelihood is None and not online:
        return None  # the detector's own default
    options: dict[str, Any] = {"refractory": 0} if online else {}
    options.update(likelihood or {})
    return Likelihood(**options)


def _online(
    params: dict[str, Any], likelihood: dict[str, Any] | None, online: bool
) -> dict[str, Any]:
    lik = _likelihood(likelihood, online)
    if lik is not None:
        params["likelihood"] = lik
    if online:
        params.setdefault("new_range", False)
    return params


Calibrate = dict[str, Any] | bool | None


def _calibrated(det: Any, calibrate: Calibrate, online: bool) -> Any:
    """Online, a detector is calibrated unless ``calibrate`` is False (see the docstring)."""
    from switchgear.detector.calibration import calibrated

    return calibrated(det, True if calibrate is None and online else calibrate)


def baseline(
    *,
    likelihood: dict[str, Any] | None = None,
    online: bool = False,
    calibrate: Calibrate = None,
    **params: Any,
) -> Any:
    """``likelihood`` (a mapping) configures the likelihood stage (``warmup``, ``long``, ...)."""
    from switchgear.detector.baseline import Baseline

    return _calibrated(Baseline(**_online(params, likelihood, online)), calibrate, online)


def zscore(**params: Any) -> Any:
    from switchgear.detector.zscore import ZScore

    return ZScore(**params)


def stl(
    *,
    likelihood: dict[str, Any] | None = None,
    online: bool = False,
    calibrate: Calibrate = None,
    **params: Any,
) -> Any:
    from switchgear.detector.statistical import Statistical

    return _calibrated(Statistical(**_online(params, likelihood, online)), calibrate, online)


def lstm(*, online: bool = False, calibrate: Calibrate = None, **params: Any) -> Any:
    from switchgear.detector.lstm import LSTMDetector

    det = LSTMDetector(**({"new_range": False} if online else {}) | params)
    if online and det.lik is not None:
        det.lik.refractory = 0
    return _calibrated(det, calibrate, online)


def ensemble(
    *,
    members: dict[str, dict[str, Any]] | None = None,
    weights: dict[str, float] | None = None,
    max_weight: float = 0.3,
    likelihood: dict[str, Any] | None = None,
    online: bool = False,
    calibrate: Calibrate = None,
) -> Any:
    """``members`` maps member names (baseline, stl, lstm) to their parameters."""
    from switchgear.detector.ensemble import Ensemble

    makers: dict[str, Callable[..., Any]] = {"baseline": baseline, "stl": stl}
    if _has_torch():
        makers["lstm"] = lstm
    chosen = members if members is not None else {"baseline": {}, "stl": {}}
    if weights is None:
        weights = {"stl": 2.0}  # the season-aware member counts double; the others 1
    det = Ensemble(
        # members' raw surprises are combined; only the ensemble's own score is calibrated
        {
            name: makers[name](**{"online": online, "calibrate": False} | p)
            for name, p in chosen.items()
        },
        weights=weights,
        max_weight=max_weight,
        **_online({}, likelihood, online),
    )
    return _calibrated(det, calibrate, online)


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
