"""NAB scoring as published (Lavin & Ahmad 2015; NAB v1.1 ``sweeper.py``), importable by bench.

Per file: the first 15% of rows (at most 750) is probationary and not scored. A row inside
an anomaly window at relative position ``p = -(right - i + 1) / width`` (from -1 at the
window's start towards 0 at its end) is worth ``tpWeight * sigma(p) / sigma(-1)`` (so a
detection on a window's first row earns exactly ``tpWeight``, as NAB's sweeper divides by
``maxTP``); only the best (the earliest) detection of a window counts, a window with none
costs ``fnWeight``. A detection
outside any window costs ``fpWeight * sigma(p)`` with ``p = |i - right_prev| / (width_prev -
1)`` after a window (so detections just after a window cost less) and ``fpWeight`` before
any window. ``sigma(p) = 2 / (1 + e^{5p}) - 1`` for p <= 3, else -1 (NAB's
``scaledSigmoid`` tests ``p > 3.0``). The threshold is one value for the whole corpus,
swept over every distinct score per profile; the normalised score is ``100 * (raw - null) /
(perfect - null)``. As in NAB, a window none of whose rows is scored (it lies inside the
probationary period) takes no part in the raw score: ``null``, the null detector's best
score, is ``-fnWeight * scored windows``, while ``perfect`` is ``tpWeight`` times every
window of the labels (``runner.normalize`` counts the label file's windows).
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
    scored: int = -1  # windows with at least one scored row (-1: all of them)


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
    scored: int = 0

    def add(self, rows: FileRows) -> None:
        self.scores.append(rows.scores)
        self.sigma.append(rows.sigma)
        self.window.append(np.where(rows.window >= 0, rows.window + self.windows, -1))
        self.windows += rows.windows
        self.scored += rows.windows if rows.scored < 0 else rows.scored

    def extend(self, other: Corpus) -> None:
        for s, g, w in zip(other.scores, other.sigma, other.window, strict=True):
            self.scores.append(s)
            self.sigma.append(g)
            self.window.append(np.where(w >= 0, w + self.windows, -1))
        self.windows += other.windows
        self.scored += other.scored

    def null(self, profile: Profile) -> float:
        """The null detector's score (it never fires): every scored window missed."""
        return -profile.fn * self.scored

    def perfect(self, profile: Profile) -> float:
        return profile.tp * self.windows

    def normalise(self, raw: float, profile: Profile) -> float:
        """NAB's normalised score of a raw score (nan for a corpus without windows)."""
        null, perfect = self.null(profile), self.perfect(profile)
        return 100.0 * (raw - null) / (perfect - null) if perfect != null else math.nan


def scaled_sigmoid(p: float) -> float:
    return -1.0 if p > 3.0 else 2.0 / (1.0 + math.exp(5.0 * p)) - 1.0


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
    scored = len({int(w) for w in window[keep] if w >= 0})
    return FileRows(
        np.asarray(scores, dtype=float)[keep], sigma[keep], window[keep], len(limits), scored
    )


def optimize(corpus: Corpus, profile: Profile) -> ProfileResult:
    """Sweep every distinct score as the threshold (detection = score >= threshold)."""
    scores = np.concatenate(corpus.scores)
    sigma = np.concatenate(corpus.sigma)
    window = np.concatenate(corpus.window)
    order = np.argsort(-scores, kind="stable")
    scores, sigma, window = scores[order], sigma[order], window[order]
    best_tp = np.full(corpus.windows, np.nan)
    total = corpus.null(profile)
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
    score = corpus.normalise(raw, profile)
    return ProfileResult(
        profile.name,
        0.0 if math.isnan(score) else score,
        threshold,
        raw,
        tps,
        fps,
        corpus.scored - tps,
    )


def score_at(corpus: Corpus, profile: Profile, threshold: float) -> ProfileResult:
    """The corpus scored at a given threshold (one chosen elsewhere: held-out scoring)."""
    scores = np.concatenate(corpus.scores) if corpus.scores else np.zeros(0)
    sigma = np.concatenate(corpus.sigma) if corpus.sigma else np.zeros(0)
    window = np.concatenate(corpus.window) if corpus.window else np.zeros(0, dtype=np.int64)
    hit = scores >= threshold
    outside = hit & (window < 0)
    raw = corpus.null(profile) + profile.fp * float(np.sum(sigma[outside]))
    best = np.full(corpus.windows, -np.inf)
    inside = hit & (window >= 0)
    np.maximum.at(best, window[inside], profile.tp * sigma[inside])
    found = np.isfinite(best)
    raw += float(np.sum(best[found] + profile.fn))
    tps = int(np.sum(found))
    score = corpus.normalise(raw, profile)
    return ProfileResult(
        profile.name, score, threshold, raw, tps, int(np.sum(outside)), corpus.scored - tps
    )


def score_corpus(
    corpus: Corpus, profiles: Sequence[Profile] = PROFILES
) -> dict[str, ProfileResult]:
    return {p.name: optimize(corpus, p) for p in profiles}


def load_labels(root: Path) -> Mapping[str, list[list[str]]]:
    with open(root / "labels" / "combined_windows.json", encoding="utf-8") as fh:
        labels: dict[str, list[list[str]]] = json.load(fh)
    return labels
