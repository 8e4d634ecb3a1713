"""POST /v1/responses through the gateway, with the official openai SDK as the client."""

from __future__ import annotations

import json
from typing import Any

import openai
import orjson
import pytest

from tests.fakes import Fault, ToolCall
from tests.proxy.conftest import backends

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
CALL = ToolCall("get_weather", '{"city": "Paris"}', id="call_w1")


async def test_create_translates_to_chat_and_back(upstream, gateway):
    up = await upstream("m1", name="a")
    gw = await gateway({"backends": backends(up)})
    async with gw.openai() as client:
        resp = await client.responses.create(
            model="m1",
            instructions="Be brief.",
            input="hi",
            max_output_tokens=20,
            temperature=0.2,
            text={"format": {"type": "json_object"}},
            reasoning={"effort": "low"},
        )
        assert resp.object == "response" and resp.status == "completed"
        assert resp.output_text == "hello from a" and resp.model == "m1"
        assert resp.id.startswith("resp_") and resp.output[0].type == "message"
        assert resp.usage is not None
        assert (resp.usage.input_tokens, resp.usage.output_tokens, resp.usage.total_tokens) == (
            3,
            4,
            7,
        )
        sent = up.requests[-1]
        assert sent.path == "/v1/chat/completions"
        assert sent.body["messages"] == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
        ]
        assert sent.body["max_tokens"] == 20 and sent.body["temperature"] == 0.2
        assert sent.body["response_format"] == {"type": "json_object"}
        assert sent.body["reasoning_effort"] == "low"
        assert "input" not in sent.body and "instructions" not in sent.body


async def test_input_items_and_json_schema(upstream, gateway):
    up = await upstream("m1", name="a")
    gw = await gateway({"backends": backends(up)})
    async with gw.openai() as client:
        schema = {"type": "object", "properties": {"x": {"type": "integer"}}}
        await client.responses.create(
            model="m1",
            input=[
                {"role": "developer", "content": "rules"},
                {"role": "user", "content": [{"type": "input_text", "text": "look"}]},
                {"role": "assistant", "content": [{"type": "output_text", "text": "ok"}]},
                {"type": "message", "role": "user", "content": "again"},
            ],
            text={"format": {"type": "json_schema", "name": "x", "schema": schema, "strict": True}},
        )
        body = up.requests[-1].body
        assert body["messages"] == [
            {"role": "developer", "content": "rules"},
            {"role": "user", "content": [{"type": "text", "text": "look"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
            {"role": "user", "content": "again"},
        ]
        assert body["response_format"] == {
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": schema, "strict": True},
        }


async def test_stream_with_the_sdk_helper(upstream, gateway):
    up = await upstream("m1", name="a", chunks=3)
    gw = await gateway({"backends": backends(up)})
    async with gw.openai() as client:
        async with client.responses.stream(model="m1", input="hi") as stream:
            kinds = [event.type async for event in stream]
            final = await stream.get_final_response()
        assert kinds[:4] == [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
        ]
        assert kinds.count("response.output_text.delta") == 3
        assert kinds[-4:] == [
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
        assert final.output_text == "a0 a1 a2 " and final.status == "completed"
        assert final.usage is not None and final.usage.output_tokens == 3
        sent = up.requests[-1].body
        assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


async def test_stream_events_are_framed_with_their_type(upstream, gateway, http):
    up = await upstream("m1", name="a", chunks=2)
    gw = await gateway({"backends": backends(up)})
    body = {"model": "m1", "input": "hi", "stream": True}
    async with http.post(gw.url + "/v1/responses", json=body) as r:
        assert r.status == 200 and r.headers["Content-Type"] == "text/event-stream"
        raw = (await r.read()).decode()
    frames = [f for f in raw.split("\n\n") if f]
    assert "[DONE]" not in raw
    numbers = []
    for f in frames:
        event_line, data_line = f.split("\n")
        data = orjson.loads(data_line.removeprefix("data: "))
        assert event_line == f"event: {data['type']}"
        numbers.append(data["sequence_number"])
    assert numbers == list(range(len(frames)))


async def test_tool_call_round_trip(upstream, gateway):
    up = await upstream("m1", name="a", tool_calls=[CALL])
    gw = await gateway({"backends": backends(up)})
    async with gw.openai() as client:
        first = await client.responses.create(
            model="m1", input="weather in Paris?", tools=[WEATHER], tool_choice="required"
        )
        call = first.output[0]
        assert call.type == "function_call"
        assert (call.call_id, call.name, json.loads(call.arguments)) == (
            "call_w1",
            "get_weather",
            {"city": "Paris"},
        )
        sent = up.requests[-1].body
        assert sent["tools"] == [
            {
                "type": "function",
                "function": {k: WEATHER[k] for k in ("name", "description", "parameters")},
            }
        ]
        assert sent["tool_choice"] == "required"

        up.tool_calls = None
        second = await client.responses.create(
            model="m1",
            tools=[WEATHER],
            input=[
                {"role": "user", "content": "weather in Paris?"},
                {
                    "type": "function_call",
                    "call_id": call.call_id,
                    "name": call.name,
                    "arguments": call.arguments,
                },
                {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"},
            ],
        )
        assert second.output_text == "hello from a"
        messages = up.requests[-1].body["messages"]
        assert messages[1] == {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_w1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        }
        assert messages[2] == {"role": "tool", "tool_call_id": "call_w1", "content": "sunny, 21 C"}


async def test_streamed_tool_call(upstream, gateway):
    calls = [CALL, ToolCall("get_time", '{"tz": "CET"}', id="call_t1")]
    up = await upstream("m1", name="a", tool_calls=calls)
    gw = await gateway({"backends": backends(up)})
    async with gw.openai() as client:
        tools: Any = [WEATHER, {**WEATHER, "name": "get_time"}]
        async with client.responses.stream(model="m1", input="?", tools=tools) as stream:
            kinds = [event.type async for event in stream]
            final = await stream.get_final_response()
        assert kinds.count("response.function_call_arguments.delta") >= 4
        assert kinds.count("response.function_call_arguments.done") == 2
        got = [(o.call_id, o.name, json.loads(o.arguments)) for o in final.output]  # type: ignore[union-attr]
        assert got == [
            ("call_w1", "get_weather", {"city": "Paris"}),
            ("call_t1", "get_time", {"tz": "CET"}),
        ]


async def test_fallback_to_the_next_model(upstream, gateway):
    a = await upstream("m1", name="a")
    b = await upstream("m2", name="b", chunks=2)
    a.always = Fault(status=503)
    gw = await gateway({"backends": backends(a, b), "models": {"m1": {"fallback": ["m2"]}}})
    async with gw.openai() as client:
        raw = await client.responses.with_raw_response.create(model="m1", input="hi")
        assert raw.headers["x-switchgear-fallback"] == "m1 -> m2"
        resp = raw.parse()
        assert resp.output_text == "hello from b" and resp.model == "m2"
        async with client.responses.stream(model="m1", input="hi") as stream:
            final = await stream.get_final_response()
        assert final.output_text == "b0 b1 " and final.model == "m2"
        assert len(a.requests) >= 2  # retried on m1 before falling back


async def test_cut_stream_continues_on_another_model(upstream, gateway):
    a = await upstream("m1", name="a", chunks=4)
    b = await upstream("m2", name="b", chunks=2)
    a.always = Fault(cut_after=2)
    models = {
        "m1": {"fallback": ["m2"], "supports_continuation": True},
        "m2": {"supports_continuation": True},
    }
    gw = await gateway({"backends": backends(a, b), "models": models})
    async with gw.openai() as client:
        async with client.responses.stream(model="m1", input="hi") as stream:
            final = await stream.get_final_response()
        assert final.output_text == "a0 a1 b0 b1 "
        sent = b.requests[-1].body
        assert sent["messages"][-1] == {"role": "assistant", "content": "a0 a1 "}
        assert sent["continue_final_message"] is True


async def test_native_backend_gets_the_request_unchanged(upstream, gateway):
    up = await upstream("m1", name="n", responses=True)
    gw = await gateway({"backends": backends(up, meta={"supports_responses": "true"})})
    async with gw.openai() as client:
        resp = await client.responses.create(
            model="m1", input="hi", tools=[WEATHER], metadata={"k": "v"}
        )
        assert resp.output_text == "native hello from n" and resp.id == "resp_fake_n"
        sent = up.requests[-1]
        assert sent.path == "/v1/responses"
        assert sent.body == {
            "model": "m1",
            "input": "hi",
            "tools": [WEATHER],
            "metadata": {"k": "v"},
        }
        async with client.responses.stream(model="m1", input="hi") as stream:
            kinds = [event.type async for event in stream]
            final = await stream.get_final_response()
        assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
        assert final.output_text == "native hello from n" and final.id == "resp_fake_n"
        assert up.requests[-1].path == "/v1/responses" and up.requests[-1].body["stream"] is True


async def test_native_and_translated_backends_share_a_fallback_chain(upstream, gateway):
    a = await upstream("m1", name="n", responses=True)
    b = await upstream("m2", name="b")
    a.always = Fault(status=500)
    gw = await gateway(
        {
            "backends": [*backends(a, meta={"supports_responses": "true"}), *backends(b)],
            "models": {"m1": {"fallback": ["m2"]}},
        }
    )
    async with gw.openai() as client:
        resp = await client.responses.create(model="m1", input="hi")
        assert resp.output_text == "hello from b"
        assert {r.path for r in a.requests} == {"/v1/responses"}
        assert b.requests[-1].path == "/v1/chat/completions"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m1"}, "input"),
        ({"model": "m1", "input": []}, "input"),
        ({"input": "hi"}, "model"),
        ({"model": "m1", "input": "hi", "previous_response_id": "resp_1"}, "previous_response_id"),
        ({"model": "m1", "input": "hi", "tools": [{"type": "web_search"}]}, "tools"),
        ({"model": "m1", "input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
        ({"model": "m1", "input": "hi", "tool_choice": {"type": "file_search"}}, "tool_choice"),
        ({"model": "m1", "input": "hi", "text": {"format": {"type": "yaml"}}}, "text"),
        ({"model": "m1", "input": [{"type": "computer_call"}]}, "input"),
        ({"model": "m1", "input": [{"role": "robot", "content": "x"}]}, "input"),
        ({"model": "m1", "input": "hi", "stream": "yes"}, "stream"),
        ({"model": "m1", "input": "hi", "top_logprobs": 2}, "top_logprobs"),
        (
            {"model": "m1", "input": [{"role": "user", "content": [{"type": "input_image"}]}]},
            "input",
        ),
    ],
)
async def test_invalid_requests_are_openai_400s(upstream, gateway, body, param):
    up = await upstream("m1")
    gw = await gateway({"backends": backends(up)})
    async with gw.openai() as client:
        with pytest.raises(openai.BadRequestError) as info:
            await client.post("/responses", body=body, cast_to=object)
        err = info.value.body
        assert isinstance(err, dict) and err["param"] == param
        assert err["type"] == "invalid_request_error"
        assert up.requests == []


async def test_unknown_model_is_a_404(upstream, gateway):
    up = await upstream("m1")
    gw = await gateway({"backends": backends(up)})
    async with gw.openai() as client:
        with pytest.raises(openai.NotFoundError):
            await client.responses.create(model="nope", input="hi")


async def test_openapi_describes_the_route(upstream, gateway, http):
    up = await upstream("m1")
    gw = await gateway({"backends": backends(up)})
    async with http.get(gw.url + "/openapi.json") as r:
        doc = await r.json()
    op = doc["paths"]["/v1/responses"]["post"]
    ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    assert set(schema["required"]) == {"model", "input"}


async def test_a_cut_stream_ends_with_an_error_event(upstream, gateway, http):
    up = await upstream("m1", chunks=4)
    up.always = Fault(cut_after=2)
    gw = await gateway({"backends": backends(up)})
    body = {"model": "m1", "input": "hi", "stream": True}
    async with http.post(gw.url + "/v1/responses", json=body) as r:
        raw = (await r.read()).decode()
    events = [orjson.loads(f.split("data: ", 1)[1]) for f in raw.split("\n\n") if f]
    kinds = [e["type"] for e in events]
    assert "response.completed" not in kinds and kinds[-1] == "error"
    assert events[-1]["code"] == "bad_gateway" and "lost" in events[-1]["message"]
    async with gw.openai() as client, client.responses.stream(model="m1", input="hi") as stream:
        with pytest.raises(RuntimeError, match=r"response\.completed"):
            await stream.get_final_response()


async def test_token_rate_limits_read_the_translated_request(upstream, gateway):
    up = await upstream("m1", name="a")
    gw = await gateway({"backends": backends(up), "rate_limits": {"tokens_per_minute": 1000}})
    async with gw.openai() as client:
        resp = await client.responses.create(model="m1", input="hi")
        with pytest.raises(openai.BadRequestError):
            await client.responses.create(model="m1", input=[])  # type: ignore[arg-type]
    assert resp.output_text == "hello from a"


async def test_native_stream_usage_is_charged(upstream, gateway):
    up = await upstream("m1", name="n", responses=True)
    gw = await gateway(
        {
            "backends": backends(up, meta={"supports_responses": "true"}),
            "rate_limits": {"tokens_per_minute": 20},
        }
    )
    async with gw.openai() as client:
        async with client.responses.stream(model="m1", input="hi") as stream:
            await stream.get_final_response()
        # the stream's 9 tokens were charged, not the estimate: one more answer fits, not two
        await client.responses.create(model="m1", input="hi")
        with pytest.raises(openai.RateLimitError):
            await client.responses.create(model="m1", input="hi")


async def test_a_cut_native_stream_is_not_restarted_elsewhere(upstream, gateway, http):
    a = await upstream("m1", name="n", responses=True)
    b = await upstream("m1", name="other")
    a.always = Fault(cut_after=3)
    gw = await gateway(
        {
            "backends": [*backends(a, meta={"supports_responses": "true"}), *backends(b)],
            "balancing": "round_robin",
            "models": {"m1": {"supports_continuation": True}},
        }
    )
    body = {"model": "m1", "input": "hi", "stream": True}
    for _ in range(2):  # round robin: one of the two requests starts on the native backend
        async with http.post(gw.url + "/v1/responses", json=body) as r:
            raw = (await r.read()).decode()
        if "resp_fake_n" in raw:
            break
    events = [orjson.loads(f.split("data: ", 1)[1]) for f in raw.split("\n\n") if f]
    assert [e["type"] for e in events][-1] == "error"
    assert [e["sequence_number"] for e in events] == list(range(4))
    assert [e["type"] for e in events].count("response.created") == 1
    assert all(r.path == "/v1/chat/completions" for r in b.requests)
    assert not any(r.body.get("continue_final_message") for r in b.requests)


async def test_a_length_finish_is_incomplete(upstream, gateway):
    up = await upstream("m1", name="a", chunks=2)
    up.always = Fault(
        body={
            "id": "c",
            "object": "chat.completion",
            "created": 1,
            "model": "m1",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "cut"},
                    "finish_reason": "length",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    )
    gw = await gateway({"backends": backends(up)})
    async with gw.openai() as client:
        resp = await client.responses.create(model="m1", input="hi", max_output_tokens=1)
    assert resp.status == "incomplete" and resp.output_text == "cut"
    assert resp.incomplete_details is not None
    assert resp.incomplete_details.reason == "max_output_tokens"
