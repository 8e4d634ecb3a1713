"""Upstream redirects are never followed: the client's body reaches its model's backends only."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web

from tests.fakes import Fault
from tests.hardening.conftest import backends

CHAT = {"model": "m1", "messages": [{"role": "user", "content": "secret prompt"}]}


@pytest.fixture
async def target() -> AsyncIterator[Callable[[], object]]:
    """A loopback server that answers 200 to any method and path, recording each request."""
    seen: list[tuple[str, str, bytes]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append((request.method, request.path, await request.read()))
        return web.json_response(
            {"choices": [{"index": 0, "message": {"role": "assistant", "content": "pwned"}}]}
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield lambda: (url, seen)  # type: ignore[misc]
    await runner.cleanup()


@pytest.mark.parametrize("status", [307, 308, 302, 301, 303])
@pytest.mark.parametrize("stream", [False, True])
async def test_a_redirect_is_an_upstream_error_and_the_target_gets_nothing(
    upstream, gateway, http, target, status, stream
):
    url, seen = target()
    hop = await upstream("m1", name="hop")  # a second loopback hop: a chain of redirects
    hop.always = Fault(redirect=url + "/v1/chat/completions", redirect_status=status)
    up = await upstream("m1", name="a")
    up.always = Fault(redirect=hop.url + "/chat/completions", redirect_status=status)
    gw = await gateway({"backends": backends(up), "retries": {"attempts": 2}})
    async with http.post(gw.url + "/v1/chat/completions", json={**CHAT, "stream": stream}) as r:
        assert r.status == 502, await r.text()
        err = (await r.json())["error"]
    assert err["type"] == "upstream_error" and "redirect" in err["message"]
    assert seen == [] and hop.requests == []
    assert len(up.requests) == 2  # retried (no other replica), never followed


async def test_a_redirecting_replica_is_skipped_for_a_healthy_one(upstream, gateway, http, target):
    url, seen = target()
    bad = await upstream("m1", name="bad")
    good = await upstream("m1", name="good")
    bad.always = Fault(redirect=url + "/v1/chat/completions", redirect_status=307)
    gw = await gateway({"backends": backends(bad, good), "balancing": "round_robin"})
    for _ in range(2):  # round robin: one of the two requests starts on the bad replica
        async with http.post(gw.url + "/v1/chat/completions", json=CHAT) as r:
            assert r.status == 200
            body = await r.json()
        assert body["choices"][0]["message"]["content"] == "hello from good"
    assert len(bad.requests) >= 1 and seen == []
