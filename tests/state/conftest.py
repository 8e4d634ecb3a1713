"""Fixtures of the shared-state tests: a real ``redis-server`` and real gateway processes.

``redis_server`` runs Debian's ``redis-server`` on a free loopback port with no persistence
(``--save '' --appendonly no``), waits until it answers PING and stops it after the test;
``stop()`` and ``start()`` take it down and bring it back on the same port (outage tests).
``gateways`` spawns ``python -m switchgear.cli serve`` processes and waits for ``/healthz``.
Every wait polls a condition against a deadline; nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
import yaml

from tests.conftest import free_port
from tests.consul_double import Clock, ConsulCluster, ListeningAgent
from tests.helpers import seconds_until
from tests.proxy.conftest import backends, gateway, gateway_pm, upstream

__all__ = ["backends", "gateway", "gateway_pm", "upstream"]

ROOT = Path(__file__).resolve().parents[2]
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


BODY = {"model": "m1", "messages": [{"role": "user", "content": "hi"}]}


async def until(predicate: Callable[[], Awaitable[bool]], within: float, what: str) -> float:
    """Poll ``predicate`` until true; returns the seconds it took (fails past ``within``)."""
    return await seconds_until(predicate, within, what)


async def value(v: bool) -> bool:
    """``v`` as an awaitable, for :func:`until` on a condition of in-process state."""
    return v


@dataclass
class RedisServer:
    port: int
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)

    def start(self) -> RedisServer:
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        out = self.log.open("ab") if self.log is not None else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        finally:  # the child holds its own copy; ours is closed even when the start fails
            if self.log is not None:
                out.close()  # type: ignore[union-attr]
        deadline = time.monotonic() + 10
        with self.client() as c:
            while True:
                assert self.proc.poll() is None, "redis-server exited at start"
                try:
                    if c.ping():
                        return self
                except redis.ConnectionError:
                    pass
                assert time.monotonic() < deadline, "redis-server did not answer PING"
                time.sleep(0.01)  # polling interval of a readiness loop

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), log=tmp_path / "redis.log").start()
    yield server
    server.stop()


@dataclass
class GatewayProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    pids: set[int] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")


async def wait_healthy(gw: GatewayProcess, within: float = 60.0) -> None:
    async with aiohttp.ClientSession() as session:

        async def up() -> bool:
            assert gw.proc.poll() is None, gw.output()
            try:
                async with session.get(gw.url + "/healthz") as r:
                    if r.status == 200:
                        gw.pids.add((await r.json())["pid"])
                        return True
            except aiohttp.ClientError:
                pass
            return False

        await until(up, within, "gateway healthy")


GatewayStarter = Callable[..., Awaitable[GatewayProcess]]


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """``python -m switchgear.cli ARGS`` in its own process group (killed whole after)."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "switchgear.cli", *args],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONWARNINGS": "ignore"},
            start_new_session=True,
        )


@pytest.fixture
async def gateways(tmp_path: Path) -> AsyncIterator[GatewayStarter]:
    """``await gateways(config, workers=1)``: a gateway process on a free port, killed after."""
    made: list[GatewayProcess] = []

    async def start(config: dict[str, Any], *, workers: int = 1) -> GatewayProcess:
        n = len(made)
        cfg = tmp_path / f"gw{n}.yaml"
        cfg.write_text(yaml.safe_dump(config))
        port, log = free_port(), tmp_path / f"gw{n}.log"
        args = ["serve", "--config", str(cfg), "--port", str(port), "--workers", str(workers)]
        gw = GatewayProcess(_spawn(args, log), port, log)
        made.append(gw)
        await wait_healthy(gw)
        return gw

    yield start
    for gw in made:
        if gw.proc.poll() is None:
            os.killpg(gw.proc.pid, signal.SIGKILL)
        gw.proc.wait(timeout=10)


ADMIN = {"Authorization": "Bearer adm-test"}


async def backend_row(s: aiohttp.ClientSession, url: str, backend_id: str = "a") -> dict[str, Any]:
    """The gateway's ``/admin/backends`` row of ``backend_id``."""
    async with s.get(url + "/admin/backends", headers=ADMIN) as r:
        assert r.status == 200
        rows = (await r.json())["data"]
    return next(row for row in rows if row["id"] == backend_id)


async def gauge(s: aiohttp.ClientSession, url: str, name: str) -> float | None:
    """The value of the unlabelled metric ``name`` on the gateway's ``/metrics``."""
    async with s.get(url + "/metrics") as r:
        for line in (await r.text()).splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None


@contextlib.asynccontextmanager
async def traffic(
    s: aiohttp.ClientSession, gws: Sequence[GatewayProcess]
) -> AsyncIterator[list[int]]:
    """Four loops of chat requests to each of ``gws`` in turn while the block runs; yields the
    list their statuses are appended to. On exit the loops finish their request and stop."""
    statuses: list[int] = []
    stop = asyncio.Event()

    async def loop() -> None:
        while not stop.is_set():
            for gw in gws:
                async with s.post(gw.url + "/v1/chat/completions", json=BODY) as r:
                    await r.read()
                    statuses.append(r.status)

    load = [asyncio.create_task(loop()) for _ in range(4)]
    try:
        yield statuses
    finally:
        stop.set()
        await asyncio.gather(*load)


async def ejection_seen(s: aiohttp.ClientSession, by: GatewayProcess, on: GatewayProcess) -> None:
    """An admin ejection of backend ``a`` on ``by`` reaches ``on`` within a second."""
    assert (await backend_row(s, on.url))["ejected"] is None
    async with s.post(by.url + "/admin/backends/a/eject", headers=ADMIN, json={"reason": "x"}):
        pass

    async def ejected() -> bool:
        return (await backend_row(s, on.url))["ejected"] == "x"

    await until(ejected, 1.0, "ejection seen by the other gateway")


async def readmission_seen(
    s: aiohttp.ClientSession, by: GatewayProcess, on: GatewayProcess
) -> None:
    """An admin readmission of backend ``a`` on ``by`` reaches ``on`` within a second."""
    async with s.post(by.url + "/admin/backends/a/readmit", headers=ADMIN):
        pass

    async def readmitted() -> bool:
        return (await backend_row(s, on.url))["ejected"] is None

    await until(readmitted, 1.0, "readmission seen by the first gateway")


def fleet_config(up: Any, redis_url: str, **extra: Any) -> dict[str, Any]:
    """A gateway of one fake upstream (backend id ``a``) on the shared Redis."""
    config: dict[str, Any] = {
        "backends": backends(up, id="a"),
        "auth": {"admin_key": "adm-test"},
        # A generous timeout: on a loaded test machine the default 0.25 s can pass, and the
        # local fallback would blur "exact" (the fallback has tests of its own).
        "state": {"redis_url": redis_url, "key_prefix": "t", "leader_ttl_s": 2.0, "timeout_s": 2.0},
        "shutdown_grace": 0.5,
    }
    config.update(extra)
    return config


#: The Consul double's clock runs this many times real time: a Consul session's TTL is at
#: least 10 s and Consul invalidates it up to 2 × TTL after its last renewal, so a dead
#: leader's session goes after 20 s of Consul time, 5 s of real time.
CONSUL_SPEED = 4.0


@pytest.fixture
async def consul_agent() -> AsyncIterator[ListeningAgent]:
    """The Consul double (one DC, the gateways' agent ``gw-node``), closed after the test."""
    cluster = ConsulCluster(clock=Clock(speed=CONSUL_SPEED))
    cluster.add_datacenter("dc1")
    agent = await cluster.add_agent("dc1", "gw-node")
    yield agent
    await cluster.close()


def consul_section(agent: ListeningAgent) -> dict[str, Any]:
    """The ``consul`` section of a gateway on ``agent`` (short waits and backoffs)."""
    return {
        "host": "127.0.0.1",
        "port": agent.port,
        "service": "llm",
        "wait": "4s",
        "backoff_initial": 0.05,
        "backoff_max": 0.3,
    }


def consul_fleet_config(
    up: Any, agent: ListeningAgent, redis_url: str | None = None, **extra: Any
) -> dict[str, Any]:
    """A gateway of one fake upstream (backend id ``a``) whose health and leadership go through
    Consul (and whose limits go through Redis when ``redis_url`` is given)."""
    state: dict[str, Any] = {"consul": True, "key_prefix": "t", "leader_ttl_s": 2.0}
    if redis_url is not None:
        state |= {"redis_url": redis_url, "timeout_s": 2.0}
    config: dict[str, Any] = {
        "backends": backends(up, id="a"),
        "auth": {"admin_key": "adm-test"},
        "consul": consul_section(agent),
        "state": state,
        "shutdown_grace": 0.5,
    }
    config.update(extra)
    return config
