"""Fixtures of the hardening tests: the gateway fixtures of tests/proxy, plus subprocess helpers.

Subprocesses (gateways, workers) are started with ``python -m switchgear`` on free loopback
ports and waited for through their readiness endpoint, never with sleeps.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.helpers import free_port, poll_until
from tests.proxy.conftest import backends, gateway, gateway_pm, upstream

__all__ = ["backends", "free_port", "gateway", "gateway_pm", "upstream"]

ROOT = Path(__file__).resolve().parents[2]


async def wait_ready(url: str, proc: subprocess.Popen[bytes], within: float = 60.0) -> None:
    """Until ``url`` answers 200 (the process must stay alive meanwhile)."""

    async def ready(session: aiohttp.ClientSession) -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before it was ready")
        try:
            async with session.get(url) as r:
                return r.status == 200
        except aiohttp.ClientError:
            return False

    # the outer timeout also bounds a request that hangs (a process that accepts, never answers)
    async with asyncio.timeout(within + 5), aiohttp.ClientSession() as session:
        await poll_until(lambda: ready(session), within, f"{url} ready", interval=0.05)


def spawn(args: list[str], tmp: Path, name: str, **env: str) -> subprocess.Popen[bytes]:
    log = open(tmp / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "switchgear.cli", *args],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
    )
    log.close()
    return proc


@pytest.fixture
def processes() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """``processes(args, tmp, name)`` spawns ``python -m switchgear.cli ARGS``; all are killed after."""
    made: list[subprocess.Popen[bytes]] = []

    def start(args: list[str], tmp: Path, name: str, **env: str) -> subprocess.Popen[bytes]:
        proc = spawn(args, tmp, name, **env)
        made.append(proc)
        return proc

    yield start
    for proc in made:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path
