"""SIGTERM with a stream stuck on a stopped backend: the gateway exits within
``shutdown_grace`` plus the documented bound, and the stream gets an in-band error event."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from switchgear.proxy import keys
from switchgear.proxy.app import create_app
from switchgear.proxy.drain import SHUTDOWN_BOUND_S, drain_and_close
from switchgear.proxy.server import start
from switchgear.settings import parse_settings
from tests.hardening.conftest import ROOT, free_port, gateway_pm, wait_ready, write_config

GRACE = 2.0
CHAT = {"model": "m1", "messages": [{"role": "user", "content": "hi"}], "stream": True}


@pytest.fixture
def slow_upstream() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A streaming fake upstream in its own process (one chunk every 0.3 s), to SIGSTOP."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.hardening.upstream_process", str(port), "m1", "up", "0.3"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        yield f"http://127.0.0.1:{port}/v1", proc
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait(10)


async def _read_events(resp: aiohttp.ClientResponse, first: asyncio.Event) -> list[Any]:
    events: list[Any] = []
    try:
        async for line in resp.content:
            if line.startswith(b"data: ") and line.strip() != b"data: [DONE]":
                events.append(orjson.loads(line[6:]))
                first.set()
    except aiohttp.ClientPayloadError:
        pass  # cut after the error event: the client can tell the stream is incomplete
    return events


def _error_events(events: list[Any]) -> list[dict[str, Any]]:
    return [e["error"] for e in events if "error" in e]


async def test_sigterm_cuts_a_stuck_stream_in_band_within_the_bound(
    slow_upstream: Any, processes: Any, tmp_path: Path
) -> None:
    url, upstream = slow_upstream
    await wait_ready(url + "/models", upstream)
    port = free_port()
    cfg = write_config(
        tmp_path / "gw.yaml",
        {
            "listen": {"host": "127.0.0.1", "port": port},
            "backends": [{"model": "m1", "url": url}],
            "timeouts": {"idle": 120, "total": 600},
            "health_checks": {"enabled": False},
            "shutdown_grace": GRACE,
        },
    )
    gw = processes(["serve", "--config", str(cfg)], tmp_path, "gateway")
    base = f"http://127.0.0.1:{port}"
    await wait_ready(base + "/healthz", gw)
    async with aiohttp.ClientSession() as s, s.post(base + "/v1/chat/completions", json=CHAT) as r:
        assert r.status == 200
        first = asyncio.Event()
        reader = asyncio.create_task(_read_events(r, first))
        await asyncio.wait_for(first.wait(), 30)
        upstream.send_signal(signal.SIGSTOP)  # the backend stops mid-stream
        t0 = time.monotonic()
        gw.send_signal(signal.SIGTERM)
        rc = await asyncio.to_thread(gw.wait, GRACE + SHUTDOWN_BOUND_S + 10)
        elapsed = time.monotonic() - t0
        events = await asyncio.wait_for(reader, 10)
    assert rc == 0
    assert elapsed <= GRACE + SHUTDOWN_BOUND_S, elapsed
    assert elapsed >= GRACE * 0.9  # the stream was given its grace first
    errors = _error_events(events)
    assert len(errors) == 1 and errors[0]["code"] == "shutting_down"
    assert errors[0]["type"] == "server_error" and errors[0]["message"]
    assert "error" in events[-1]  # the error is the last thing the client saw
    log = (tmp_path / "gateway.log").read_text()
    assert "1 stream(s) got an error event" in log and "Traceback" not in log


async def test_streams_cut_at_shutdown_are_counted(slow_upstream: Any) -> None:
    url, upstream = slow_upstream
    await wait_ready(url + "/models", upstream)
    settings = parse_settings(
        {
            "backends": [{"model": "m1", "url": url}],
            "timeouts": {"idle": 120},
            "health_checks": {"enabled": False},
        }
    )
    app = create_app(settings, plugin_manager=gateway_pm())
    runner = await start(app, settings, host="127.0.0.1", port=0)
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    async with aiohttp.ClientSession() as s:
        responses = [await s.post(base + "/v1/chat/completions", json=CHAT) for _ in range(2)]
        firsts = [asyncio.Event() for _ in responses]
        readers = [
            asyncio.create_task(_read_events(r, f)) for r, f in zip(responses, firsts, strict=True)
        ]
        await asyncio.wait_for(asyncio.gather(*(f.wait() for f in firsts)), 30)
        upstream.send_signal(signal.SIGSTOP)
        took = await drain_and_close(runner, app[keys.DRAIN], 0.5)
        results = await asyncio.wait_for(asyncio.gather(*readers), 10)
        for r in responses:
            r.release()
    assert took <= 0.5 + SHUTDOWN_BOUND_S
    assert all(len(_error_events(events)) == 1 for events in results)
    text = app[keys.METRICS].render().decode()
    assert "switchgear_streams_cut_at_shutdown_total 2.0" in text
