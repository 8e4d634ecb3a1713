"""Adapters against test servers speaking TGI's and Ollama's wire formats, streaming included."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from switchgear.default_plugins.adapters import Adapters
from switchgear.default_plugins.protocols import (
    OllamaAdapter,
    PromptFormatAdapter,
    TGIAdapter,
    render,
)
from switchgear.errors import InvalidRequest, UpstreamError
from switchgear.settings import parse_settings
from switchgear.types import Adapter, Backend, RequestContext
from tests.plugins import fakes
from tests.plugins.conftest import root

CHAT = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}


def ctx_for(
    body: dict[str, Any], endpoint: str = "chat.completions", model: str = "m"
) -> RequestContext:
    return RequestContext("req1", endpoint, body, model, model, stream=bool(body.get("stream")))  # type: ignore[arg-type]


async def call(
    adapter: Adapter, backend: Backend, body: dict[str, Any], endpoint: str = "chat.completions"
) -> Any:
    ctx = ctx_for(body, endpoint)
    prep = adapter.prepare(backend, ctx, body)
    async with (
        aiohttp.ClientSession() as session,
        session.request(prep.method, prep.url, json=prep.json, headers=dict(prep.headers)) as resp,
    ):
        assert resp.status == 200, await resp.text()
        if body.get("stream"):
            return [
                chunk async for chunk in adapter.stream(backend, ctx, resp.content.__aiter__())
            ], ctx
        return adapter.decode(backend, ctx, await resp.read()), ctx


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])


async def test_tgi_generate_chat(tgi_server: Any) -> None:
    backend = Backend("t1", "llama3-8b", root(tgi_server), protocol="tgi")
    body = {**CHAT, "max_tokens": 50, "temperature": 0, "top_p": 1.0, "stop": ["\n\n"]}
    out, _ = await call(TGIAdapter("llama3"), backend, body)
    sent = tgi_server.app[fakes.REQUESTS][-1]
    assert sent["inputs"] == render("llama3", CHAT["messages"])
    assert sent["parameters"]["max_new_tokens"] == 50
    assert sent["parameters"]["do_sample"] is False and "temperature" not in sent["parameters"]
    assert sent["parameters"]["stop"] == ["\n\n", "<|eot_id|>"]
    assert out["object"] == "chat.completion"
    assert out["choices"][0]["message"] == {
        "role": "assistant",
        "content": "TGI:Hello from the fake backend.",
    }
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["usage"]["completion_tokens"] == 8 and out["usage"]["prompt_tokens"] > 0


async def test_tgi_generate_stream_skips_special_tokens(tgi_server: Any) -> None:
    backend = Backend("t1", "m", root(tgi_server), protocol="tgi")
    chunks, ctx = await call(
        TGIAdapter(), backend, {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    )
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert text_of(chunks) == "TGI:Hello from the fake backend."
    assert "</s>" not in text_of(chunks)
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 8
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert ctx.attributes["usage"]["completion_tokens"] == 8


async def test_tgi_completion_with_length_limit(tgi_server: Any) -> None:
    backend = Backend("t1", "m", root(tgi_server), protocol="tgi")
    out, _ = await call(TGIAdapter(), backend, {"prompt": "Once", "max_tokens": 2}, "completions")
    assert tgi_server.app[fakes.REQUESTS][-1]["inputs"] == "Once"
    assert out["object"] == "text_completion"
    assert (
        out["choices"][0]["text"] == "TGI:Hello" and out["choices"][0]["finish_reason"] == "length"
    )
    chunks, _ = await call(
        TGIAdapter(), backend, {"prompt": "Once", "max_tokens": 2, "stream": True}, "completions"
    )
    assert "".join(c["choices"][0]["text"] for c in chunks) == "TGI:Hello"
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


async def test_tgi_stream_error_event_raises() -> None:
    async def lines() -> Any:
        yield b'data:{"error":"Request failed during generation: OOM","error_type":"generation"}\n'

    adapter, backend = TGIAdapter(), Backend("t1", "m", "http://x", protocol="tgi")
    with pytest.raises(UpstreamError, match="OOM"):
        [c async for c in adapter.stream(backend, ctx_for({**CHAT, "stream": True}), lines())]


async def test_ollama_chat(ollama_server: Any) -> None:
    backend = Backend(
        "o1",
        "llama3-8b",
        root(ollama_server),
        protocol="ollama",
        meta={"upstream_model": "llama3:8b"},
    )
    body = {
        **CHAT,
        "model": "llama3-8b",
        "max_tokens": 3,
        "temperature": 0.5,
        "stop": ["x"],
        "response_format": {"type": "json_object"},
    }
    out, _ = await call(OllamaAdapter(), backend, body)
    sent = ollama_server.app[fakes.REQUESTS][-1]
    assert sent["model"] == "llama3:8b" and sent["stream"] is False and sent["format"] == "json"
    assert sent["options"] == {"temperature": 0.5, "num_predict": 3, "stop": ["x"]}
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    assert out["choices"][0]["message"]["content"] == "Ollama:Hello from"
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


async def test_ollama_chat_stream(ollama_server: Any) -> None:
    backend = Backend("o1", "m", root(ollama_server), protocol="ollama")
    chunks, ctx = await call(OllamaAdapter(), backend, {**CHAT, "model": "m", "stream": True})
    assert ollama_server.app[fakes.REQUESTS][-1]["stream"] is True
    assert text_of(chunks) == "Ollama:Hello from the fake backend."
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert ctx.attributes["usage"]["prompt_tokens"] == 7


async def test_ollama_tool_calls_both_ways(ollama_server: Any) -> None:
    backend = Backend("o1", "m", root(ollama_server), protocol="ollama")
    tools = [
        {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
    ]
    history = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Rome"}'},
                }
            ],
        },
        {"role": "tool", "content": "sunny", "tool_call_id": "c1"},
    ]
    out, _ = await call(
        OllamaAdapter(), backend, {"model": "m", "messages": history, "tools": tools}
    )
    sent = ollama_server.app[fakes.REQUESTS][-1]
    assert sent["messages"][1]["tool_calls"] == [
        {"function": {"name": "weather", "arguments": {"city": "Rome"}}}
    ]
    call0 = out["choices"][0]["message"]["tool_calls"][0]
    assert call0["function"] == {"name": "weather", "arguments": '{"city":"Paris"}'}
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    chunks, _ = await call(
        OllamaAdapter(),
        backend,
        {"model": "m", "messages": history, "tools": tools, "stream": True},
    )
    assert chunks[0]["choices"][0]["delta"]["tool_calls"][0]["function"]["name"] == "weather"
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_ollama_generate_for_completions(ollama_server: Any) -> None:
    backend = Backend("o1", "m", root(ollama_server), protocol="ollama")
    out, _ = await call(OllamaAdapter(), backend, {"model": "m", "prompt": "Once"}, "completions")
    assert ollama_server.app[fakes.REQUESTS][-1] == {
        "model": "m",
        "stream": False,
        "options": {},
        "prompt": "Once",
        "raw": True,
    }
    assert out["choices"][0]["text"] == "Ollama:Hello from the fake backend."


def test_ollama_error_body_raises() -> None:
    with pytest.raises(UpstreamError, match="not found"):
        OllamaAdapter().decode(
            Backend("o1", "m", "http://x"), ctx_for(CHAT), {"error": "model 'm' not found"}
        )


@pytest.mark.parametrize("fmt", ["chatglm3", "baichuan2", "llama3"])
async def test_prompt_format_adapter(completions_server: Any, fmt: str) -> None:
    backend = Backend("c1", "m", root(completions_server) + "/v1", protocol=fmt)
    body = {**CHAT, "model": "m", "max_tokens": 50, "tools": []}
    out, _ = await call(PromptFormatAdapter(fmt), backend, body)
    sent = completions_server.app[fakes.REQUESTS][-1]
    assert (
        sent["prompt"] == render(fmt, CHAT["messages"])
        and "messages" not in sent
        and "tools" not in sent
    )
    assert sent["stop"] == list(PromptFormatAdapter(fmt).format.stop)
    assert out["object"] == "chat.completion"
    assert out["choices"][0]["message"]["content"] == "Completion:Hello from the fake backend."
    chunks, _ = await call(
        PromptFormatAdapter(fmt),
        backend,
        {**body, "stream": True, "stream_options": {"include_usage": True}},
    )
    assert text_of(chunks) == "Completion:Hello from the fake backend."
    assert (
        chunks[-2]["choices"][0]["finish_reason"] == "stop"
        and chunks[-1]["usage"]["prompt_tokens"] == 9
    )


def test_rendered_formats() -> None:
    msgs = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "U"},
        {"role": "assistant", "content": "A"},
        {"role": "user", "content": [{"type": "text", "text": "V"}]},
    ]
    assert (
        render("chatglm3", msgs)
        == "[gMASK]sop<|system|>\nS<|user|>\nU<|assistant|>\nA<|user|>\nV<|assistant|>"
    )
    assert (
        render("baichuan2", msgs) == "S<reserved_106>U<reserved_107>A<reserved_106>V<reserved_107>"
    )
    assert render("llama3", msgs) == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nA<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nV<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    with pytest.raises(InvalidRequest):
        render("llama3", [{"role": "wizard", "content": "x"}])


def test_embeddings_are_refused_by_native_adapters() -> None:
    with pytest.raises(InvalidRequest):
        TGIAdapter().prepare(
            Backend("t", "m", "http://x"), ctx_for({"input": "x"}, "embeddings"), {"input": "x"}
        )


def test_adapter_choice_uses_meta_config_and_catalogue() -> None:
    plugin = Adapters(parse_settings({"models": {"my-model": {"prompt_format": "baichuan2"}}}))
    assert plugin.adapter_for_backend(Backend("a", "m", "http://x", protocol="openai")) is None
    assert isinstance(
        plugin.adapter_for_backend(Backend("a", "m", "http://x", protocol="ollama")), OllamaAdapter
    )
    tgi = plugin.adapter_for_backend(Backend("a", "chatglm3-6b", "http://x", protocol="tgi"))
    assert isinstance(tgi, TGIAdapter) and tgi.format.name == "chatglm3"
    meta = plugin.adapter_for_backend(
        Backend("a", "chatglm3-6b", "http://x", protocol="tgi", meta={"prompt_format": "chatml"})
    )
    assert isinstance(meta, TGIAdapter) and meta.format.name == "chatml"
    conf = plugin.adapter_for_backend(Backend("a", "my-model", "http://x", protocol="completions"))
    assert isinstance(conf, PromptFormatAdapter) and conf.format.name == "baichuan2"
    assert (
        plugin.adapter_for_backend(Backend("a", "unknown", "http://x", protocol="completions"))
        is None
    )
    assert plugin.adapter_for_backend(Backend("a", "m", "http://x", protocol="grpc")) is None
