"""Tools through the gateway: passed through to OpenAI backends, translated or refused by others.

The official openai SDK is the client; OpenAI-protocol backends are the fake upstream
streaming tool-call deltas, TGI and Ollama backends the wire-format fakes of
``tests/plugins/fakes.py``.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import orjson
import pluggy
import pytest

from switchgear.plugins.manager import make_plugin_manager
from tests.fakes import ToolCall
from tests.plugins import fakes
from tests.proxy.conftest import GATEWAY_PLUGINS, backends

TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
CALLS = [
    ToolCall("get_weather", '{"city": "Paris"}', id="call_a"),
    ToolCall("get_weather", '{"city": "Oslo"}', id="call_b"),
]
ASK: Any = [{"role": "user", "content": "weather?"}]


def full_pm() -> pluggy.PluginManager:
    """The gateway's plugins plus the native adapters and the prompt router."""
    return make_plugin_manager(
        load_entrypoints=False,
        builtins=(
            *GATEWAY_PLUGINS,
            "switchgear.default_plugins.adapters",
            "switchgear.default_plugins.router",
        ),
    )


def root(server: Any) -> str:
    return str(server.make_url("")).rstrip("/")


async def test_tool_calls_pass_through(upstream, gateway):
    up = await upstream("m1", tool_calls=CALLS)
    gw = await gateway({"backends": backends(up)})
    choice = {"type": "function", "function": {"name": "get_weather"}}
    async with gw.openai() as client:
        out = await client.chat.completions.create(
            model="m1", messages=ASK, tools=TOOLS, tool_choice=choice, parallel_tool_calls=True
        )
    sent = up.requests[-1].body
    assert sent["tools"] == TOOLS and sent["tool_choice"] == choice
    assert sent["parallel_tool_calls"] is True
    msg = out.choices[0].message
    assert out.choices[0].finish_reason == "tool_calls"
    assert [(c.id, c.function.name, c.function.arguments) for c in msg.tool_calls or []] == [
        ("call_a", "get_weather", '{"city": "Paris"}'),
        ("call_b", "get_weather", '{"city": "Oslo"}'),
    ]


async def test_streamed_tool_call_deltas_pass_through_unchanged(upstream, gateway, http):
    up = await upstream("m1", tool_calls=CALLS)
    gw = await gateway({"backends": backends(up)})
    body = {"model": "m1", "messages": ASK, "tools": TOOLS, "stream": True}
    async with http.post(gw.url + "/v1/chat/completions", json=body) as r:
        got = [line async for line in r.content if line.startswith(b"data: ")]
    async with http.post(up.url + "/chat/completions", json=body) as r:
        direct = [line async for line in r.content if line.startswith(b"data: ")]
    assert got[-1] == direct[-1] == b"data: [DONE]\n"
    assert [orjson.loads(g[6:]) for g in got[:-1]] == [orjson.loads(d[6:]) for d in direct[:-1]]
    assert up.requests[0].body["tools"] == TOOLS


async def test_streamed_tool_calls_with_the_sdk(upstream, gateway):
    up = await upstream("m1", tool_calls=CALLS)
    gw = await gateway({"backends": backends(up)})
    calls: dict[int, dict[str, str]] = {}
    finish = None
    async with gw.openai() as client:
        stream = await client.chat.completions.create(
            model="m1", messages=ASK, tools=TOOLS, stream=True
        )
        async for chunk in stream:
            for choice in chunk.choices:
                finish = choice.finish_reason or finish
                for d in choice.delta.tool_calls or []:
                    call = calls.setdefault(d.index, {"id": "", "name": "", "arguments": ""})
                    call["id"] += d.id or ""
                    call["name"] += (d.function.name or "") if d.function else ""
                    call["arguments"] += (d.function.arguments or "") if d.function else ""
    assert finish == "tool_calls"
    assert [json.loads(c["arguments"]) for c in calls.values()] == [
        {"city": "Paris"},
        {"city": "Oslo"},
    ]
    assert [c["id"] for c in calls.values()] == ["call_a", "call_b"]


async def test_tgi_takes_tools_through_its_messages_api(gateway, aiohttp_server):
    tgi = await aiohttp_server(fakes.tgi_app())
    config = {"backends": [{"model": "t", "url": root(tgi), "protocol": "tgi"}]}
    gw = await gateway(config, pm=full_pm())
    async with gw.openai() as client:
        out = await client.chat.completions.create(model="t", messages=ASK, tools=TOOLS)
        call = (out.choices[0].message.tool_calls or [])[0]
        assert (call.function.name, json.loads(call.function.arguments)) == (
            "get_weather",
            {"x": 1},
        )
        assert out.model == "t"
        stream = await client.chat.completions.create(
            model="t", messages=ASK, tools=TOOLS, stream=True
        )
        args = ""
        async for chunk in stream:
            for d in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
                args += (d.function.arguments or "") if d.function else ""
        assert json.loads(args) == {"x": 1}
        # without tools the native /generate route answers, as before
        plain = await client.chat.completions.create(model="t", messages=ASK)
        assert plain.choices[0].message.content == "TGI:Hello from the fake backend."
    assert tgi.app[fakes.REQUESTS][0]["tools"] == TOOLS


async def test_tgi_json_output_becomes_a_grammar(gateway, aiohttp_server):
    tgi = await aiohttp_server(fakes.tgi_app())
    config = {"backends": [{"model": "t", "url": root(tgi), "protocol": "tgi"}]}
    gw = await gateway(config, pm=full_pm())
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    fmt: Any = {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}
    async with gw.openai() as client:
        await client.chat.completions.create(model="t", messages=ASK, response_format=fmt)
    params = tgi.app[fakes.REQUESTS][-1]["parameters"]
    assert params["grammar"] == {"type": "json", "value": schema}


@pytest.mark.parametrize(
    ("backend", "param"),
    [
        ({"protocol": "tgi", "meta": {"messages_api": "false"}}, "tools"),
        ({"protocol": "chatglm3"}, "tools"),
        ({"protocol": "ollama"}, "tool_choice"),
    ],
)
async def test_backends_that_cannot_take_tools_refuse_them(gateway, backend, param):
    config = {"backends": [{"model": "x", "url": "http://127.0.0.1:9/v1", **backend}]}
    gw = await gateway(config, pm=full_pm())
    choice: Any = "required" if backend["protocol"] == "ollama" else "auto"
    async with gw.openai() as client:
        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(
                model="x", messages=ASK, tools=TOOLS, tool_choice=choice
            )
    body = info.value.body
    assert isinstance(body, dict) and body["param"] == param
    assert body["type"] == "invalid_request_error"


async def test_prompt_format_backends_refuse_json_output(gateway):
    config = {"backends": [{"model": "x", "url": "http://127.0.0.1:9/v1", "protocol": "chatglm3"}]}
    gw = await gateway(config, pm=full_pm())
    async with gw.openai() as client:
        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(
                model="x", messages=ASK, response_format={"type": "json_object"}
            )
    assert isinstance(info.value.body, dict) and info.value.body["param"] == "response_format"


async def test_ollama_tool_calls_through_the_gateway(gateway, aiohttp_server):
    ollama = await aiohttp_server(fakes.ollama_app())
    config = {"backends": [{"model": "o", "url": root(ollama), "protocol": "ollama"}]}
    gw = await gateway(config, pm=full_pm())
    async with gw.openai() as client:
        out = await client.chat.completions.create(model="o", messages=ASK, tools=TOOLS)
        resp = await client.responses.create(
            model="o",
            input="weather?",
            tools=[{"type": "function", "name": "get_weather", "parameters": {}, "strict": False}],
        )
    call = (out.choices[0].message.tool_calls or [])[0]
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    item = resp.output[0]
    assert item.type == "function_call" and json.loads(item.arguments) == {"city": "Paris"}


ROUTED = {
    "router": {
        "aliases": ["auto"],
        "rules": [
            {"name": "tools", "match": {"capability": ["tools"]}, "model": "tooly"},
            {"name": "json", "match": {"capability": ["json"]}, "model": "jsony"},
        ],
        "default": "plain",
    },
    "models": {
        "plain": {"cost": 0.5},  # the cheapest, so the answer to a request that needs nothing
        "tooly": {"capabilities": ["tools"]},
        "jsony": {"capabilities": ["json"]},
    },
}


async def test_router_treats_tools_and_json_as_capabilities(upstream, gateway):
    ups = [await upstream(m, name=m) for m in ("plain", "tooly", "jsony")]
    gw = await gateway({"backends": backends(*ups), **ROUTED}, pm=full_pm())
    schema: Any = {"type": "json_schema", "name": "s", "schema": {"type": "object"}}
    async with gw.openai() as client:
        chat = await client.chat.completions.with_raw_response.create(
            model="auto", messages=ASK, tools=TOOLS
        )
        assert chat.headers["x-switchgear-route"] == "tooly; rule=rule:tools"
        resp = await client.responses.with_raw_response.create(
            model="auto",
            input="hi",
            tools=[{"type": "function", "name": "f", "parameters": {}, "strict": False}],
        )
        assert resp.headers["x-switchgear-route"] == "tooly; rule=rule:tools"
        js = await client.responses.create(model="auto", input="hi", text={"format": schema})
        assert js.output_text == "hello from jsony"
        plain = await client.responses.create(model="auto", input="hi")
        assert plain.output_text == "hello from plain"
