"""The gateway process: TLS listener, SIGTERM drain under load within the grace period."""

from __future__ import annotations

import asyncio
import signal
import ssl
import subprocess
import time

import aiohttp
import orjson

from tests.fakes import Fault
from tests.hardening.conftest import backends, free_port, wait_ready, write_config

CHAT = {"model": "m1", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def self_signed(tmp) -> tuple[str, str]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)


async def test_tls_listener(upstream, gateway, tmp_path):
    cert, key = self_signed(tmp_path)
    up = await upstream("m1")
    gw = await gateway({"backends": backends(up), "listen": {"tls_cert": cert, "tls_key": key}})
    trust = ssl.create_default_context(cafile=cert)
    async with aiohttp.ClientSession() as s:
        url = f"https://127.0.0.1:{gw.port}/v1/chat/completions"
        async with s.post(url, json={**CHAT, "stream": False}, ssl=trust) as r:
            assert r.status == 200 and (await r.json())["choices"]
        try:
            async with s.get(f"http://127.0.0.1:{gw.port}/healthz") as r:
                assert r.status == 400  # plain HTTP on the TLS port is never served
        except aiohttp.ClientError:
            pass  # or the TLS layer hangs up


async def _stream(session: aiohttp.ClientSession, url: str) -> list[bytes]:
    out = []
    async with session.post(url, json=CHAT) as r:
        assert r.status == 200
        async for line in r.content:
            if line.startswith(b"data: "):
                out.append(line[6:].strip())
    return out


async def test_sigterm_drains_in_flight_streams_then_exits(upstream, processes, tmp_path):
    up = await upstream("m1", chunks=8)
    up.always = Fault(chunk_delay=0.15)  # ~1 s a stream
    port = free_port()
    cfg = write_config(
        tmp_path / "gw.yaml",
        {
            "listen": {"host": "127.0.0.1", "port": port},
            "backends": backends(up),
            "shutdown_grace": 20,
        },
    )
    proc = processes(["serve", "--config", str(cfg)], tmp_path, "gateway")
    base = f"http://127.0.0.1:{port}"
    await wait_ready(base + "/healthz", proc)
    async with aiohttp.ClientSession() as s:
        streams = [asyncio.create_task(_stream(s, base + "/v1/chat/completions")) for _ in range(8)]
        await up.wait_requests(8)  # all eight are in flight upstream
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        results = await asyncio.gather(*streams)
    for events in results:
        assert events[-1] == b"[DONE]" and len(events) == 9  # every stream finished whole
        assert not any(b'"error"' in e for e in events)
    rc = await asyncio.to_thread(proc.wait, 20)
    assert rc == 0 and time.monotonic() - t0 < 20
    async with aiohttp.ClientSession() as s:  # and it no longer accepts connections
        try:
            async with s.get(base + "/healthz") as r:
                raise AssertionError(f"still serving: {r.status}")
        except aiohttp.ClientConnectorError:
            pass


async def test_sigterm_with_a_stuck_stream_exits_within_the_grace(upstream, processes, tmp_path):
    up = await upstream("m1", chunks=4)
    up.always = Fault(stall_after=1)
    port = free_port()
    cfg = write_config(
        tmp_path / "gw.yaml",
        {
            "listen": {"host": "127.0.0.1", "port": port},
            "backends": backends(up),
            "timeouts": {"idle": 120},
            "shutdown_grace": 1.0,
        },
    )
    proc = processes(["serve", "--config", str(cfg)], tmp_path, "gateway")
    base = f"http://127.0.0.1:{port}"
    await wait_ready(base + "/healthz", proc)
    async with aiohttp.ClientSession() as s:
        task = asyncio.create_task(_stream(s, base + "/v1/chat/completions"))
        await up.wait_requests(1)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.to_thread(proc.wait, 15)
        elapsed = time.monotonic() - t0
        try:
            events = await task
        except aiohttp.ClientPayloadError:
            events = []  # the connection was cut: the client can tell it is incomplete
    assert rc == 0 and elapsed < 6, elapsed
    assert b"[DONE]" not in events
    assert all(
        orjson.loads(e).get("choices") is not None or "error" in orjson.loads(e) for e in events
    )
