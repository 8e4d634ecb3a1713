"""Edge limits of a real gateway process: one client's idle sockets cannot lock others out,
and slow-header, slow-body and idle kept-alive sockets are closed after their timeouts."""

from __future__ import annotations

import asyncio
import os
import resource
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.hardening.conftest import backends, free_port, wait_ready, write_config

FLOOD = 3000  # idle sockets held by one client: six times the cap
CAP = 500
TIMEOUT = 1.0  # header and body timeouts of the gateway under test
KEEPALIVE = 2.0
MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module", autouse=True)
def _enough_descriptors() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = FLOOD + 1024
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= want


@pytest.fixture
async def edge_gateway(upstream: Any, processes: Any, tmp_path: Path) -> AsyncIterator[Any]:
    up = await upstream("m1")
    port = free_port()
    cfg = write_config(
        tmp_path / "gw.yaml",
        {
            "listen": {"host": "127.0.0.1", "port": port},
            "backends": backends(up),
            "health_checks": {"enabled": False},
            "edge": {
                "max_connections": CAP,
                "header_timeout": TIMEOUT,
                "body_timeout": TIMEOUT,
                "keepalive_timeout": KEEPALIVE,
            },
        },
    )
    proc = processes(["serve", "--config", str(cfg)], tmp_path, "gateway")
    await wait_ready(f"http://127.0.0.1:{port}/healthz", proc)
    yield port, proc, tmp_path / "gateway.log"


async def _open(port: int) -> socket.socket | None:
    s = socket.socket()
    s.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(s, ("127.0.0.1", port))
    except OSError:
        s.close()
        return None
    return s


async def _until_closed(s: socket.socket, within: float) -> bytes:
    """Everything the server sent until it closed the connection (TimeoutError past ``within``)."""
    loop, got = asyncio.get_running_loop(), b""
    async with asyncio.timeout(within):
        while True:
            try:
                chunk = await loop.sock_recv(s, 65536)
            except ConnectionResetError:
                return got
            if not chunk:
                return got
            got += chunk


async def _chat(port: int) -> int:
    conn = aiohttp.TCPConnector(force_close=True)  # a new connection per request, as a new client
    async with aiohttp.ClientSession(connector=conn) as s:
        async with s.post(
            f"http://127.0.0.1:{port}/v1/chat/completions", json={"model": "m1", "messages": MSG}
        ) as r:
            await r.read()
            return r.status


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def test_an_idle_flood_does_not_lock_other_clients_out(edge_gateway: Any) -> None:
    port, proc, log = edge_gateway
    held: list[socket.socket] = []
    try:
        for _ in range(FLOOD // 250):  # bounded: FLOOD sockets in batches
            opened = await asyncio.gather(*(_open(port) for _ in range(250)))
            held += [s for s in opened if s is not None]
            assert await _chat(port) == 200  # answered while the flood grows
        assert len(held) >= FLOOD * 0.9
        statuses = [await _chat(port) for _ in range(20)]
        assert statuses == [200] * 20
        assert _fds(proc.pid) < CAP + 200  # the cap holds the gateway's descriptors
    finally:
        for s in held:
            s.close()
    text = log.read_text()
    assert "connection cap reached (edge.max_connections=500)" in text


async def test_slow_header_slow_body_and_idle_sockets_are_closed(edge_gateway: Any) -> None:
    port, _, _ = edge_gateway
    loop = asyncio.get_running_loop()
    silent, slow_head, slow_body, kept = [await _open(port) for _ in range(4)]
    assert silent and slow_head and slow_body and kept
    await loop.sock_sendall(slow_head, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n"
    )
    await loop.sock_sendall(slow_body, head + b'{"model": ')
    await loop.sock_sendall(kept, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    got = await asyncio.gather(
        *(_until_closed(s, 15) for s in (silent, slow_head, slow_body, kept))
    )
    for s in (silent, slow_head, slow_body, kept):
        s.close()
    for answer in got[:2]:  # no complete headers within header_timeout
        assert answer.startswith(b"HTTP/1.1 408 ") and b"request header not received" in answer
        assert b'"code":"request_timeout"' in answer
    assert got[2].startswith(b"HTTP/1.1 408 ") and b"request body not received" in got[2]
    # answered, then closed by the keep-alive idle timeout (not by "Connection: close")
    assert got[3].startswith(b"HTTP/1.1 200 ") and b"connection: close" not in got[3].lower()
