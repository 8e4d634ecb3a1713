"""Prompts too long for a model: checked before sending when its context is known, and a
backend's context-length error goes to the fallback when it is not."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.fakes import Fault
from tests.proxy.conftest import backends

LONG = [{"role": "user", "content": "word " * 700}]  # about 1000 tokens by the estimate


async def chat(http, gw, messages: list[dict[str, Any]]) -> tuple[int, dict[str, Any], dict]:
    body = {"model": "m1", "messages": messages}
    async with http.post(gw.url + "/v1/chat/completions", json=body) as r:
        return r.status, dict(r.headers), orjson.loads(await r.read())


async def test_a_prompt_over_the_known_context_goes_to_a_larger_fallback(upstream, gateway, http):
    a = await upstream("m1", name="a")
    b = await upstream("m2", name="b")
    models = {"m1": {"context_length": 256, "fallback": ["m2"]}, "m2": {"context_length": 8192}}
    gw = await gateway({"backends": backends(a, b), "models": models})
    status, headers, body = await chat(http, gw, LONG)
    assert status == 200 and body["choices"][0]["message"]["content"] == "hello from b"
    assert headers["x-switchgear-fallback"] == "m1 -> m2"
    assert a.requests == []  # never sent to the model that cannot take it
    status, _, body = await chat(http, gw, [{"role": "user", "content": "short"}])
    assert status == 200 and body["choices"][0]["message"]["content"] == "hello from a"


async def test_a_prompt_over_every_known_context_is_a_400_before_sending(upstream, gateway, http):
    a = await upstream("m1", name="a")
    b = await upstream("m2", name="b")
    models = {"m1": {"context_length": 256, "fallback": ["m2"]}, "m2": {"context_length": 128}}
    gw = await gateway({"backends": backends(a, b), "models": models})
    status, _, body = await chat(http, gw, LONG)
    assert status == 400 and body["error"]["code"] == "context_length_exceeded"
    assert body["error"]["param"] == "messages" and "256" in body["error"]["message"]
    assert a.requests == [] and b.requests == []


OPENAI = {"message": "too long", "type": "invalid_request_error", "code": "context_length_exceeded"}
VLLM = (
    "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens "
    "(4900 in the messages, 100 in the completion)."
)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, OPENAI),
        (400, {"message": VLLM, "type": "BadRequestError", "param": None, "code": 400}),
        (422, "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 2048"),
    ],
    ids=["openai-code", "vllm-message", "tgi-422"],
)
async def test_a_context_error_without_configured_lengths_uses_the_fallback(
    upstream, gateway, http, status, error
):
    a = await upstream("m1", name="a")
    b = await upstream("m2", name="b")
    a.always = Fault(status=status, error=error)  # type: ignore[arg-type]
    gw = await gateway({"backends": backends(a, b), "models": {"m1": {"fallback": ["m2"]}}})
    status_, headers, body = await chat(http, gw, LONG)
    assert status_ == 200 and body["choices"][0]["message"]["content"] == "hello from b"
    assert headers["x-switchgear-fallback"] == "m1 -> m2" and len(a.requests) == 1


async def test_vllm_top_level_context_error_uses_the_fallback(upstream, gateway, http):
    a = await upstream("m1", name="a")
    b = await upstream("m2", name="b")
    # older vLLM answers {"object": "error", "message": ...} without an "error" object
    a.always = Fault(status=400, error_body={"object": "error", "message": VLLM, "code": 400})
    gw = await gateway({"backends": backends(a, b), "models": {"m1": {"fallback": ["m2"]}}})
    status, _, body = await chat(http, gw, LONG)
    assert status == 200 and body["choices"][0]["message"]["content"] == "hello from b"


async def test_a_context_error_with_no_fallback_passes_through(upstream, gateway, http):
    a = await upstream("m1", name="a")
    a.always = Fault(status=400, error=OPENAI)
    gw = await gateway({"backends": backends(a)})
    status, _, body = await chat(http, gw, LONG)
    assert status == 400 and body["error"]["code"] == "context_length_exceeded"
