"""NAB's scorer on cases worked out by hand from NAB v1.1 (``sweeper.py``, ``runner.py``).

Every expected figure below is written as the arithmetic of the published definition:
``sigma(p) = 2 / (1 + e^{5p}) - 1``; a true positive at relative position ``p`` in its
window is worth ``tpWeight * sigma(p) / sigma(-1)``; a false positive ``fpWeight * sigma(|i -
right| / (width - 1))`` after a window, ``-fpWeight`` before any; a miss ``-fnWeight``; the
first 15% of rows (at most 750) are not scored; normalised ``100 (raw - null) / (perfect -
null)``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from switchgear.detector import nab

STANDARD, LOW_FP, LOW_FN = nab.PROFILES
TS = pd.date_range("2024-01-01", periods=100, freq="5min").strftime("%Y-%m-%d %H:%M:%S")


def window(lo: int, hi: int) -> list[str]:
    return [f"{TS[lo]}.000000", f"{TS[hi]}.000000"]


def corpus(detections: dict[int, float], windows: list[list[str]]) -> nab.Corpus:
    scores = np.zeros(100)
    for i, s in detections.items():
        scores[i] = s
    c = nab.Corpus()
    c.add(nab.file_rows(TS, scores, windows))
    return c


def test_standard_profile_weights() -> None:
    assert (STANDARD.tp, STANDARD.fp, STANDARD.fn) == (1.0, 0.11, 1.0)
    assert (LOW_FP.tp, LOW_FP.fp, LOW_FP.fn) == (1.0, 0.22, 1.0)
    assert (LOW_FN.tp, LOW_FN.fp, LOW_FN.fn) == (1.0, 0.11, 2.0)


def test_threshold_sweep_worked_example() -> None:
    # window rows 40..49 (width 10); probation = floor(0.15 * 100) = 15 rows
    # row 10 (score 0.9) is probationary: ignored at every threshold
    # row 43 (0.8): p = -(49 - 43 + 1) / 10 = -0.7
    # row 60 (0.7): after the window, p = |49 - 60| / (10 - 1) = 11 / 9
    c = corpus({10: 0.9, 43: 0.8, 60: 0.7}, [window(40, 49)])
    tp = (2 / (1 + math.exp(-3.5)) - 1) / (2 / (1 + math.exp(-5.0)) - 1)
    fp = 0.11 * (2 / (1 + math.exp(5 * 11 / 9)) - 1)
    assert tp == pytest.approx(0.954148, abs=1e-6)
    # threshold 0.9: -1 (missed); 0.8: tp; 0.7: tp + fp (fp < 0); 0.0: every row detected
    r = nab.optimize(c, STANDARD)
    assert r.threshold == 0.8
    assert r.raw == pytest.approx(tp)
    assert r.score == pytest.approx(100 * (tp + 1) / 2)
    assert (r.tp, r.fp, r.fn) == (1, 0, 0)
    at = nab.score_at(c, STANDARD, 0.7)
    assert at.raw == pytest.approx(tp + fp)
    assert at.fp == 1
    # every row at or above 0.0: the window's first row (worth 1) and 25 + 50 false
    # positives after the probation: rows 15..39 cost 0.11 each, rows 50..99 by distance
    everything = nab.score_at(c, STANDARD, 0.0)
    after = sum(0.11 * nab.scaled_sigmoid(abs(49 - i) / 9) for i in range(50, 100))
    assert everything.raw == pytest.approx(1.0 - 25 * 0.11 + after)


def test_window_inside_the_probation_is_not_scored() -> None:
    # NAB: a window with no scored row never enters the score parts (so the null detector
    # scores -1 per *scored* window), while perfect counts every window of the labels
    c = corpus({40: 1.0}, [window(5, 10), window(40, 49)])
    assert (c.windows, c.scored) == (2, 1)
    r = nab.optimize(c, STANDARD)
    assert r.raw == pytest.approx(1.0)
    assert r.score == pytest.approx(100 * (1.0 + 1.0) / (2.0 + 1.0))
    assert nab.optimize(corpus({}, [window(5, 10), window(40, 49)]), STANDARD).score == 0.0


def test_window_straddling_the_probation_keeps_its_full_width() -> None:
    # rows 10..19; probation ends at row 15, so the earliest scored row is 15:
    # p = -(19 - 15 + 1) / 10 = -0.5
    c = corpus({15: 1.0}, [window(10, 19)])
    expected = (2 / (1 + math.exp(-2.5)) - 1) / (2 / (1 + math.exp(-5.0)) - 1)
    assert nab.optimize(c, STANDARD).raw == pytest.approx(expected)


def test_false_positive_three_widths_after_a_window() -> None:
    # window 40..49: row 76 is at p = 27 / 9 = 3 (still on the sigmoid), row 77 beyond (-1)
    c76 = corpus({40: 0.9, 76: 0.5}, [window(40, 49)])
    c77 = corpus({40: 0.9, 77: 0.5}, [window(40, 49)])
    assert nab.score_at(c76, STANDARD, 0.5).raw == pytest.approx(
        1.0 + 0.11 * (2 / (1 + math.exp(15.0)) - 1)
    )
    assert nab.score_at(c77, STANDARD, 0.5).raw == pytest.approx(1.0 - 0.11)


def test_score_at_agrees_with_the_sweep() -> None:
    rng = np.random.default_rng(3)
    c = nab.Corpus()
    for _ in range(3):
        c.add(nab.file_rows(TS, rng.random(100), [window(30, 39), window(70, 79)]))
    for profile in nab.PROFILES:
        r = nab.optimize(c, profile)
        at = nab.score_at(c, profile, r.threshold)
        assert at.raw == pytest.approx(r.raw)
        assert at.score == pytest.approx(r.score)
        assert (at.tp, at.fp) == (r.tp, r.fp)


def test_corpus_without_windows_has_no_normalised_score() -> None:
    c = corpus({50: 0.9}, [])
    r = nab.score_at(c, STANDARD, 0.5)
    assert r.raw == pytest.approx(-0.11)
    assert math.isnan(r.score)
    pooled = nab.Corpus()
    pooled.extend(c)
    pooled.extend(corpus({40: 0.9}, [window(40, 49)]))
    assert nab.score_at(pooled, STANDARD, 0.5).score == pytest.approx(100 * (1 - 0.11 + 1) / 2)
