"""Rate limits shared by gateway processes on one real Redis (GCRA in one Lua script)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from switchgear.proxy.keys import FLEET, RATE_LIMITER
from tests.state.conftest import fleet_config, until


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "m1", "messages": [{"role": "user", "content": "hi"}], **extra}


async def statuses(
    session: aiohttp.ClientSession, urls: list[str], body: dict[str, Any]
) -> list[int]:
    async def one(url: str) -> int:
        async with session.post(url + "/v1/chat/completions", json=body) as r:
            await r.read()
            return r.status

    return list(await asyncio.gather(*(one(u) for u in urls)))


@pytest.mark.slow
async def test_requests_per_minute_is_exact_across_two_gateway_processes(
    upstream, redis_server, gateways
):
    up = await upstream("m1")
    config = fleet_config(up, redis_server.url, rate_limits={"requests_per_minute": 10})
    a, b = await gateways(config), await gateways(config)
    t0 = time.monotonic()
    async with aiohttp.ClientSession() as s:
        got = await statuses(s, [a.url, b.url] * 20, chat())
    elapsed = time.monotonic() - t0
    assert elapsed < 6  # GCRA refills one request per 6 s: none may refill in the test
    assert got.count(200) == 10 and got.count(429) == 30
    assert len(up.requests) == 10


@pytest.mark.slow
async def test_requests_per_minute_is_exact_across_two_workers(upstream, redis_server, gateways):
    up = await upstream("m1")
    config = fleet_config(up, redis_server.url, rate_limits={"requests_per_minute": 10})
    gw = await gateways(config, workers=2)
    t0 = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        got = await statuses(s, [gw.url] * 40, chat())
        async with s.get(gw.url + "/metrics") as r:
            metrics = await r.text()
    assert time.monotonic() - t0 < 6
    assert got.count(200) == 10 and got.count(429) == 30

    # One scrape covers both processes: every /v1 request of either is counted.
    def counted(status: str) -> float:
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("switchgear_requests_total{") and f'status="{status}"' in line
        )

    assert counted("200") == 10
    assert counted("429") == 30  # refused before a backend: counted with backend="none"

    # The gauge is the lowest over live processes: 1.0 once each one's Redis calls answer
    # (a process whose first call timed out on a busy host reports 0 until its next beat).
    async def both_up() -> bool:
        async with aiohttp.ClientSession() as s, s.get(gw.url + "/metrics") as r:
            return "switchgear_state_backend_up 1.0" in await r.text()

    await until(both_up, 10, "every process of the gateway reports the state backend up")


@pytest.mark.slow
async def test_tokens_per_minute_holds_for_streams_without_usage(upstream, redis_server, gateways):
    # Each stream has no max_tokens and no include_usage: its estimate is 9 tokens, but it
    # streams 200 chunks (1,090 characters, 312 tokens by the estimator; 321 with the prompt).
    # Charged only the estimate (the old bypass), all ten would pass.
    up = await upstream("m1", chunks=200)
    config = fleet_config(up, redis_server.url, rate_limits={"tokens_per_minute": 600})
    a, b = await gateways(config), await gateways(config)
    got = []
    t0 = time.monotonic()
    async with aiohttp.ClientSession() as s:
        for url in [a.url, b.url] * 5:
            async with s.post(url + "/v1/chat/completions", json=chat(stream=True)) as r:
                await r.read()
                got.append(r.status)
                if r.status == 429:
                    assert 1 <= int(r.headers["Retry-After"]) <= 60
    elapsed = time.monotonic() - t0
    assert got[:2] == [200, 200]  # both gateways admit while the fleet has room
    # At most the limit plus what refilled meanwhile (10 tokens/s), plus the overrun of the
    # last stream admitted (a stream is charged when it ends).
    assert got.count(200) * 321 <= 600 + 10 * elapsed + 321
    assert len(up.requests) == got.count(200)


async def test_retry_after_is_the_time_until_the_request_fits(
    upstream, redis_server, gateway, http
):
    up = await upstream("m1")
    config = fleet_config(up, redis_server.url, rate_limits={"requests_per_minute": 2})
    gw = await gateway(config)
    url = gw.url + "/v1/chat/completions"
    for _ in range(2):
        async with http.post(url, json=chat()) as r:
            assert r.status == 200
    async with http.post(url, json=chat()) as r:
        assert r.status == 429
        # 2/minute: one request refills every 30 s, the first was taken just now.
        assert 28 <= int(r.headers["Retry-After"]) <= 31
        assert r.headers["x-ratelimit-limit-requests"] == "2"
    assert gw.app[FLEET].store is not None and gw.app[FLEET].store.up
    with redis_server.client() as c:
        assert c.exists("t:rl:ip:127.0.0.1:r")
        assert 0 < c.pttl("t:rl:ip:127.0.0.1:r") <= 61_000  # keys expire once refilled


async def test_settle_replaces_the_estimate_in_redis(upstream, redis_server, gateway, http):
    up = await upstream("m1")  # non-streaming answers report 7 tokens of usage
    config = fleet_config(up, redis_server.url, rate_limits={"tokens_per_minute": 100})
    a, b = await gateway(config), await gateway(config)
    for gw in (a, b, a, b):  # 59-token estimates, each settled to 7: 28 of 100 used
        async with http.post(gw.url + "/v1/chat/completions", json=chat(max_tokens=50)) as r:
            assert r.status == 200
    limiter = a.app[RATE_LIMITER]
    assert await limiter.take("probe", 72) is None  # 72 of the 72 left fit...
    refused = await limiter.take("ip:127.0.0.1", 80)
    assert refused is not None and refused[0] == "tokens"  # ...but 80 do not
    assert 4 < refused[1] < 6  # (80 - 72) tokens at 100/minute
