"""The leak rule: sustained growth restarts, a step or noise does not."""

from __future__ import annotations

import random

from switchgear.detector.leak import sustained_growth, theil_sen

MB = 2**20


def test_a_steady_leak_is_sustained_growth() -> None:
    rng = random.Random(0)
    leak = [500 * MB + 2 * MB * t + rng.uniform(-MB, MB) for t in range(60)]
    assert sustained_growth(leak, 1.0, 1 * MB)
    assert 1.9 * MB < theil_sen(leak) < 2.1 * MB


def test_a_step_and_noise_are_not() -> None:
    rng = random.Random(1)
    step = [500 * MB + (300 * MB if t >= 30 else 0) + rng.uniform(-MB, MB) for t in range(60)]
    assert not sustained_growth(step, 1.0, 1 * MB)
    noise = [500 * MB + rng.uniform(-20 * MB, 20 * MB) for _ in range(60)]
    assert not sustained_growth(noise, 1.0, 1 * MB)
    assert not sustained_growth([1.0, 2.0, 3.0], 1.0, 0.5)  # too few points


def test_the_shipped_window_restarts_a_leak_but_not_a_cache_filling_once() -> None:
    """60 points (``leak.window_s`` 60 s at 1 s): 5 MB/s growth is a leak; a cache that
    fills at 10 MB/s for 15 s (150 MB, shorter than a third of the window) is not, wherever
    the filling falls in the window."""
    rng = random.Random(2)
    leak = [400 * MB + 5 * MB * t + rng.uniform(-2 * MB, 2 * MB) for t in range(60)]
    assert sustained_growth(leak, 1.0, 1 * MB)
    for start in range(0, 46, 5):
        fill = [
            400 * MB + 10 * MB * min(15, max(0, t - start)) + rng.uniform(-2 * MB, 2 * MB)
            for t in range(60)
        ]
        assert not sustained_growth(fill, 1.0, 1 * MB), start
