"""Configuration files and the ``switchgear serve`` process (one worker and several)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from switchgear.proxy.app import create_app
from switchgear.proxy.server import start
from switchgear.settings import load_settings
from tests.helpers import free_port, poll_until

MINIMAL = """\
listen: {host: 127.0.0.1, port: 8080}
backends: [{model: m1, url: "http://127.0.0.1:9001/v1"}, {model: m1, url: "http://127.0.0.1:9002/v1"}]
"""
MSG = [{"role": "user", "content": "hi"}]
SWITCHGEAR = [str(Path(sys.executable).with_name("switchgear"))]


def test_minimal_file_parses(tmp_path):
    f = tmp_path / "gw.yaml"
    f.write_text(MINIMAL)
    s = load_settings(f)
    assert (s.listen.host, s.listen.port, s.workers) == ("127.0.0.1", 8080, 1)
    assert [b.url for b in s.backends] == ["http://127.0.0.1:9001/v1", "http://127.0.0.1:9002/v1"]
    over = load_settings(f, **{"listen.host": "0.0.0.0", "listen.port": 9999})
    assert (over.listen.host, over.listen.port) == ("0.0.0.0", 9999)


async def test_minimal_file_serves_with_default_plugins(tmp_path, upstream):
    a, b = await upstream("m1", name="a"), await upstream("m1", name="b")
    f = tmp_path / "gw.yaml"
    f.write_text(MINIMAL.replace("9001", str(a.port)).replace("9002", str(b.port)))
    settings = load_settings(f)
    runner = await start(create_app(settings), settings, host="127.0.0.1", port=0)
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        async with aiohttp.ClientSession() as http:
            for _ in range(6):
                async with http.post(
                    url + "/v1/chat/completions", json={"model": "m1", "messages": MSG}
                ) as r:
                    assert r.status == 200
            async with http.get(url + "/v1/models") as r:
                data = (await r.json())["data"]
        assert [m["id"] for m in data] == ["m1", "auto"] and data[0]["switchgear"]["backends"] == 2
        assert data[1]["switchgear"] == {"alias": True, "routing": True}
        assert a.requests and b.requests
    finally:
        await runner.cleanup()


def test_env_substitution_for_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("BACKEND_KEY", "sk-secret")
    f = tmp_path / "gw.yaml"
    f.write_text('backends: [{model: m1, url: "http://h/v1", api_key: "${BACKEND_KEY}"}]\n')
    assert load_settings(f).backends[0].api_key == "sk-secret"


async def _wait_healthy(
    url: str, proc: subprocess.Popen, log: Path, deadline_s: float = 30.0
) -> dict:
    async def healthy(http: aiohttp.ClientSession) -> dict | None:
        assert proc.poll() is None, log.read_text()  # noqa: ASYNC240 (only on failure)
        try:
            async with http.get(url + "/healthz") as r:
                if r.status == 200:
                    return await r.json()
        except aiohttp.ClientConnectionError:
            pass
        return None

    async with aiohttp.ClientSession() as http:
        body: dict = await poll_until(
            lambda: healthy(http), deadline_s, "gateway healthy", interval=0.05
        )
        return body


def _stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=15)


def _spawn(cfg: Path, port: int, log: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    with log.open("wb") as err:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [*SWITCHGEAR, "serve", "--config", str(cfg), "--port", str(port), *extra],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )


@pytest.mark.slow
async def test_serve_subprocess_answers_healthz_and_stops_on_sigterm(tmp_path):
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(MINIMAL)
    port = free_port()
    log = tmp_path / "serve.log"
    proc = _spawn(cfg, port, log)
    try:
        body = await _wait_healthy(f"http://127.0.0.1:{port}", proc, log)
        assert body["status"] == "ok" and body["pid"] == proc.pid
    finally:
        assert _stop(proc) == 0


@pytest.mark.slow
async def test_serve_with_two_workers_shares_the_port(tmp_path):
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(MINIMAL)
    port = free_port()
    log = tmp_path / "serve.log"
    proc = _spawn(cfg, port, log, "--workers", "2")
    url = f"http://127.0.0.1:{port}"
    try:
        pids = {(await _wait_healthy(url, proc, log))["pid"]}
        deadline = time.monotonic() + 30
        while len(pids) < 2:  # new connections spread over both SO_REUSEPORT listeners
            assert time.monotonic() < deadline, f"only saw {pids}"
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True)
            ) as http:
                try:
                    async with http.get(url + "/healthz") as r:
                        pids.add((await r.json())["pid"])
                except aiohttp.ClientConnectionError:
                    pass  # the second worker may still be starting
        assert proc.pid not in pids
    finally:
        assert _stop(proc) == 0


async def test_shutdown_drains_in_flight_requests(upstream, gateway):
    from tests.fakes import Fault

    up = await upstream("m1")
    up.always = Fault(first_delay=0.3)
    gw = await gateway(
        {"backends": [{"model": "m1", "url": up.url}], "shutdown_grace": 5, "timeouts": {"ttft": 5}}
    )
    async with aiohttp.ClientSession() as http:
        req = asyncio.create_task(
            http.post(gw.url + "/v1/chat/completions", json={"model": "m1", "messages": MSG})
        )
        await up.wait_requests(1)
        await gw.runner.cleanup()  # what SIGTERM triggers
        resp = await req
        assert resp.status == 200 and (await resp.json())["choices"]
        resp.release()
