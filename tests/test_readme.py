"""The README's commands and examples, run as a user would run them.

``switchgear up`` (what ``make run`` runs) starts a tiny-model worker and the gateway, prints
how to call it; the curl command it prints and the README's openai example both get a real
generation; SIGTERM stops both processes.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def readme_python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def _lines(proc: subprocess.Popen[str]) -> queue.Queue[str | None]:
    q: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            q.put(line)
        q.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return q


def _read_until(q: queue.Queue[str | None], marker: str, timeout: float) -> str:
    out: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        line = q.get(timeout=max(0.01, deadline - time.monotonic()))
        if line is None:
            raise AssertionError("switchgear up exited early:\n" + "".join(out))
        out.append(line)
        if marker in line:
            return "".join(out)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_switchgear_up_prints_usage_and_readme_examples_work(tmp_path: Path) -> None:
    from switchgear.worker.tiny import TinySpec, make_tiny

    model = make_tiny(tmp_path / "tiny", TinySpec(seed=0))
    w_port, g_port = free_port(), free_port()
    worker_cfg = yaml.safe_load((ROOT / "config" / "worker.yaml").read_text())
    worker_cfg["listen"]["port"] = w_port
    worker_cfg["worker"]["model"]["model_name_or_path"] = str(model)
    worker_cfg["worker"]["torch_threads"] = 1
    gateway_cfg = yaml.safe_load((ROOT / "config" / "gateway.yaml").read_text())
    gateway_cfg["listen"]["port"] = g_port
    gateway_cfg["backends"][0]["url"] = f"http://127.0.0.1:{w_port}/v1"
    (tmp_path / "worker.yaml").write_text(yaml.safe_dump(worker_cfg))
    (tmp_path / "gateway.yaml").write_text(yaml.safe_dump(gateway_cfg))

    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "switchgear.cli",
            "--log-level",
            "WARNING",
            "up",
            "--worker",
            str(tmp_path / "worker.yaml"),
            "--gateway",
            str(tmp_path / "gateway.yaml"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    ) as proc:
        _exercise(proc, g_port)
    assert proc.returncode == 0
    assert not _port_open(w_port) and not _port_open(g_port), "children still listening"


def _exercise(proc: subprocess.Popen[str], g_port: int) -> None:
    try:
        banner = _read_until(_lines(proc), "Ctrl-C stops", timeout=180)
        url = f"http://127.0.0.1:{g_port}"
        assert f"OpenAI endpoint : {url}/v1" in banner and "tiny" in banner
        assert f"dashboard       : {url}/dashboard" in banner

        curl = re.search(r"(curl -s .*?)\n\n", banner, flags=re.S)
        assert curl is not None, banner
        done = subprocess.run(
            ["bash", "-c", curl.group(1)], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0 and '"chat.completion"' in done.stdout, (
            done.stdout + done.stderr
        )
        answer = json.loads(done.stdout)
        # The banner's request samples (temperature 1): the tiny model may pick its EOS early.
        choice, used = answer["choices"][0], answer["usage"]["completion_tokens"]
        assert choice["finish_reason"] in ("stop", "length"), answer
        assert used <= 16 and (choice["finish_reason"] == "stop" or used == 16), answer

        blocks = readme_python_blocks()
        assert blocks, "README has no python example"
        for block in blocks:
            code = block.replace("http://127.0.0.1:8080", url)
            run = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
            )
            assert run.returncode == 0, run.stderr
            assert run.stdout.strip(), "the example printed nothing"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
