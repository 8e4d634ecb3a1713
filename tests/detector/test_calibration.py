"""Calibrated scores: the same threshold means the same tail probability on every series."""

from __future__ import annotations

import numpy as np
import pytest

from switchgear.default_plugins import detectors as builtin
from switchgear.detector.base import run_inline
from switchgear.detector.calibration import Calibrated, Calibrator, calibrated
from switchgear.detector.engine import DetectorEngine
from switchgear.detector.events import SeriesKey
from switchgear.detector.offline import score_online
from switchgear.detector.registry import detector_factories
from switchgear.settings.detector import DetectorSettings

N = 4000


def calibrate(raws: np.ndarray, **options: float) -> np.ndarray:
    cal = Calibrator(**options)  # type: ignore[arg-type]
    return np.array([cal.update(float(r)) for r in raws])


def online(values: np.ndarray, calibrate: bool) -> np.ndarray:
    return score_online(values, "baseline", {"calibrate": calibrate})


def test_scores_depend_on_ranks_only() -> None:
    # conformal ranks and the exponential tail's excess-over-scale are unchanged by any
    # increasing affine map: the same raw stream at another scale scores identically
    raws = np.random.default_rng(0).exponential(1.0, N)
    a, b = calibrate(raws), calibrate(1000.0 * raws + 5.0)
    assert np.allclose(a, b, rtol=0.0, atol=1e-9)
    assert np.array_equal(a > 0.3, b > 0.3)


def test_iid_noise_of_different_scales_and_shapes_scores_alike() -> None:
    rng = np.random.default_rng(1)
    series = [
        rng.normal(0.0, 0.01, N),
        5e4 + rng.normal(0.0, 300.0, N),
        rng.laplace(10.0, 2.0, N),
        rng.uniform(0.0, 1.0, N),
    ]
    scores = [online(v, calibrate=True)[500:] for v in series]
    for threshold in (0.2, 0.35):
        rates = [float(np.mean(s >= threshold)) for s in scores]
        # nominal: p <= floor ** threshold, i.e. at most 6.3% at 0.2 and 0.8% at 0.35
        nominal = 1e-6**threshold
        assert max(rates) <= 1.5 * nominal
        assert max(rates) - min(rates) <= 0.5 * nominal
    grid = np.linspace(0.0, 1.0, 101)
    cdfs = [np.searchsorted(np.sort(s), grid, side="right") / len(s) for s in scores]
    assert max(float(np.max(np.abs(a - b))) for a in cdfs for b in cdfs) < 0.06


def test_uncalibrated_online_scores_depend_on_the_noise_shape() -> None:
    # the reason for calibration: the online likelihood stage is far from distribution-free
    rng = np.random.default_rng(2)
    gauss = online(rng.normal(0.0, 1.0, N), calibrate=False)[500:]
    heavy = online(rng.standard_t(2, N), calibrate=False)[500:]
    cal_gauss = online(rng.normal(0.0, 1.0, N), calibrate=True)[500:]
    cal_heavy = online(rng.standard_t(2, N), calibrate=True)[500:]
    raw_gap = abs(np.mean(gauss >= 0.5) - np.mean(heavy >= 0.5))
    cal_gap = abs(np.mean(cal_gauss >= 0.5) - np.mean(cal_heavy >= 0.5))
    assert cal_gap < raw_gap


def test_calibrated_detector_still_catches_a_level_shift() -> None:
    values = np.random.default_rng(3).normal(100.0, 1.0, 1500)
    values[1200:] += 10.0
    scores = online(values, calibrate=True)
    assert scores[:1200][200:].max() < 0.7
    assert scores[1200:1205].max() >= 0.7


def test_warmup_and_bounds() -> None:
    cal = Calibrator(warmup=50, min_history=50)
    out = [cal.update(float(x)) for x in np.random.default_rng(4).random(300)]
    assert out[:100] == [0.0] * 100 and max(out[100:]) > 0
    assert all(0.0 <= s <= 1.0 for s in out)
    with pytest.raises(ValueError, match="floor"):
        Calibrator(floor=0.0)


def test_the_online_mode_is_calibrated_unless_switched_off() -> None:
    assert isinstance(builtin.baseline(online=True), Calibrated)
    ens = builtin.ensemble(online=True)
    assert isinstance(ens, Calibrated)
    # the members' raw surprises are combined; only the ensemble's score is calibrated
    assert not any(isinstance(m, Calibrated) for m in ens.inner.members.values())
    assert not isinstance(builtin.baseline(online=True, calibrate=False), Calibrated)
    assert not isinstance(builtin.baseline(), Calibrated)  # NAB mode: opt-in
    assert isinstance(builtin.baseline(calibrate=True), Calibrated)
    det = builtin.stl(online=True, calibrate={"window": 200})
    assert isinstance(det, Calibrated) and det.name == "stl"
    assert det.calibrator._raws.window == 200
    assert calibrated(det.inner, False) is det.inner


def test_gateway_engine_builds_the_calibrated_detector_from_settings() -> None:
    settings = DetectorSettings(
        detectors={"*": "baseline"}, params={"baseline": {"calibrate": {"warmup": 20}}}
    )
    engine = DetectorEngine(settings, detector_factories())
    det = engine._detector(SeriesKey("b1", "m", "latency_p95"))
    assert isinstance(det, Calibrated)
    plain = DetectorEngine(DetectorSettings(), detector_factories())
    assert isinstance(plain._detector(SeriesKey("b1", "m", "latency_p95")), Calibrated)
    off = DetectorSettings(detectors={"*": "baseline"}, params={"baseline": {"calibrate": False}})
    raw = DetectorEngine(off, detector_factories())
    assert not isinstance(raw._detector(SeriesKey("b1", "m", "latency_p95")), Calibrated)
    # ``switchgear detect --online`` scores exactly what the engine's detector scores
    values = np.random.default_rng(5).normal(1.0, 0.1, 400)
    values[300] = 5.0
    ours = [run_inline(det, float(v)) for v in values]
    assert np.allclose(ours, score_online(values, "baseline", {"calibrate": {"warmup": 20}}))


def test_a_detector_without_the_calibrate_parameter_is_wrapped() -> None:
    values = np.random.default_rng(6).normal(5.0, 1.0, 400)
    scores = score_online(values, "zscore", {"calibrate": {"warmup": 10, "min_history": 10}})
    assert scores[:20].max() == 0.0 and 0.0 < scores.max() <= 1.0
