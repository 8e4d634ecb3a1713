"""Upstream answers of the other shape than asked: JSON to a stream request, SSE to a JSON one.
Also: a stream that delivered its finish reason but no ``[DONE]`` is finished cleanly."""

from __future__ import annotations

from typing import Any

import orjson

from switchgear.default_plugins.adapters import Adapters
from tests.fakes import Fault
from tests.proxy.conftest import backends

MSG = [{"role": "user", "content": "hi"}]


async def sse(http, url: str, body: dict[str, Any]) -> list[Any]:
    async with http.post(url, json=body) as r:
        assert r.status == 200, await r.text()
        assert r.content_type == "text/event-stream"
        out = []
        async for line in r.content:
            if line.startswith(b"data: "):
                data = line[6:].strip()
                out.append("[DONE]" if data == b"[DONE]" else orjson.loads(data))
        return out


def text(events: list[Any]) -> str:
    return "".join(
        c.get("delta", {}).get("content") or c.get("text") or ""
        for e in events
        if isinstance(e, dict)
        for c in e.get("choices", [])
    )


async def test_json_to_a_stream_request_becomes_a_stream(upstream, gateway, http):
    up = await upstream("m1", name="a")
    up.always = Fault(json_for_stream=True)
    gw = await gateway({"backends": backends(up)})
    body = {
        "model": "m1",
        "messages": MSG,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    events = await sse(http, gw.url + "/v1/chat/completions", body)
    assert events[-1] == "[DONE]" and text(events) == "hello from a"
    first = events[0]
    assert first["object"] == "chat.completion.chunk"
    assert first["choices"][0]["delta"]["role"] == "assistant"
    assert first["choices"][0]["finish_reason"] == "stop"
    assert events[-2]["choices"] == [] and events[-2]["usage"]["total_tokens"] == 7
    assert not any(isinstance(e, dict) and "error" in e for e in events)


async def test_json_to_a_stream_through_a_prompt_format_adapter(upstream, gateway, http):
    up = await upstream("m1", name="a")
    up.always = Fault(json_for_stream=True)  # a completion server that ignores "stream"
    gw = await gateway({"backends": backends(up, protocol="chatml")}, plugins=(Adapters(),))
    body = {"model": "m1", "messages": MSG, "stream": True}
    events = await sse(http, gw.url + "/v1/chat/completions", body)
    assert up.requests[-1].path == "/v1/completions"
    assert events[-1] == "[DONE]" and len(events) == 2  # not [DONE] alone
    assert text(events) == "hello from a"


async def test_json_to_a_completions_stream(upstream, gateway, http):
    up = await upstream("m1", name="a")
    up.always = Fault(json_for_stream=True)
    gw = await gateway({"backends": backends(up)})
    body = {"model": "m1", "prompt": "hi", "stream": True}
    events = await sse(http, gw.url + "/v1/completions", body)
    assert events[-1] == "[DONE]" and events[0]["object"] == "text_completion"
    assert text(events) == "hello from a"


async def test_sse_to_a_json_request_is_collected(upstream, gateway, http):
    up = await upstream("m1", name="a", chunks=3)
    up.always = Fault(sse_for_json=True)
    gw = await gateway({"backends": backends(up)})
    body = {"model": "m1", "messages": MSG, "stream_options": {"include_usage": True}}
    async with http.post(gw.url + "/v1/chat/completions", json=body) as r:
        assert r.status == 200 and r.content_type == "application/json"
        answer = await r.json()
    assert answer["object"] == "chat.completion"
    choice = answer["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "a0 a1 a2 "}
    assert choice["finish_reason"] == "stop" and answer["usage"]["completion_tokens"] == 3


async def test_sse_without_choices_to_a_json_request_is_a_502(upstream, gateway, http):
    up = await upstream("m1", name="a", chunks=0)
    up.always = Fault(sse_for_json=True)
    gw = await gateway({"backends": backends(up), "retries": {"attempts": 1}})
    async with http.post(
        gw.url + "/v1/chat/completions", json={"model": "m1", "messages": MSG}
    ) as r:
        assert r.status == 502 and (await r.json())["error"]["type"] == "upstream_error"


async def test_a_complete_stream_without_done_is_finished_cleanly(upstream, gateway, http):
    up = await upstream("m1", name="a", chunks=3)
    up.always = Fault(omit_done=True)
    gw = await gateway({"backends": backends(up)})
    body = {
        "model": "m1",
        "messages": MSG,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    events = await sse(http, gw.url + "/v1/chat/completions", body)
    assert events[-1] == "[DONE]" and text(events) == "a0 a1 a2 "
    assert events[-2]["usage"]["total_tokens"] == 6
    assert not any(isinstance(e, dict) and "error" in e for e in events)
    assert len(up.requests) == 1  # finished, not resumed or retried
