"""NAB scoring against hand-computed values of the published method."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from switchgear.detector import nab

TS = pd.date_range("2024-01-01", periods=100, freq="5min").strftime("%Y-%m-%d %H:%M:%S")
WINDOW = [[f"{TS[40]}.000000", f"{TS[49]}.000000"]]


def sig(p: float) -> float:
    return 2.0 / (1.0 + math.exp(5.0 * p)) - 1.0


def tp(p: float) -> float:
    """NAB's sweeper divides a true positive by ``maxTP = sig(-1)``."""
    return sig(p) / sig(-1.0)


def corpus_with(detections: dict[int, float]) -> nab.Corpus:
    scores = np.zeros(100)
    for i, s in detections.items():
        scores[i] = s
    corpus = nab.Corpus()
    corpus.add(nab.file_rows(TS, scores, WINDOW))
    return corpus


def test_probation_is_15_percent_capped_at_750() -> None:
    assert nab.probation(100) == 15
    assert nab.probation(4032) == 604
    assert nab.probation(10_000) == 750


def test_scaled_sigmoid() -> None:
    assert nab.scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert nab.scaled_sigmoid(0.0) == 0.0
    # NAB's scaledSigmoid is -1 only beyond 3 (``> 3.0``); at 3 it is 2/(1+e^15) - 1
    assert nab.scaled_sigmoid(3.0) == pytest.approx(2.0 / (1.0 + math.exp(15.0)) - 1.0)
    assert nab.scaled_sigmoid(3.0) > -1.0
    assert nab.scaled_sigmoid(3.5) == -1.0


def test_null_detector_scores_zero_and_window_start_scores_100() -> None:
    null = nab.optimize(corpus_with({}), nab.PROFILES[0])
    assert null.score == pytest.approx(0.0)
    first = nab.optimize(corpus_with({40: 1.0}), nab.PROFILES[0])
    assert first.raw == pytest.approx(1.0)
    assert first.score == pytest.approx(100.0)
    assert (first.tp, first.fp, first.fn) == (1, 0, 0)


def test_only_the_earliest_detection_in_a_window_counts() -> None:
    r = nab.optimize(corpus_with({45: 0.9, 41: 0.8, 48: 0.95}), nab.PROFILES[0])
    assert r.raw == pytest.approx(tp(-(49 - 41 + 1) / 10))
    assert r.threshold == pytest.approx(0.8)


def test_false_positive_before_and_after_a_window() -> None:
    # before any window: costs fpWeight; after: weighted by the sigmoid of the distance
    standard, low_fp, _ = nab.PROFILES
    r = nab.optimize(corpus_with({40: 0.9, 20: 0.95}), standard)
    assert r.raw == pytest.approx(1.0 - 0.11)
    r = nab.optimize(corpus_with({40: 0.9, 55: 0.95}), low_fp)
    assert r.raw == pytest.approx(1.0 + 0.22 * sig(abs(49 - 55) / 9))
    assert r.fp == 1


def test_reward_low_fn_profile_normalises_with_its_own_null() -> None:
    r = nab.optimize(corpus_with({49: 1.0}), nab.PROFILES[2])
    assert r.score == pytest.approx(100 * (tp(-1 / 10) + 2) / 3)


def test_threshold_is_shared_across_files() -> None:
    corpus = corpus_with({40: 0.6})
    corpus.add(nab.file_rows(TS, np.where(np.arange(100) == 30, 0.7, 0.0), []))
    r = nab.optimize(corpus, nab.PROFILES[0])
    # including the 0.7 false positive costs 0.11; still worth it for the 0.6 detection
    assert r.threshold == pytest.approx(0.6)
    assert r.raw == pytest.approx(1.0 - 0.11)
