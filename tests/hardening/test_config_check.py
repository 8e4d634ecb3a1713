"""``config check`` and ``serve`` report every problem of a config at once, each naming its
key; backends are identified by (model, URL), so one URL may serve many models."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from switchgear.cli import main
from switchgear.discovery.static import backends_from_settings
from switchgear.settings import parse_settings
from tests.fakes import FakeUpstream
from tests.hardening.conftest import ROOT, free_port

BROKEN: dict[str, Any] = {
    "backends": [
        {"model": "m1", "url": "http://127.0.0.1:9001/v1"},
        {"model": "m1", "url": "http://127.0.0.1:9001/v1"},  # the same backend twice
        {"model": "m2", "url": "http://127.0.0.1:9002/v1", "id": "twin"},
        {"model": "m3", "url": "http://127.0.0.1:9003/v1", "id": "twin"},
        {"model": "m4", "url": "http://127.0.0.1:9004/v1", "protocol": "smoke-signals"},
    ],
    "models": {
        "m1": {"fallback": ["nowhere"]},
        "m2": {"fallback": ["m3"]},
        "m3": {"fallback": ["m2"]},
    },
    "router": {"rules": [{"match": {"language": "zh"}, "model": "ghost"}], "default": "phantom"},
    "detector": {"detectors": {"*": "baseline", "ttft": "crystal-ball"}},
    "worker": {"model": {"model_name_or_path": "models/tiny", "quantization": "int3"}},
}

EXPECTED_KEYS = [
    "backends[1]",
    "backends[3].id",
    "backends[4].protocol",
    "models.m1.fallback[0]",
    "models.m2.fallback",
    "router.rules[0].model",
    "router.default",
    "detector.detectors.ttft",
    "worker.model.quantization",
]


def test_config_check_reports_every_problem_naming_its_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(BROKEN))
    assert main(["config", "check", str(path)]) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    for key in EXPECTED_KEYS:
        assert any(ln.startswith(f"error: {key}: ") for ln in lines), (key, err)
    assert len(lines) == len(EXPECTED_KEYS), err
    assert "fallback cycle: m2 -> m3 -> m2" in err
    assert "backends[1]" in err and "backends[0]" in err  # both entries of the duplicate
    assert "backends[2]" in err  # the first owner of the id 'twin'
    assert "'int3'" in err and "'crystal-ball'" in err and "'smoke-signals'" in err
    assert "Traceback" not in err


def test_every_schema_error_is_reported_not_only_the_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "schema.yaml"
    path.write_text(
        yaml.safe_dump({"listen": {"port": -1}, "workers": 0, "edge": {"header_timeout": 0}})
    )
    assert main(["config", "check", str(path)]) == 2
    err = capsys.readouterr().err
    for key in ("listen.port", "workers", "edge.header_timeout"):
        assert f"error: {key}: " in err, err


def test_serve_refuses_the_same_problems_at_start(tmp_path: Path) -> None:
    data = {**BROKEN, "listen": {"host": "127.0.0.1", "port": free_port()}}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data))
    proc = subprocess.run(
        [sys.executable, "-m", "switchgear.cli", "serve", "--config", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    for key in EXPECTED_KEYS:
        assert f"{key}: " in proc.stderr, (key, proc.stderr)
    assert "Traceback" not in proc.stderr


def test_eighteen_models_on_one_url_are_eighteen_backends(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "http://127.0.0.1:9001/v1"
    data = {"backends": [{"model": f"lora-{i}", "url": url} for i in range(18)]}
    backends = backends_from_settings(parse_settings(data).backends)
    assert len(backends) == 18 and len({b.id for b in backends}) == 18
    assert {b.model for b in backends} == {f"lora-{i}" for i in range(18)}
    path = tmp_path / "lora.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["config", "check", str(path)]) == 0
    assert "static backends: 18;" in capsys.readouterr().out


async def test_models_sharing_a_url_are_all_routed(
    gateway: Any, http: aiohttp.ClientSession
) -> None:
    async with FakeUpstream("shared") as up:
        backends = [{"model": f"m{i}", "url": up.url} for i in range(3)]
        gw = await gateway({"backends": backends})
        async with http.get(gw.url + "/v1/models") as r:
            listed = {m["id"] for m in (await r.json())["data"]}
        assert {"m0", "m1", "m2"} <= listed
        replies = await asyncio.gather(
            *(
                http.post(
                    gw.url + "/v1/chat/completions",
                    json={"model": f"m{i}", "messages": [{"role": "user", "content": "hi"}]},
                )
                for i in range(3)
            )
        )
        assert [r.status for r in replies] == [200, 200, 200]
        for r in replies:
            r.release()
        assert sorted(req.body["model"] for req in up.requests) == ["m0", "m1", "m2"]
