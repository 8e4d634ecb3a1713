"""Retry and no-retry rules, Retry-After, context-length handling and fallback chains."""

from __future__ import annotations

import openai
import pytest

from tests.fakes import Fault
from tests.proxy.conftest import backends

MSG = [{"role": "user", "content": "hi"}]
RR = {"balancing": "round_robin"}


@pytest.mark.parametrize(
    "fault",
    [
        Fault(status=429),
        Fault(status=500),
        Fault(status=502),
        Fault(status=503),
        Fault(status=504),
        Fault(reset=True),
        Fault(first_delay=30.0),
    ],
    ids=["429", "500", "502", "503", "504", "reset", "ttft-deadline"],
)
async def test_retryable_failures_are_retried_on_another_replica(upstream, gateway, fault):
    a, b = await upstream("m1", name="a"), await upstream("m1", name="b")
    a.fault(fault)
    gw = await gateway({"backends": backends(a, b), **RR, "timeouts": {"ttft": 1.0}})
    async with gw.openai() as client:
        out = await client.chat.completions.create(model="m1", messages=MSG)
    assert out.choices[0].message.content == "hello from b"
    assert (len(a.requests), len(b.requests)) == (1, 1)


async def test_single_replica_is_retried_in_place(upstream, gateway):
    up = await upstream("m1")
    up.fault(Fault(status=502), times=2)
    gw = await gateway({"backends": backends(up)})
    async with gw.openai() as client:
        out = await client.chat.completions.create(model="m1", messages=MSG)
    assert out.choices[0].message.content and len(up.requests) == 3


async def test_connect_error_is_retried(upstream, gateway):
    from tests.conftest import free_port

    good = await upstream("m1", name="good")
    dead = {"model": "m1", "url": f"http://127.0.0.1:{free_port()}/v1"}
    gw = await gateway({"backends": [dead, {"model": "m1", "url": good.url}], **RR})
    async with gw.openai() as client:
        out = await client.chat.completions.create(model="m1", messages=MSG)
    assert out.choices[0].message.content == "hello from good"


async def test_attempts_are_bounded(upstream, gateway):
    up = await upstream("m1")
    up.always = Fault(status=503)
    gw = await gateway(
        {
            "backends": backends(up),
            "retries": {"attempts": 4, "backoff_base": 0.001},
            "breaker": {"failures": 10},
        }
    )
    async with gw.openai() as client:
        with pytest.raises(openai.InternalServerError) as exc:
            await client.chat.completions.create(model="m1", messages=MSG)
    assert exc.value.status_code == 503 and len(up.requests) == 4


async def test_retry_after_is_honoured_up_to_the_cap(upstream, gateway):
    up = await upstream("m1")
    up.fault(Fault(status=429, retry_after=0.25))
    up.fault(Fault(status=429, retry_after=3600))
    gw = await gateway(
        {"backends": backends(up), "retries": {"attempts": 3, "retry_after_cap": 0.4}}
    )
    async with gw.openai() as client:
        out = await client.chat.completions.create(model="m1", messages=MSG)
    assert out.choices[0].message.content
    t = [r.at for r in up.requests]
    assert t[1] - t[0] >= 0.25
    assert 0.4 <= t[2] - t[1] < 5


async def test_final_429_passes_retry_after_to_the_client(upstream, gateway):
    up = await upstream("m1")
    up.always = Fault(status=429, retry_after=0)
    gw = await gateway({"backends": backends(up)})
    async with gw.openai() as client:
        with pytest.raises(openai.RateLimitError) as exc:
            await client.chat.completions.create(model="m1", messages=MSG)
    assert exc.value.response.headers["retry-after"] == "0"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_client_errors_are_never_retried(upstream, gateway, status):
    a, b = await upstream("m1", name="a"), await upstream("m1", name="b")
    a.always = b.always = Fault(status=status)
    gw = await gateway({"backends": backends(a, b)})
    async with gw.openai() as client:
        with pytest.raises(openai.APIStatusError) as exc:
            await client.chat.completions.create(model="m1", messages=MSG)
    assert exc.value.status_code == status
    assert len(a.requests) + len(b.requests) == 1


async def test_content_filter_refusal_passes_through_unretried(upstream, gateway):
    up = await upstream("m1")
    up.always = Fault(
        status=400,
        error={
            "message": "refused",
            "type": "invalid_request_error",
            "param": None,
            "code": "content_filter",
        },
    )
    gw = await gateway({"backends": backends(up), "models": {"m1": {"fallback": ["m2"]}}})
    async with gw.openai() as client:
        with pytest.raises(openai.BadRequestError) as exc:
            await client.chat.completions.create(model="m1", messages=MSG)
    assert exc.value.code == "content_filter" and len(up.requests) == 1


CTX_ERR = {
    "message": "This model's maximum context length is 1000 tokens",
    "type": "invalid_request_error",
    "param": "messages",
    "code": "context_length_exceeded",
}


async def test_context_length_error_skips_same_context_and_goes_to_larger(upstream, gateway):
    small, same, large = await upstream("small"), await upstream("same"), await upstream("large")
    small.always = Fault(status=400, error=CTX_ERR)
    gw = await gateway(
        {
            "backends": backends(small, same, large),
            "models": {
                "small": {"context_length": 1000, "fallback": ["same", "large"]},
                "same": {"context_length": 1000},
                "large": {"context_length": 8000},
            },
        }
    )
    async with gw.openai() as client:
        raw = await client.chat.completions.with_raw_response.create(model="small", messages=MSG)
    assert raw.parse().model == "large"
    assert raw.headers["x-switchgear-fallback"] == "small -> large"
    assert (len(small.requests), len(same.requests), len(large.requests)) == (1, 0, 1)


async def test_context_length_error_without_larger_model_goes_back(upstream, gateway):
    small, same = await upstream("small"), await upstream("same")
    small.always = Fault(status=400, error=CTX_ERR)
    gw = await gateway(
        {
            "backends": backends(small, same),
            "models": {
                "small": {"context_length": 1000, "fallback": ["same"]},
                "same": {"context_length": 1000},
            },
        }
    )
    async with gw.openai() as client:
        with pytest.raises(openai.BadRequestError) as exc:
            await client.chat.completions.create(model="small", messages=MSG)
    assert exc.value.code == "context_length_exceeded"
    assert len(small.requests) == 1 and same.requests == []


async def test_fallback_after_retries_are_spent(upstream, gateway):
    m1, m2 = await upstream("m1"), await upstream("m2", name="two")
    m1.always = Fault(status=500)
    gw = await gateway({"backends": backends(m1, m2), "models": {"m1": {"fallback": ["m2"]}}})
    async with gw.openai() as client:
        raw = await client.chat.completions.with_raw_response.create(model="m1", messages=MSG)
        stream = await client.chat.completions.create(model="m1", messages=MSG, stream=True)
        chunks = [c async for c in stream]
    out = raw.parse()
    assert out.model == "m2" and out.choices[0].message.content == "hello from two"
    assert raw.headers["x-switchgear-fallback"] == "m1 -> m2"
    assert raw.headers["x-switchgear-backend"].startswith(m2.url)
    assert {c.model for c in chunks} == {"m2"}
    assert m2.requests[0].body["model"] == "m2"


async def test_fallback_when_no_healthy_backend(upstream, gateway):
    m1, m2 = await upstream("m1"), await upstream("m2")
    gw = await gateway({"backends": backends(m1, m2), "models": {"m1": {"fallback": ["m2"]}}})
    from switchgear.proxy.keys import BACKEND_STATE

    gw.app[BACKEND_STATE].eject(m1.url, "test")
    async with gw.openai() as client:
        raw = await client.chat.completions.with_raw_response.create(model="m1", messages=MSG)
    assert raw.parse().model == "m2" and m1.requests == []


async def test_fallback_chain_exhausted_returns_the_upstream_error(upstream, gateway):
    m1, m2 = await upstream("m1"), await upstream("m2")
    m1.always = m2.always = Fault(status=502)
    gw = await gateway(
        {
            "backends": backends(m1, m2),
            "models": {"m1": {"fallback": ["m2"]}},
            "retries": {"attempts": 1},
        }
    )
    async with gw.openai() as client:
        with pytest.raises(openai.APIStatusError) as exc:
            await client.chat.completions.create(model="m1", messages=MSG)
    assert exc.value.status_code == 502


async def test_per_model_retries_and_timeouts(upstream, gateway):
    m1 = await upstream("m1")
    m1.always = Fault(first_delay=0.4)
    gw = await gateway(
        {
            "backends": backends(m1),
            "timeouts": {"ttft": 0.1},
            "models": {"m1": {"timeouts": {"ttft": 2.0}, "retries": {"attempts": 1}}},
        }
    )
    async with gw.openai() as client:
        out = await client.chat.completions.create(model="m1", messages=MSG)
    assert out.choices[0].message.content and len(m1.requests) == 1


async def test_local_datacenter_first_then_others(upstream, gateway):
    far, near = await upstream("m1", name="far"), await upstream("m1", name="near")
    gw = await gateway(
        {
            "backends": [
                {"model": "m1", "url": far.url, "datacenter": "dc2"},
                {"model": "m1", "url": near.url, "datacenter": "local"},
            ]
        }
    )
    async with gw.openai() as client:
        for _ in range(3):
            out = await client.chat.completions.create(model="m1", messages=MSG)
            assert out.choices[0].message.content == "hello from near"
        near.always = Fault(status=503)
        raw = await client.chat.completions.with_raw_response.create(model="m1", messages=MSG)
    assert raw.parse().choices[0].message.content == "hello from far"
    assert raw.headers["x-switchgear-backend"] == f"{far.url}; dc=dc2"


async def test_connect_deadline_fails_over(upstream, gateway):
    import socket

    good = await upstream("m1", name="good")
    # A listener that never accepts, its backlog already full: new connects hang in SYN.
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(0)
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(blackhole.getsockname())
        fillers.append(s)
    try:
        hole = {"model": "m1", "url": f"http://127.0.0.1:{blackhole.getsockname()[1]}/v1"}
        gw = await gateway(
            {
                "backends": [hole, {"model": "m1", "url": good.url}],
                "balancing": "round_robin",
                "timeouts": {"connect": 0.2, "ttft": 5.0},
            }
        )
        from switchgear.proxy.keys import OBSERVERS

        seen: list = []
        gw.app[OBSERVERS].append(seen.append)
        async with gw.openai() as client:
            out = await client.chat.completions.create(model="m1", messages=MSG)
        assert out.choices[0].message.content == "hello from good"
        assert [o.error for o in seen] == ["connect_timeout", None]
    finally:
        for s in fillers:
            s.close()
        blackhole.close()
