"""``switchgear up``: run a model worker and the gateway in front of it, for the demo.

Both run as child processes (the same commands an operator would run); this module only
waits for each to be ready, prints how to call the gateway, and stops both on Ctrl-C or
SIGTERM (terminate, then kill after a grace period).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from types import FrameType

from switchgear.settings import load_settings

READY_TIMEOUT_S = 300.0


def _wait_ready(url: str, proc: subprocess.Popen[bytes], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)  # polling a child process's readiness; nothing to wait on instead
    raise RuntimeError(f"{what} was not ready at {url} within {timeout:.0f}s")


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + 15
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()


def up(worker_config: str, gateway_config: str) -> int:
    worker = load_settings(worker_config)
    gateway = load_settings(gateway_config)
    w_url = f"http://{worker.listen.host}:{worker.listen.port}"
    g_url = f"http://{gateway.listen.host}:{gateway.listen.port}"
    cmd = [sys.executable, "-m", "switchgear.cli"]
    procs: list[subprocess.Popen[bytes]] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        print(f"starting worker on {w_url} ({worker_config})", flush=True)
        procs.append(subprocess.Popen([*cmd, "worker", "--config", worker_config]))
        _wait_ready(f"{w_url}/health", procs[0], "worker", READY_TIMEOUT_S)
        print(f"starting gateway on {g_url} ({gateway_config})", flush=True)
        procs.append(subprocess.Popen([*cmd, "serve", "--config", gateway_config]))
        _wait_ready(f"{g_url}/readyz", procs[1], "gateway", 60)
        _print_usage(g_url, gateway)
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)  # supervising children; exits when either stops
        print("a child process exited; stopping", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        _stop(procs)


def _print_usage(g_url: str, gateway: object) -> None:
    try:
        with urllib.request.urlopen(f"{g_url}/v1/models", timeout=5) as resp:
            models = [m["id"] for m in json.load(resp)["data"]]
    except (urllib.error.URLError, OSError, KeyError, ValueError):
        models = []
    model = models[0] if models else "tiny"
    print(
        f"""
switchgear is up.
  OpenAI endpoint : {g_url}/v1   (models: {", ".join(models) or "-"})
  dashboard       : {g_url}/dashboard
  metrics         : {g_url}/metrics

Call it with curl:
  curl -s {g_url}/v1/chat/completions -H 'content-type: application/json' \\
    -d '{{"model": "{model}", "messages": [{{"role": "user", "content": "hello"}}], "max_tokens": 16}}'

or with the openai SDK:
  from openai import OpenAI
  client = OpenAI(base_url="{g_url}/v1", api_key="unused")
  print(client.chat.completions.create(model="{model}", max_tokens=16,
        messages=[{{"role": "user", "content": "hello"}}]).choices[0].message.content)

Ctrl-C stops both processes.""",
        flush=True,
    )
