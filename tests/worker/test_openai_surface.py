"""The worker's OpenAI surface through the official SDK: tools, structured output, logprobs,
n > 1 with seeds, and the 400 for everything the worker does not implement."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest

from switchgear.worker.tiny import TinySpec
from tests.worker.conftest import _build, worker_settings

WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "pattern": "^[A-Za-z ]{1,12}$"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
SCHEMA: Any = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z]{1,6}$"},
        "ok": {"type": "boolean"},
        "size": {"type": "string", "enum": ["small", "large"]},
    },
    "required": ["name", "ok", "size"],
    "additionalProperties": False,
}
HELLO: Any = [{"role": "user", "content": "Hello, how are you today?"}]


def sdk(client: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key="unused", max_retries=0)


@pytest.fixture
async def oai(client: Any) -> AsyncIterator[openai.AsyncOpenAI]:
    async with sdk(client) as c:
        yield c


async def test_tools_are_rendered_and_a_forced_call_is_parsed(oai: openai.AsyncOpenAI) -> None:
    plain = await oai.chat.completions.create(model="tiny", messages=HELLO, max_tokens=1)
    auto = await oai.chat.completions.create(
        model="tiny", messages=HELLO, max_tokens=1, tools=[WEATHER]
    )
    assert plain.usage and auto.usage
    assert auto.usage.prompt_tokens > plain.usage.prompt_tokens  # the tool list is in the prompt
    forced = await oai.chat.completions.create(
        model="tiny",
        messages=HELLO,
        max_tokens=120,
        temperature=0,
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    choice = forced.choices[0]
    assert choice.finish_reason == "tool_calls", choice.message.content
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls and calls[0].type == "function"
    assert calls[0].function.name == "get_weather"
    assert calls[0].id.startswith("call_")
    jsonschema.validate(json.loads(calls[0].function.arguments), WEATHER["function"]["parameters"])


async def test_streamed_tool_call_deltas(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(
        model="tiny",
        messages=HELLO,
        max_tokens=120,
        seed=3,
        tools=[WEATHER],
        tool_choice="required",
        stream=True,
    )
    names, args, ids, finish = [], [], [], None
    async for chunk in stream:
        for c in chunk.choices:
            for d in c.delta.tool_calls or []:
                assert d.index == 0
                if d.id:
                    ids.append(d.id)
                if d.function and d.function.name:
                    names.append(d.function.name)
                if d.function and d.function.arguments:
                    args.append(d.function.arguments)
            finish = c.finish_reason or finish
    assert names == ["get_weather"] and len(ids) == 1
    assert finish == "tool_calls"
    jsonschema.validate(json.loads("".join(args)), WEATHER["function"]["parameters"])


async def test_json_schema_output_matches_the_schema(oai: openai.AsyncOpenAI) -> None:
    for seed in (0, 1):
        resp = await oai.chat.completions.create(
            model="tiny",
            messages=HELLO,
            max_tokens=200,
            seed=seed,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "thing", "schema": SCHEMA, "strict": True},
            },
        )
        assert resp.choices[0].finish_reason == "stop"
        jsonschema.validate(json.loads(resp.choices[0].message.content or ""), SCHEMA)


async def test_json_object_output_is_json(oai: openai.AsyncOpenAI) -> None:
    resp = await oai.chat.completions.create(
        model="tiny",
        messages=HELLO,
        max_tokens=400,
        seed=0,
        response_format={"type": "json_object"},
    )
    assert resp.choices[0].finish_reason == "stop"
    json.loads(resp.choices[0].message.content or "")


async def test_logprobs_chat_and_stream(oai: openai.AsyncOpenAI) -> None:
    resp = await oai.chat.completions.create(
        model="tiny", messages=HELLO, max_tokens=6, temperature=0, logprobs=True, top_logprobs=3
    )
    lp = resp.choices[0].logprobs
    assert lp and lp.content and resp.usage
    assert len(lp.content) == resp.usage.completion_tokens
    for item in lp.content:
        assert item.logprob <= 0 and len(item.top_logprobs) == 3
        assert item.top_logprobs[0].logprob >= item.logprob  # greedy: the top token was chosen
        assert item.top_logprobs[0].token == item.token
    assert "".join(i.token for i in lp.content) == resp.choices[0].message.content
    stream = await oai.chat.completions.create(
        model="tiny",
        messages=HELLO,
        max_tokens=6,
        temperature=0,
        logprobs=True,
        top_logprobs=3,
        stream=True,
    )
    streamed = [
        i.token
        async for chunk in stream
        for c in chunk.choices
        if c.logprobs and c.logprobs.content
        for i in c.logprobs.content
    ]
    assert streamed == [i.token for i in lp.content]


async def test_completions_logprobs(oai: openai.AsyncOpenAI) -> None:
    resp = await oai.completions.create(
        model="tiny", prompt="Hello", max_tokens=4, temperature=0, logprobs=2
    )
    lp = resp.choices[0].logprobs
    assert lp and lp.tokens and lp.token_logprobs and lp.top_logprobs
    assert len(lp.tokens) == 4 and all(1 <= len(t) <= 2 for t in lp.top_logprobs)


async def test_n_choices_in_one_batch_with_seeds(oai: openai.AsyncOpenAI) -> None:
    req: dict[str, Any] = {"model": "tiny", "messages": HELLO, "max_tokens": 12, "seed": 7}
    two = await oai.chat.completions.create(n=2, **req)
    again = await oai.chat.completions.create(n=2, **req)
    assert [c.index for c in two.choices] == [0, 1]
    texts = [c.message.content for c in two.choices]
    assert texts == [c.message.content for c in again.choices]
    assert texts[0] != texts[1]
    alone = await oai.chat.completions.create(**{**req, "seed": 8})
    assert alone.choices[0].message.content == texts[1]  # choice i samples with seed + i
    assert two.usage and alone.usage
    assert two.usage.prompt_tokens == alone.usage.prompt_tokens  # the prompt counted once
    stream = await oai.chat.completions.create(n=2, stream=True, **req)
    parts: dict[int, str] = {0: "", 1: ""}
    async for chunk in stream:
        for c in chunk.choices:
            parts[c.index] += c.delta.content or ""
    assert [parts[0], parts[1]] == texts


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
        ({"web_search_options": {}}, "web_search_options"),
        ({"reasoning_effort": "low"}, "reasoning_effort"),
        ({"stream_options": {"include_obfuscation": True}}, "stream_options.include_obfuscation"),
        ({"response_format": {"type": "grammar"}}, "response_format.type"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logit_bias": {"999999": 5}}, "logit_bias"),
    ],
)
async def test_unsupported_parameters_are_refused(
    oai: openai.AsyncOpenAI, extra: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        await oai.chat.completions.create(
            model="tiny", messages=HELLO, max_tokens=1, extra_body=extra
        )
    assert err.value.status_code == 400
    assert err.value.body["param"] == param  # type: ignore[index]
    assert err.value.body["type"] == "invalid_request_error"  # type: ignore[index]


async def test_a_template_without_tools_refuses_tools(start_worker: Any, models_dir: Path) -> None:
    path = _build(models_dir, "tiny-plain-template", TinySpec(seed=0, tools=False))
    client = await start_worker(worker_settings(path))
    async with sdk(client) as oai:
        with pytest.raises(openai.BadRequestError) as err:
            await oai.chat.completions.create(
                model="tiny", messages=HELLO, max_tokens=1, tools=[WEATHER]
            )
    assert err.value.body["param"] == "tools"  # type: ignore[index]
    assert err.value.body["code"] == "unsupported_parameter"  # type: ignore[index]
    card = (await (await client.get("/v1/models")).json())["data"][0]["metadata"]
    assert card["supports_tools"] is False


async def test_model_card_advertises_tools(client: Any) -> None:
    card = (await (await client.get("/v1/models")).json())["data"][0]["metadata"]
    assert card["supports_tools"] is True and card["supports_json_output"] is True


async def test_logit_bias_and_penalties(oai: openai.AsyncOpenAI, client: Any) -> None:
    from switchgear.worker.keys import SLOT

    tok = client.app[SLOT].engine.bundle.tokenizer
    token = tok("Hello", add_special_tokens=False)["input_ids"][0]
    resp = await oai.completions.create(
        model="tiny", prompt="The", max_tokens=4, temperature=0, logit_bias={str(token): 100}
    )
    assert resp.choices[0].text == tok.decode([token] * 4)
    # penalties apply to generated tokens only: the first token is still the biased one
    resp = await oai.completions.create(
        model="tiny",
        prompt="The",
        max_tokens=3,
        temperature=0,
        logit_bias={str(token): 30},
        frequency_penalty=2.0,
        presence_penalty=2.0,
        logprobs=0,
    )
    assert resp.choices[0].logprobs and resp.choices[0].logprobs.tokens
    assert resp.choices[0].logprobs.tokens[0] == tok.decode([token])
