"""``switchgear up``: run a model worker and the gateway in front of it, for the demo.

Both run as child processes (the same commands an operator would run); this module only
waits for each to be ready, prints how to call the gateway, and stops both on Ctrl-C or
SIGTERM (terminate, then kill after a grace period).

``--gateway-port`` / ``--worker-port`` override ``listen.port`` of either config; a gateway
backend that pointed at the worker's configured address follows the worker to its new port
(through a derived copy of the gateway config in a temporary directory). Both ports are
bound once before anything starts: a port another process holds is refused with a message
that names it, instead of announcing "up" in front of someone else's server.
"""

from __future__ import annotations

import errno
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from switchgear.settings import load_settings
from switchgear.settings.base import read_yaml

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


class PortInUse(RuntimeError):
    pass


def check_port(host: str, port: int, what: str, flag: str) -> None:
    """Bind ``host:port`` once, as the server will; PortInUse when another process holds it."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                raise PortInUse(
                    f"the {what} port {port} on {host} is already in use "
                    f"({exc.strerror}); choose another with {flag}"
                ) from None
            raise


def _follow_worker(data: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """Gateway config data whose backends at the worker's old ``host:port`` now use ``new``."""
    backends = []
    for b in data.get("backends") or []:
        url = b.get("url") if isinstance(b, dict) else None
        if isinstance(url, str) and urlsplit(url).netloc == old:
            b = {**b, "url": urlunsplit(urlsplit(url)._replace(netloc=new))}
        backends.append(b)
    return {**data, "backends": backends} if backends else data


def up(
    worker_config: str,
    gateway_config: str,
    gateway_port: int | None = None,
    worker_port: int | None = None,
) -> int:
    with tempfile.TemporaryDirectory(prefix="switchgear-up-") as tmp:
        try:
            return _up(worker_config, gateway_config, gateway_port, worker_port, Path(tmp))
        except PortInUse as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1


def _up(
    worker_config: str,
    gateway_config: str,
    gateway_port: int | None,
    worker_port: int | None,
    tmp: Path,
) -> int:
    configured = load_settings(worker_config)
    worker = load_settings(worker_config, **{"listen.port": worker_port})
    gateway = load_settings(gateway_config, **{"listen.port": gateway_port})
    if worker_port is not None and worker_port != configured.listen.port:
        old = f"{configured.listen.host}:{configured.listen.port}"
        new = f"{worker.listen.host}:{worker.listen.port}"
        derived = tmp / "gateway.yaml"
        derived.write_text(yaml.safe_dump(_follow_worker(read_yaml(gateway_config), old, new)))
        gateway_config = str(derived)
        gateway = load_settings(gateway_config, **{"listen.port": gateway_port})
    if (worker.listen.host, worker.listen.port) == (gateway.listen.host, gateway.listen.port):
        raise PortInUse(
            f"the gateway and the worker would both listen on port {worker.listen.port}; "
            "choose another with --gateway-port or --worker-port"
        )
    check_port(worker.listen.host, worker.listen.port, "worker", "--worker-port")
    check_port(gateway.listen.host, gateway.listen.port, "gateway", "--gateway-port")
    w_url = f"http://{worker.listen.host}:{worker.listen.port}"
    g_url = f"http://{gateway.listen.host}:{gateway.listen.port}"
    cmd = [sys.executable, "-m", "switchgear.cli"]
    w_args = ["--port", str(worker.listen.port)]
    g_args = ["--port", str(gateway.listen.port)]
    procs: list[subprocess.Popen[bytes]] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        print(f"starting worker on {w_url} ({worker_config})", flush=True)
        procs.append(subprocess.Popen([*cmd, "worker", "--config", worker_config, *w_args]))
        _wait_ready(f"{w_url}/health", procs[0], "worker", READY_TIMEOUT_S)
        print(f"starting gateway on {g_url} ({gateway_config})", flush=True)
        procs.append(subprocess.Popen([*cmd, "serve", "--config", gateway_config, *g_args]))
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
