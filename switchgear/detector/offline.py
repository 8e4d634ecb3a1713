"""Offline scoring: a whole series through one detector, and ``switchgear detect``.

The output format is the Numenta Anomaly Benchmark's: ``timestamp,value,anomaly_score``,
one row per input row, computed causally (row t sees rows <= t only). Fits that the online
engine would run in an executor run inline here, at the same points of the stream.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from switchgear.detector.base import Detector, run_inline
from switchgear.detector.registry import make_detector


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


def read_series(path: str | Path) -> pd.DataFrame:
    frame = pd.read_csv(path)
    missing = {"timestamp", "value"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    frame["value"] = frame["value"].astype(float).ffill().fillna(0.0)
    return frame[["timestamp", "value"]]


def detect_cli(path: str, detector: str = "ensemble", out: str | None = None) -> int:
    """``switchgear detect FILE.csv [--detector NAME] [--out FILE]``; 0 on success."""
    try:
        frame = read_series(path)
    except (OSError, ValueError) as exc:
        print(f"switchgear detect: {exc}", file=sys.stderr)
        return 2
    frame["anomaly_score"] = score_series(frame["value"].to_numpy(), frame["timestamp"], detector)
    if out is None:
        frame.to_csv(sys.stdout, index=False)
    else:
        frame.to_csv(out, index=False)
    return 0
