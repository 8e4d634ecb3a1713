"""Per-key rate limits: requests and tokens per minute, OpenAI-style 429 with Retry-After."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.fakes import Fault
from tests.hardening.conftest import backends

KEYS = ["sk-one", "sk-two"]


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "m1", "messages": [{"role": "user", "content": "hi"}], **extra}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_429(r: Any, body: dict[str, Any], which: str, per_minute: int) -> None:
    assert r.status == 429
    assert int(r.headers["Retry-After"]) >= 1
    assert r.headers[f"x-ratelimit-limit-{which}"] == str(per_minute)
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "rate_limit_error" and err["code"] == "rate_limit_exceeded"
    assert "sk-" not in err["message"]  # names the key id, never the key


async def test_requests_per_minute_per_key(upstream, gateway, http):
    up = await upstream("m1")
    gw = await gateway(
        {
            "backends": backends(up),
            "auth": {"api_keys": KEYS},
            "rate_limits": {
                "requests_per_minute": 2,
                "keys": {"key-1": {"requests_per_minute": 5}},
            },
        }
    )
    url = gw.url + "/v1/chat/completions"
    for _ in range(2):
        async with http.post(url, json=chat(), headers=bearer("sk-one")) as r:
            assert r.status == 200
    async with http.post(url, json=chat(), headers=bearer("sk-one")) as r:
        assert_429(r, await r.json(), "requests", 2)
    for _ in range(5):  # the other key has its own, larger bucket
        async with http.post(url, json=chat(), headers=bearer("sk-two")) as r:
            assert r.status == 200
    async with http.post(url, json=chat(), headers=bearer("sk-two")) as r:
        assert r.status == 429
    assert len(up.requests) == 7  # refused requests never reach a backend


async def test_tokens_per_minute_counts_the_estimate_then_the_usage(upstream, gateway, http):
    up = await upstream("m1", chunks=4)
    gw = await gateway(
        {
            "backends": backends(up),
            "auth": {"api_keys": KEYS},
            "rate_limits": {"tokens_per_minute": 100},
        }
    )
    url, h = gw.url + "/v1/chat/completions", bearer("sk-one")
    # Non-streaming answers report usage (7 tokens), which replaces the 59-token estimate.
    for _ in range(4):
        async with http.post(url, json=chat(max_tokens=50), headers=h) as r:
            assert r.status == 200
    # A stream without usage is charged what it streamed (9 prompt + 5 text tokens), not its
    # 59-token estimate: 42 of 100 are used, so a 49-token request still fits...
    async with http.post(url, json=chat(max_tokens=50, stream=True), headers=h) as r:
        assert r.status == 200
        await r.read()
    async with http.post(url, json=chat(max_tokens=40), headers=h) as r:
        assert r.status == 200
    # ...and, with 49 used, a 69-token one does not.
    async with http.post(url, json=chat(max_tokens=60), headers=h) as r:
        assert_429(r, await r.json(), "tokens", 100)
    async with http.post(url, json=chat(max_tokens=60), headers=bearer("sk-two")) as r:
        assert r.status == 200


async def test_huge_max_tokens_costs_at_most_one_minute(upstream, gateway, http):
    up = await upstream("m1")
    up.fault(Fault(chunk_delay=0.2))
    gw = await gateway({"backends": backends(up), "rate_limits": {"tokens_per_minute": 1000}})
    body = chat(max_tokens=10**15, stream=True)
    async with http.post(gw.url + "/v1/chat/completions", json=body) as stream:
        assert stream.status == 200  # a full bucket admits it (the backend caps max_tokens)
        await stream.content.readline()  # in flight: its whole minute is taken
        async with http.post(gw.url + "/v1/chat/completions", json=chat()) as r:
            refused = await r.json()
            assert_429(r, refused, "tokens", 1000)
            assert int(r.headers["Retry-After"]) <= 60
            assert "ip:127.0.0.1" in refused["error"]["message"]  # open /v1: limited per address
        await stream.read()


async def test_openai_client_sees_a_rate_limit_error(upstream, gateway):
    up = await upstream("m1")
    gw = await gateway({"backends": backends(up), "rate_limits": {"requests_per_minute": 1}})
    client = gw.openai()
    await client.chat.completions.create(**chat())
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(**chat())
    assert info.value.response.headers["retry-after"]
    await client.close()


async def test_no_limits_configured_means_no_buckets(upstream, gateway, http):
    up = await upstream("m1")
    gw = await gateway({"backends": backends(up)})
    from switchgear.proxy.keys import RATE_LIMITER

    assert gw.app[RATE_LIMITER].enabled is False
    for _ in range(20):
        async with http.post(gw.url + "/v1/chat/completions", json=chat()) as r:
            assert r.status == 200
