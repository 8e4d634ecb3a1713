"""Each detector finds planted anomalies and stays quiet on clean series.

Series are seeded (see ``synthetic.py``): 1,200 points, anomalies planted at point 900.
"Found" means the score reaches 0.5 (the default event threshold) within 100 points of
the anomaly's start. "Quiet" means the false-alarm rate — the fraction of points after a
300-point warm-up scoring at or above 0.5 — is at most ``FALSE_ALARM_RATE`` (1%) on every
clean series (noisy, heavy-tailed, seasonal, very noisy seasonal). The baseline has no notion of season, so it is asserted on the non-seasonal anomalies;
STL, the LSTM and the ensemble are asserted on seasonal ones too (there the spike is a
5-point burst: every detector's likelihood stage averages the last 10 raw scores, so a
single point inside a seasonal swing is diluted — and an event needs 3 ticks anyway).
"""

from __future__ import annotations

import numpy as np
import pytest

from switchgear.default_plugins.detectors import baseline, ensemble, lstm, stl
from switchgear.detector.offline import score_series
from tests.detector.synthetic import AT, anomaly_cases, clean_cases

THRESHOLD = 0.5
FALSE_ALARM_RATE = 0.01
WARMUP = 300
# small enough for the test budget: a few seconds per series on one core
SMALL_LSTM = dict(
    window=20, hidden=16, epochs=2, train_on=400, refit_every=300, min_train=200, max_samples=256
)

MAKERS = {
    "baseline": baseline,
    "stl": stl,
    "lstm": lambda: lstm(**SMALL_LSTM),
    "ensemble": lambda: ensemble(members={"baseline": {}, "stl": {}, "lstm": SMALL_LSTM}),
}
EXPECTED = {
    "baseline": {"level_shift", "spike", "drift", "variance_change"},
    "lstm": {c.name for c in anomaly_cases()},
    "stl": {c.name for c in anomaly_cases()},
    "ensemble": {c.name for c in anomaly_cases()},
}
ANOMALIES = {c.name: c for c in anomaly_cases()}


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_quiet_on_clean_series(name: str) -> None:
    for case in clean_cases():
        scores = score_series(case.values, None, MAKERS[name]())
        assert scores.min() >= 0.0 and scores.max() <= 1.0
        rate = float(np.mean(scores[WARMUP:] >= THRESHOLD))
        assert rate <= FALSE_ALARM_RATE, f"{name} on {case.name}: false-alarm rate {rate:.4f}"


@pytest.mark.parametrize(
    ("name", "case"), [(n, c) for n in sorted(MAKERS) for c in sorted(EXPECTED[n])]
)
def test_finds_planted_anomaly(name: str, case: str) -> None:
    scores = score_series(ANOMALIES[case].values, None, MAKERS[name]())
    assert scores[AT : AT + 100].max() >= THRESHOLD, f"{name} missed {case}"


def test_ensemble_weights_follow_forecast_skill() -> None:
    """On a seasonal series the season-aware member forecasts better and weighs more."""
    det = ensemble(members={"baseline": {}, "stl": {}})
    seasonal = next(c for c in clean_cases() if c.name == "seasonal")
    score_series(seasonal.values, None, det)
    assert det.mae["stl"] < 0.5 * det.mae["baseline"]


def test_red_zone_is_damped_within_the_averaging_window() -> None:
    from switchgear.detector.likelihood import Likelihood

    rng = np.random.default_rng(0)
    lik = Likelihood(short=10)  # a one-point surprise stands out of a 10-point mean
    for r in rng.uniform(0.0, 0.1, 400):
        lik.update(float(r))
    assert lik.update(1.0) >= THRESHOLD  # a first surprise alerts
    for r in rng.uniform(0.0, 0.1, 4):
        lik.update(float(r))
    assert lik.update(1.0) < THRESHOLD  # the same surprise 5 points later does not


def test_season_is_modelled_once_the_window_holds_two_cycles() -> None:
    """A 100-point season seen 2.5 times: found by default (STL needs two cycles), not when
    three are required; and a flattened cycle (the season missing, no value out of range)
    then scores above the threshold only with the season modelled."""
    from switchgear.detector.statistical import Statistical, fit_model

    rng = np.random.default_rng(3)
    t = np.arange(250)
    y = 10.0 + 5.0 * np.sin(2 * np.pi * t / 100) + rng.normal(0.0, 0.3, len(t))
    assert len(fit_model(y, len(y), 8, 0.3).season) == 100
    assert len(fit_model(y, len(y), 8, 0.3, cycles=3).season) == 0
    with pytest.raises(ValueError):
        Statistical(cycles=1)

    t = np.arange(450)
    y = 10.0 + 5.0 * np.sin(2 * np.pi * t / 100) + rng.normal(0.0, 0.3, len(t))
    y[330:380] = 10.0 + rng.normal(0.0, 0.3, 50)  # the season stops for half a cycle
    found = score_series(y, None, stl(likelihood={"warmup": 200}))
    missed = score_series(y, None, stl(cycles=3, likelihood={"warmup": 200}))
    assert found[200:330].max() < THRESHOLD <= found[330:380].max()
    assert missed[330:380].max() < found[330:380].max()
