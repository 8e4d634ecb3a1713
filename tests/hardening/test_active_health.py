"""Active health checks: a frozen (SIGSTOPped) static backend is out within two intervals,
traffic goes to the others meanwhile, and it is back once it answers again; both logged."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest

from switchgear.proxy import keys
from tests.hardening.conftest import ROOT, free_port, wait_ready
from tests.helpers import seconds_until

INTERVAL = 1.0
CHECKS = {
    "interval": INTERVAL,
    "timeout": 0.25,
    "healthy_threshold": 2,
    "unhealthy_threshold": 2,
}
MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture
def frozen_capable() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A fake upstream in its own process (so that it can be SIGSTOPped)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.hardening.upstream_process", str(port), "m1", "frozen"],
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


async def _until(predicate: Callable[[], bool], within: float) -> float:
    """Seconds until ``predicate`` held (polling the gateway's state; fails after ``within``)."""
    return await seconds_until(predicate, within, "gateway health state")


async def test_a_frozen_backend_is_out_within_two_intervals_and_comes_back(
    frozen_capable: Any, upstream: Any, gateway: Any, caplog: pytest.LogCaptureFixture
) -> None:
    url, proc = frozen_capable
    await wait_ready(url + "/models", proc)
    healthy = await upstream("m1", name="healthy")
    gw = await gateway(
        {
            "backends": [
                {"model": "m1", "url": url, "id": "frozen", "meta": {"health_path": "/v1/models"}},
                {"model": "m1", "url": healthy.url, "id": "healthy"},
            ],
            "health_checks": CHECKS,
            "timeouts": {"ttft": 30, "total": 60},
        }
    )
    state, checker = gw.app[keys.BACKEND_STATE], gw.app[keys.HEALTH_CHECKS]
    await _until(lambda: checker.rounds >= 1, 10)  # a round has passed with both up
    assert state.healthy("frozen") and checker.health["frozen"].up

    caplog.set_level(logging.INFO, logger="switchgear.proxy.health_checks")
    proc.send_signal(signal.SIGSTOP)
    took = await _until(lambda: not state.healthy("frozen"), 10)
    assert took <= 2 * INTERVAL + 0.5, took  # 0.5 s for a loaded test machine's scheduling
    assert state.describe("frozen")["ejected"].startswith("health check:")
    assert any(
        "backend frozen (m1 at" in r.message and "is down" in r.message for r in caplog.records
    )

    async with aiohttp.ClientSession() as http:  # meanwhile every request goes to the other
        for _ in range(4):
            async with http.post(
                gw.url + "/v1/chat/completions", json={"model": "m1", "messages": MSG}
            ) as r:
                assert r.status == 200
                assert (await r.json())["choices"][0]["message"]["content"] == "hello from healthy"

    proc.send_signal(signal.SIGCONT)
    await _until(lambda: state.healthy("frozen"), 10)
    assert any("backend frozen" in r.message and "is up again" in r.message for r in caplog.records)


async def test_checks_do_not_readmit_what_an_operator_ejected(upstream: Any, gateway: Any) -> None:
    up = await upstream("m1")
    gw = await gateway(
        {"backends": [{"model": "m1", "url": up.url, "id": "b"}], "health_checks": CHECKS}
    )
    state, checker = gw.app[keys.BACKEND_STATE], gw.app[keys.HEALTH_CHECKS]
    state.eject("b", "drill")
    rounds = checker.rounds
    await _until(lambda: checker.rounds >= rounds + CHECKS["healthy_threshold"] + 1, 10)
    assert state.describe("b")["ejected"] == "drill"


async def test_health_checks_are_on_by_default(gateway: Any, upstream: Any) -> None:
    up = await upstream("m1")
    gw = await gateway({"backends": [{"model": "m1", "url": up.url}]})
    assert gw.settings.health_checks.enabled and keys.HEALTH_CHECKS in gw.app
