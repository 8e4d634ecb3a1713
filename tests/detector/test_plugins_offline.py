"""The built-in detector, policy and scaler plugins, and ``switchgear detect``."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from switchgear import hookimpl
from switchgear.cli import main
from switchgear.default_plugins.scaler import LocalScaler
from switchgear.detector.baseline import Baseline
from switchgear.detector.registry import detector_factories, make_detector
from switchgear.discovery.base import Registry
from switchgear.errors import ConfigError
from switchgear.plugins.manager import call_hook, first_result, make_plugin_manager
from switchgear.types import ScaleRequest
from tests.detector.test_policy import EJECTING, FakeGateway, event

BUILTINS = (
    "switchgear.default_plugins.detectors",
    "switchgear.default_plugins.policy",
    "switchgear.default_plugins.scaler",
)


class Constant:
    name = "baseline"

    def update(self, value: float) -> float:
        return 0.25

    def fit_task(self) -> None:
        return None

    def install(self, fitted: object) -> None:
        return None

    def contributions(self) -> dict[str, float]:
        return {"constant": 0.25}


class ThirdParty:
    @hookimpl
    def register_detectors(self, register):  # type: ignore[no-untyped-def]
        register("baseline", Constant)
        register("constant", Constant)


def test_hook_register_detectors() -> None:
    pm = make_plugin_manager(load_entrypoints=False, builtins=BUILTINS)
    factories = detector_factories(pm)
    assert {"baseline", "stl", "lstm", "ensemble"} <= set(factories)
    assert isinstance(make_detector("baseline", factories), Baseline)
    pm.register(ThirdParty(), name="third")  # a third party overrides a built-in name
    factories = detector_factories(pm)
    assert isinstance(factories["baseline"](), Constant) and "constant" in factories
    with pytest.raises(ConfigError, match="unknown detector 'nope'"):
        make_detector("nope", factories)


async def test_hook_on_anomaly() -> None:
    pm = make_plugin_manager(load_entrypoints=False, builtins=BUILTINS)
    gw = FakeGateway({"m": ["a", "b"]})
    gw.policy_settings = EJECTING  # type: ignore[attr-defined]  # events eject (not the default)
    results = await call_hook(pm, "on_anomaly", event=event("a"), gateway=gw)
    assert [[a.kind for a in r] for r in results] == [["eject"]]
    # the policy's state lives with the gateway: a second event on it is not re-ejected
    assert await call_hook(pm, "on_anomaly", event=event("a"), gateway=gw) == []


async def test_hook_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    pm = make_plugin_manager(load_entrypoints=False, builtins=BUILTINS)
    request = ScaleRequest("m", replicas=2, current=0, reason="test")
    assert await first_result(pm, "scale", request=request) is None  # not configured
    # a worker stand-in: answers GET /health with 200 until terminated
    scaler = LocalScaler({"*": [sys.executable, "-c", HEALTH_SERVER, "{port}"]})
    pm.register(scaler, name="local-scaler")
    registry = Registry()
    scaler.registry = registry
    try:
        up = await first_result(pm, "scale", request=request)
        assert up.replicas == 2 and up.started == ("scaler-m-0", "scaler-m-1")
        ports = {p.port for p in scaler.procs["m"]}
        assert len(ports) == 2
        assert {b.id for b in registry.backends("m")} == {"scaler-m-0", "scaler-m-1"}
        again = ScaleRequest("m", 2, 2, "restart:scaler-m-0")
        restarted = await first_result(pm, "scale", request=again)
        assert restarted.stopped == ("scaler-m-0",) and restarted.started == ("scaler-m-2",)
        down = await first_result(pm, "scale", request=ScaleRequest("m", 1, 2, "idle"))
        assert down.replicas == 1 and down.stopped == ("scaler-m-2",)
        assert [b.id for b in registry.backends("m")] == ["scaler-m-1"]
    finally:
        await scaler.close()
    assert scaler.procs["m"] == [] and registry.backends("m") == ()


HEALTH_SERVER = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def test_detect_cli_writes_nab_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(1)
    values = 10 + rng.normal(0, 1, 800)
    values[700:] += 10
    ts = pd.date_range("2024-01-01", periods=800, freq="5min").strftime("%Y-%m-%d %H:%M:%S")
    src = tmp_path / "series.csv"
    pd.DataFrame({"timestamp": ts, "value": values}).to_csv(src, index=False)
    out = tmp_path / "scored.csv"
    assert main(["detect", str(src), "--detector", "baseline", "--out", str(out)]) == 0
    scored = pd.read_csv(out)
    assert list(scored.columns) == ["timestamp", "value", "anomaly_score"]
    assert len(scored) == 800 and scored["timestamp"].tolist() == list(ts)
    assert scored["anomaly_score"].between(0, 1).all()
    assert scored["anomaly_score"][700:720].max() >= 0.5
    assert main(["detect", str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv" in capsys.readouterr().err


def test_detect_cli_online_calibrated(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    values = 10 + rng.normal(0, 1, 600)
    values[500:] += 10
    ts = pd.date_range("2024-01-01", periods=600, freq="5min").strftime("%Y-%m-%d %H:%M:%S")
    src = tmp_path / "series.csv"
    pd.DataFrame({"timestamp": ts, "value": values}).to_csv(src, index=False)
    outs = {}
    for flags in (["--online", "--no-calibrate"], ["--online"]):
        out = tmp_path / f"scored{len(flags)}.csv"
        argv = ["detect", str(src), "--detector", "baseline", "--out", str(out), *flags]
        assert main(argv) == 0
        scored = pd.read_csv(out)
        assert scored["timestamp"].tolist() == list(ts)
        assert scored["anomaly_score"].between(0, 1).all()
        outs[len(flags)] = scored["anomaly_score"].to_numpy()
    # the online mode alerts on every point of an anomaly, not once; calibrated (its
    # default), a +10 sigma shift stands out against the series' own history at once
    assert outs[1][500:505].max() >= 0.5
    assert outs[1][:500].max() < 0.5
    assert not np.array_equal(outs[1], outs[2])
