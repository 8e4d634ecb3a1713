"""Offline scoring: a whole series through one detector, and ``switchgear detect``.

The output format is the Numenta Anomaly Benchmark's: ``timestamp,value,anomaly_score``,
one row per input row, computed causally (row t sees rows <= t only). Fits that the online
engine would run in an executor run inline here, at the same points of the stream.

``online=True`` scores the gateway's online mode instead: the detector is built as the
gateway's :class:`~switchgear.detector.engine.DetectorEngine` builds it (``online=True``
to a factory that accepts it, plus the same ``params``, e.g. ``calibrate``) and fed one
point at a time through ``update``, the engine's per-tick call.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from switchgear.detector.base import Detector, run_inline
from switchgear.detector.calibration import calibrated
from switchgear.detector.engine import _online_params
from switchgear.detector.registry import detector_factories, make_detector


def score_series(
    values: Sequence[float] | np.ndarray,
    timestamps: Sequence[object] | None = None,
    detector: Detector | str = "ensemble",
) -> np.ndarray:
    """Scores in [0, 1] for every value (``timestamps`` are accepted for symmetry, unused:
    the series is assumed to be at a fixed resolution)."""
    det = make_detector(detector) if isinstance(detector, str) else detector
    batch = getattr(det, "score_block", None)
    if batch is not None:
        scores: np.ndarray = np.clip(
            np.asarray(batch(np.asarray(values, dtype=float)), dtype=float), 0.0, 1.0
        )
        return scores
    out = np.empty(len(values))
    for i, v in enumerate(values):
        out[i] = run_inline(det, float(v))
    return np.clip(out, 0.0, 1.0)


def build_detector(
    name: str, params: dict[str, Any] | None = None, *, online: bool = False
) -> Detector:
    """``name`` with ``params``; ``online`` builds it as the gateway's engine does
    (``online=True`` where the factory accepts it). A factory that does not take
    ``calibrate`` (a third party's, ``zscore``) gets its detector wrapped instead."""
    factories = detector_factories()
    factory = factories.get(name)
    options = dict(params or {})
    wrap = None
    if factory is not None:
        if online:
            options = _online_params(factory, options)
        if "calibrate" in options and not _accepts(factory, "calibrate"):
            wrap = options.pop("calibrate")
    return calibrated(make_detector(name, factories, **options), wrap)


def online_detector(name: str, params: dict[str, Any] | None = None) -> Detector:
    """``name`` built as the gateway's engine builds it (``online=True`` where accepted)."""
    return build_detector(name, params, online=True)


def _accepts(factory: Any, arg: str) -> bool:
    try:
        return arg in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


def score_online(
    values: Sequence[float] | np.ndarray, name: str, params: dict[str, Any] | None = None
) -> np.ndarray:
    """Scores of the online mode of detector ``name``, fed point by point."""
    det = online_detector(name, params)
    out = np.empty(len(values))
    for i, v in enumerate(values):
        out[i] = run_inline(det, float(v))
    return np.clip(out, 0.0, 1.0)


def read_series(path: str | Path) -> pd.DataFrame:
    frame = pd.read_csv(path)
    missing = {"timestamp", "value"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    frame["value"] = frame["value"].astype(float).ffill().fillna(0.0)
    return frame[["timestamp", "value"]]


def detect_cli(
    path: str,
    detector: str = "ensemble",
    out: str | None = None,
    *,
    online: bool = False,
    calibrate: bool | None = None,
) -> int:
    """``switchgear detect FILE.csv [--detector NAME] [--out FILE] [--online]
    [--calibrate | --no-calibrate]``; 0 on success. The online mode is calibrated, as in
    the gateway, unless ``calibrate`` is False; ``calibrate`` True calibrates the offline
    (NAB-mode) detector."""
    try:
        frame = read_series(path)
    except (OSError, ValueError) as exc:
        print(f"switchgear detect: {exc}", file=sys.stderr)
        return 2
    values = frame["value"].to_numpy()
    if online:
        params: dict[str, Any] = {} if calibrate is None else {"calibrate": calibrate}
        frame["anomaly_score"] = score_online(values, detector, params)
    elif calibrate:
        det = build_detector(detector, {"calibrate": True})
        frame["anomaly_score"] = score_series(values, None, det)
    else:
        frame["anomaly_score"] = score_series(values, frame["timestamp"], detector)
    if out is None:
        frame.to_csv(sys.stdout, index=False)
    else:
        frame.to_csv(out, index=False)
    return 0
