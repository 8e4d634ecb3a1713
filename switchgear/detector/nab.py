"""NAB scoring as published (Lavin & Ahmad 2015; NAB v1.1 ``sweeper.py``), importable by bench.

Per file: the first 15% of rows (at most 750) is probationary and not scored. A row inside
an anomaly window at relative position ``p = -(right - i + 1) / width`` (from -1 at the
window's start towards 0 at its end) is worth ``tpWeight * sigma(p) / sigma(-1)`` (so a
detection on a window's first row earns exactly ``tpWeight``, as NAB's sweeper divides by
``maxTP``); only the best (the earliest) detection of a window counts, a window with none
costs ``fnWeight``. A detection
outside any window costs ``fpWeight * sigma(p)`` with ``p = |i - right_prev| / (width_prev -
1)`` after a window (so detections just after a window cost less) and ``fpWeight`` before
any window. ``sigma(p) = 2 / (1 + e^{5p}) - 1`` for p < 3, else -1. The threshold is one
value for the whole corpus, swept over every distinct score per profile; the normalised
score is ``100 * (raw - null) / (perfect - null)`` with ``null = -fnWeight * windows`` and
``perfect = tpWeight * windows``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    tp: float
    fp: float
    fn: float
    tn: float = 1.0


PROFILES: tuple[Profile, ...] = (
    Profile("standard", 1.0, 0.11, 1.0),
    Profile("reward_low_FP_rate", 1.0, 0.22, 1.0),
    Profile("reward_low_FN_rate", 1.0, 0.11, 2.0),
)


@dataclass(frozen=True, slots=True)
class FileRows:
    """The scored rows of one file: scores, unweighted sigmoid value and window index (-1 = none)."""

    scores: np.ndarray
    sigma: np.ndarray
    window: np.ndarray
    windows: int


@dataclass(frozen=True, slots=True)
class ProfileResult:
    profile: str
    score: float
    threshold: float
    raw: float
    tp: int
    fp: int
    fn: int


@dataclass
class Corpus:
    """All files' scored rows; window ids are made unique across files."""

    scores: list[np.ndarray] = field(default_factory=list)
    sigma: list[np.ndarray] = field(default_factory=list)
    window: list[np.ndarray] = field(default_factory=list)
    windows: int = 0

    def add(self, rows: FileRows) -> None:
        self.scores.append(rows.scores)
        self.sigma.append(rows.sigma)
        self.window.append(np.where(rows.window >= 0, rows.window + self.windows, -1))
        self.windows += rows.windows


def scaled_sigmoid(p: float) -> float:
    return -1.0 if p >= 3.0 else 2.0 / (1.0 + math.exp(5.0 * p)) - 1.0


# NAB's sweeper scales true positives by 1 / sigma(-1), so the earliest row is worth tpWeight
MAX_TP = scaled_sigmoid(-1.0)


def probation(n: int) -> int:
    return min(int(math.floor(0.15 * n)), 750)


def file_rows(
    timestamps: Sequence[str] | pd.Series, scores: np.ndarray, windows: Sequence[Sequence[str]]
) -> FileRows:
    """Label one file's rows from its windows (timestamps as in the data file)."""
    ts = pd.to_datetime(pd.Series(list(timestamps)))
    n = len(ts)
    limits = []
    for start, end in windows:
        lo = int(np.searchsorted(ts.values, np.datetime64(pd.Timestamp(start))))
        hi = int(np.searchsorted(ts.values, np.datetime64(pd.Timestamp(end)), side="right")) - 1
        limits.append((lo, hi))
    sigma = np.empty(n)
    window = np.full(n, -1, dtype=np.int64)
    prev: tuple[int, int] | None = None
    w = 0
    for i in range(n):
        if w < len(limits) and i > limits[w][1]:
            prev = limits[w]
            w += 1
        if w < len(limits) and limits[w][0] <= i <= limits[w][1]:
            lo, hi = limits[w]
            sigma[i] = scaled_sigmoid(-(hi - i + 1) / (hi - lo + 1)) / MAX_TP
            window[i] = w
        elif prev is None:
            sigma[i] = -1.0
        else:
            lo, hi = prev
            sigma[i] = scaled_sigmoid(abs(hi - i) / max(hi - lo, 1))
    keep = slice(probation(n), n)
    return FileRows(np.asarray(scores, dtype=float)[keep], sigma[keep], window[keep], len(limits))


def optimize(corpus: Corpus, profile: Profile) -> ProfileResult:
    """Sweep every distinct score as the threshold (detection = score >= threshold)."""
    scores = np.concatenate(corpus.scores)
    sigma = np.concatenate(corpus.sigma)
    window = np.concatenate(corpus.window)
    order = np.argsort(-scores, kind="stable")
    scores, sigma, window = scores[order], sigma[order], window[order]
    best_tp = np.full(corpus.windows, np.nan)
    total = -profile.fn * corpus.windows
    best = (total, math.inf, 0, 0)
    tp = fp = 0
    n = len(scores)
    i = 0
    while i < n:
        j = i
        while j < n and scores[j] == scores[i]:
            w = window[j]
            if w < 0:
                total += profile.fp * sigma[j]
                fp += 1
            else:
                value = profile.tp * sigma[j]
                old = best_tp[w]
                if math.isnan(old):
                    total += profile.fn + value
                    best_tp[w] = value
                    tp += 1
                elif value > old:
                    total += value - old
                    best_tp[w] = value
            j += 1
        if total > best[0]:
            best = (total, float(scores[i]), tp, fp)
        i = j
    raw, threshold, tps, fps = best
    null = -profile.fn * corpus.windows
    perfect = profile.tp * corpus.windows
    score = 100.0 * (raw - null) / (perfect - null) if perfect != null else 0.0
    return ProfileResult(profile.name, score, threshold, raw, tps, fps, corpus.windows - tps)


def score_corpus(
    corpus: Corpus, profiles: Sequence[Profile] = PROFILES
) -> dict[str, ProfileResult]:
    return {p.name: optimize(corpus, p) for p in profiles}


def load_labels(root: Path) -> Mapping[str, list[list[str]]]:
    with open(root / "labels" / "combined_windows.json", encoding="utf-8") as fh:
        labels: dict[str, list[list[str]]] = json.load(fh)
    return labels
