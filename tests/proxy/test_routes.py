"""Every route through the official openai client, streaming and not."""

from __future__ import annotations

import openai
import pytest

from tests.proxy.conftest import backends

MSG = [{"role": "user", "content": "hi"}]


async def test_chat_completion_non_streaming(upstream, gateway):
    up = await upstream("m1", name="a")
    gw = await gateway({"backends": backends(up)})
    async with gw.openai() as client:
        raw = await client.chat.completions.with_raw_response.create(model="m1", messages=MSG)
    out = raw.parse()
    assert out.choices[0].message.content == "hello from a"
    assert out.model == "m1"
    assert raw.headers["x-switchgear-backend"] == f"{up.url}; dc=local"
    assert raw.headers["x-request-id"]
    assert up.requests[0].headers["x-request-id"] == raw.headers["x-request-id"]


async def test_every_openai_field_passes_through_untouched(upstream, gateway):
    up = await upstream("m1")
    gw = await gateway({"backends": backends(up)})
    tools = [
        {
            "type": "function",
            "function": {"name": "f", "parameters": {"type": "object", "properties": {}}},
        }
    ]
    async with gw.openai() as client:
        await client.chat.completions.create(
            model="m1",
            messages=MSG,
            tools=tools,
            tool_choice="auto",
            response_format={"type": "json_object"},
            logprobs=True,
            top_logprobs=2,
            n=2,
            stop=["x"],
            seed=7,
            user="u1",
            temperature=0.3,
            extra_body={"vendor_field": {"a": 1}},
        )
    sent = up.requests[0].body
    assert sent["tools"] == tools and sent["tool_choice"] == "auto"
    assert sent["response_format"] == {"type": "json_object"}
    assert (
        sent["logprobs"],
        sent["top_logprobs"],
        sent["n"],
        sent["stop"],
        sent["seed"],
        sent["user"],
    ) == (True, 2, 2, ["x"], 7, "u1")
    assert sent["vendor_field"] == {"a": 1}


async def test_chat_streaming_with_usage(upstream, gateway):
    up = await upstream("m1", name="a", chunks=5)
    gw = await gateway({"backends": backends(up)})
    async with gw.openai() as client:
        stream = await client.chat.completions.create(
            model="m1", messages=MSG, stream=True, stream_options={"include_usage": True}
        )
        chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "".join(f"a{i} " for i in range(5))
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    assert up.requests[0].body["stream_options"] == {"include_usage": True}


async def test_legacy_completions_both_modes(upstream, gateway):
    up = await upstream("m1", name="a", chunks=3)
    gw = await gateway({"backends": backends(up)})
    async with gw.openai() as client:
        out = await client.completions.create(model="m1", prompt="hi")
        assert out.choices[0].text == "hello from a"
        stream = await client.completions.create(model="m1", prompt="hi", stream=True)
        texts = [c.choices[0].text async for c in stream]
    assert texts == ["a0 ", "a1 ", "a2 "]
    assert up.requests[0].path == "/v1/completions"


async def test_embeddings(upstream, gateway):
    up = await upstream("e1")
    gw = await gateway({"backends": backends(up)})
    async with gw.openai() as client:
        out = await client.embeddings.create(model="e1", input=["a", "b"])
    assert [d.embedding for d in out.data] == [[0.1, 0.2, 0.0], [0.1, 0.2, 1.0]]
    assert up.requests[0].path == "/v1/embeddings"


async def test_models_list_and_get_with_metadata(upstream, gateway):
    a, b = await upstream("m1"), await upstream("m2")
    gw = await gateway(
        {
            "backends": [
                {"model": "m1", "url": a.url, "datacenter": "dc1"},
                {"model": "m2", "url": b.url},
            ],
            "models": {
                "m1": {"context_length": 4096, "languages": ["en", "zh"], "fallback": ["m2"]}
            },
        }
    )
    async with gw.openai() as client:
        listed = await client.models.list()
        one = await client.models.retrieve("m1")
        with pytest.raises(openai.NotFoundError) as exc:
            await client.models.retrieve("nope")
    assert sorted(m.id for m in listed.data) == ["m1", "m2"]
    meta = one.model_extra["switchgear"]
    assert meta == {
        "context_length": 4096,
        "languages": ["en", "zh"],
        "backends": 1,
        "datacenters": ["dc1"],
        "fallback": ["m2"],
        "capabilities": [],
        "aliases": [],
    }
    assert "m1, m2" in exc.value.message


async def test_models_hides_models_without_a_healthy_backend(upstream, gateway):
    a, b = await upstream("m1"), await upstream("m2")
    gw = await gateway({"backends": backends(a, b)})
    gw.app[__import__("switchgear.proxy.keys", fromlist=["x"]).BACKEND_STATE].eject(b.url, "test")
    async with gw.openai() as client:
        listed = await client.models.list()
    assert [m.id for m in listed.data] == ["m1"]


async def test_health_ready_and_metrics(upstream, gateway, http):
    up = await upstream("m1")
    gw = await gateway({"backends": backends(up)})
    async with gw.openai() as client:
        await client.chat.completions.create(model="m1", messages=MSG)
    async with http.get(gw.url + "/healthz") as r:
        assert r.status == 200
    async with http.get(gw.url + "/readyz") as r:
        assert r.status == 200 and (await r.json())["backends"] == 1
    async with http.get(gw.url + "/metrics") as r:
        text = await r.text()
        assert r.headers["Content-Type"].startswith("text/plain")
    assert (
        f'switchgear_requests_total{{backend="{up.url}",datacenter="local",model="m1",status="200"}} 1.0'
        in text
    )
    for name in (
        "switchgear_request_duration_seconds_bucket",
        "switchgear_upstream_duration_seconds_bucket",
        "switchgear_requests_in_flight",
        "switchgear_time_to_first_token_seconds",
        "switchgear_upstream_errors_total",
        "switchgear_retries_total",
    ):
        assert name in text


async def test_readyz_without_backends_is_503(gateway, http):
    gw = await gateway({})
    async with http.get(gw.url + "/readyz") as r:
        assert r.status == 503
        assert (await r.json())["error"]["type"] == "service_unavailable"


async def test_request_id_is_honoured_end_to_end(upstream, gateway, http):
    up = await upstream("m1")
    gw = await gateway({"backends": backends(up)})
    async with http.post(
        gw.url + "/v1/chat/completions",
        json={"model": "m1", "messages": MSG},
        headers={"x-request-id": "abc-123"},
    ) as r:
        assert r.status == 200
        assert r.headers["x-request-id"] == "abc-123"
    assert up.requests[0].headers["x-request-id"] == "abc-123"
