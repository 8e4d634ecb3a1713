"""The built-in detectors in their gateway ("online") mode, through the default event rule.

A backend turning slower must open an event with the default settings within a few ticks,
and clean latency series must open none (asserted false-event rate: 0 events over 5 × 2,000
clean points per detector). The NAB-tuned mode damps repeated alerts and scores new maxima,
which suits NAB's one-alert-per-window scoring but would keep events from opening online;
the gateway's engine asks every factory that accepts it for ``online=True``.
"""

from __future__ import annotations

import numpy as np
import pytest

from switchgear.detector.base import run_inline
from switchgear.detector.engine import DetectorEngine
from switchgear.detector.events import Hysteresis, SeriesKey
from switchgear.detector.registry import make_detector
from switchgear.settings.detector import DetectorSettings, EventSettings
from switchgear.types import Observation

KEY = SeriesKey("b1", "m", "latency_p95")
NAMES = ["baseline", "stl", "ensemble"]


def _opened(name: str, values: np.ndarray) -> list[int]:
    ev = EventSettings()
    h = Hysteresis(
        open_score=ev.open_score,
        close_score=ev.close_score,
        open_after=ev.open_after,
        close_after=ev.close_after,
    )
    detector = make_detector(name, online=True)
    opened = []
    for i, v in enumerate(values):
        e = h.observe(KEY, run_inline(detector, float(v)), float(i))
        if e is not None and e.open:
            opened.append(i)
    return opened


def _latency(seed: int, n: int) -> np.ndarray:
    # request latency around 50 ms, lognormal, as a p95 series looks at 1 s resolution
    return 0.05 * np.random.default_rng(seed).lognormal(0.0, 0.15, n)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("factor", [2.0, 10.0])
def test_a_persistent_slowdown_opens_an_event_within_ten_ticks(name: str, factor: float) -> None:
    values = _latency(0, 900)
    values[600:] *= factor
    opened = _opened(name, values)
    assert opened, f"{name}: no event for a {factor}x slowdown"
    assert 600 <= opened[0] <= 610, f"{name}: event at {opened[0]}, slowdown at 600"


@pytest.mark.parametrize("name", NAMES)
def test_clean_latency_opens_no_event(name: str) -> None:
    for seed in range(1, 6):
        assert _opened(name, _latency(seed, 2000)) == [], f"{name}: false event, seed {seed}"


async def test_engine_passes_online_to_factories_that_accept_it() -> None:
    seen: dict[str, dict[str, object]] = {}

    def with_online(*, online: bool = False, **params: object) -> object:
        seen["with"] = {"online": online, **params}
        return make_detector("baseline", online=online)

    def without(**params: object) -> object:
        seen["without"] = dict(params)
        return make_detector("baseline")

    settings = DetectorSettings.model_validate(
        {"enabled": True, "detectors": {"latency_p95": "a", "*": "b"}}
    )
    engine = DetectorEngine(settings, {"a": with_online, "b": without}, on_event=lambda e: None)
    engine.observe(
        Observation(backend_id="b1", model="m", datacenter="dc1", status=200, latency_s=0.05)
    )
    await engine.tick()
    await engine.aclose()
    assert seen.get("with", {}).get("online") is True
    assert "online" not in seen.get("without", {})
