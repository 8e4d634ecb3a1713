"""``switchgear up`` takes its ports from the command line and refuses ports others hold."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from switchgear.launcher import _follow_worker
from tests.hardening.conftest import ROOT, free_port
from tests.test_readme import _lines, _read_until


def _configs(tmp: Path, model: str, w_port: int, g_port: int) -> tuple[Path, Path]:
    worker = yaml.safe_load((ROOT / "config" / "worker.yaml").read_text())
    worker["listen"]["port"] = w_port
    worker["worker"]["model"]["model_name_or_path"] = model
    worker["worker"]["torch_threads"] = 1
    gateway = yaml.safe_load((ROOT / "config" / "gateway.yaml").read_text())
    gateway["listen"]["port"] = g_port
    gateway["backends"][0]["url"] = f"http://127.0.0.1:{w_port}/v1"
    (tmp / "worker.yaml").write_text(yaml.safe_dump(worker))
    (tmp / "gateway.yaml").write_text(yaml.safe_dump(gateway))
    return tmp / "worker.yaml", tmp / "gateway.yaml"


@pytest.fixture
def held() -> Iterator[socket.socket]:
    """A port another process listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s


def _up(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "switchgear.cli", "--log-level", "WARNING", "up", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("which", "flag"), [("gateway", "--gateway-port"), ("worker", "--worker-port")]
)
def test_up_refuses_a_port_in_use(
    tmp_path: Path, held: socket.socket, which: str, flag: str
) -> None:
    port = held.getsockname()[1]
    other = free_port()
    w, g = _configs(tmp_path, "models/does-not-matter", other, free_port())
    done = _up("--worker", str(w), "--gateway", str(g), flag, str(port))
    assert done.returncode == 1
    assert f"the {which} port {port} on 127.0.0.1 is already in use" in done.stderr
    assert flag in done.stderr and "switchgear is up" not in done.stdout
    assert "starting" not in done.stdout  # refused before any child started
    assert "Traceback" not in done.stderr


def test_the_gateway_follows_the_worker_to_its_new_port() -> None:
    data = {
        "backends": [
            {"model": "tiny", "url": "http://127.0.0.1:9001/v1"},
            {"model": "x", "url": "http://10.0.0.5:9001/v1"},
        ]
    }
    moved = _follow_worker(data, "127.0.0.1:9001", "127.0.0.1:9555")
    assert [b["url"] for b in moved["backends"]] == [
        "http://127.0.0.1:9555/v1",
        "http://10.0.0.5:9001/v1",
    ]


def test_up_serves_on_the_ports_given(tmp_path: Path) -> None:
    from switchgear.worker.tiny import TinySpec, make_tiny

    model = make_tiny(tmp_path / "tiny", TinySpec(seed=0))
    w, g = _configs(tmp_path, str(model), free_port(), free_port())
    w_port, g_port = free_port(), free_port()
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "switchgear.cli",
            "--log-level",
            "WARNING",
            "up",
            "--worker",
            str(w),
            "--gateway",
            str(g),
            "--worker-port",
            str(w_port),
            "--gateway-port",
            str(g_port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    ) as proc:
        try:
            banner = _read_until(_lines(proc), "Ctrl-C stops", timeout=180)
            assert f"OpenAI endpoint : http://127.0.0.1:{g_port}/v1" in banner
            with urllib.request.urlopen(f"http://127.0.0.1:{w_port}/health", timeout=10) as r:
                assert r.status == 200
            body = json.dumps(
                {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
            ).encode()
            req = urllib.request.Request(
                f"http://127.0.0.1:{g_port}/v1/chat/completions",
                data=body,
                headers={"content-type": "application/json"},
            )
            with urllib.request.urlopen(req, timeout=60) as r:  # routed to the moved worker
                assert json.load(r)["object"] == "chat.completion"
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    assert proc.returncode == 0
