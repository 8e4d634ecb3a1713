"""The parsed request: its rules, the schemas /openapi.json derives from them, one parse per
request, and one context per upstream attempt."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pytest

from switchgear import hookimpl
from switchgear.errors import InvalidRequest
from switchgear.proxy import request as parsed_request
from switchgear.proxy.ratelimit import token_cost
from switchgear.proxy.request import RULES, describe, parse
from switchgear.proxy.text import estimate_prompt_tokens, prompt_text, prompt_texts
from switchgear.proxy.views.openapi import document
from switchgear.types import Endpoint, ModelResolution, RequestContext
from tests.fakes import Fault
from tests.proxy.conftest import backends

MSG = [{"role": "user", "content": "hi"}]
VALID: dict[Endpoint, dict[str, Any]] = {
    "chat.completions": {"model": "m1", "messages": MSG},
    "completions": {"model": "m1", "prompt": "hi"},
    "embeddings": {"model": "m1", "input": ["a", "b"]},
}
SCHEMA_NAMES = {
    "chat.completions": "ChatCompletionRequest",
    "completions": "CompletionRequest",
    "embeddings": "EmbeddingRequest",
}


def breaking(schema: dict[str, Any]) -> Any:
    """A value that the JSON Schema ``schema`` rejects (for the kinds /openapi.json uses)."""
    if "anyOf" in schema:
        return 5 if all(s.get("type") != "integer" for s in schema["anyOf"]) else {"x": 1}
    kind = schema["type"]
    if kind == "string":
        return "" if schema.get("minLength") else 5
    if kind == "integer":
        return schema["minimum"] - 1
    if kind == "array":
        return [] if schema.get("minItems") else "not an array"
    return "not an object" if kind == ["object", "null"] else "yes"


@pytest.mark.parametrize("endpoint", list(VALID))
def test_every_documented_constraint_is_checked_with_its_field_named(endpoint: Endpoint) -> None:
    schema = document()["components"]["schemas"][SCHEMA_NAMES[endpoint]]
    checked = {rule.name for rule in RULES[endpoint]}
    assert set(schema["required"]) <= checked and checked <= set(schema["properties"])
    assert parse(dict(VALID[endpoint]), endpoint).model == "m1"
    for name in checked:
        body = {**VALID[endpoint], name: breaking(schema["properties"][name])}
        with pytest.raises(InvalidRequest) as info:
            parse(body, endpoint)
        assert info.value.param == name
    for name in schema["required"]:
        body = {k: v for k, v in VALID[endpoint].items() if k != name}
        with pytest.raises(InvalidRequest) as info:
            parse(body, endpoint)
        assert info.value.param == name


def test_first_broken_rule_is_reported_with_the_gateway_messages() -> None:
    cases = [
        ({"messages": MSG}, "you must provide a model parameter"),
        ({"model": "m1", "messages": ["hi"]}, "'messages' must be a non-empty array"),
        ({"model": "m1", "messages": MSG, "stream": "yes", "n": 0}, "'stream' must be a boolean"),
        ({"model": "m1", "messages": MSG, "max_tokens": True}, "'max_tokens' must be a positive"),
    ]
    for body, message in cases:
        with pytest.raises(InvalidRequest, match=message):
            parse(body, "chat.completions")
    with pytest.raises(InvalidRequest, match="'prompt' must be a string or an array"):
        parse({"model": "m1", "prompt": None}, "completions")


def test_parsed_fields_cap_and_one_estimate() -> None:
    body = {
        "model": "auto",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "长城有多长?"},
        ],
        "max_tokens": 5000,
        "max_completion_tokens": 900,
        "stream": True,
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "extra": {"kept": True},
    }
    p = parse(body, "chat.completions", cap=1000)
    assert p.body["max_tokens"] == 1000 and p.body["max_completion_tokens"] == 900
    assert body["max_tokens"] == 5000  # the client's dict is not changed
    assert p.body["extra"] == {"kept": True} and p.stream is True
    assert p.max_tokens == 900 and p.n is None and len(p.messages) == 2
    assert p.last_user_text == "长城有多长?" and p.capabilities == ("tools",)
    assert p.prompt_tokens == estimate_prompt_tokens(body)
    assert token_cost(p) == p.prompt_tokens + 900  # the limiter uses the same estimate
    emb = parse({"model": "e", "input": [[1, 2, 3], [4]], "stream": True}, "embeddings")
    assert emb.stream is False and emb.prompt_tokens == 4  # token ids count one each
    assert token_cost(None) == 0


@pytest.mark.parametrize(
    "body",
    [
        {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
        {"messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": "x"}]},
        {
            "messages": [
                "not a message",
                {"role": "user", "content": [{"type": "text", "text": "t"}]},
            ]
        },
        {"messages": [{"role": "user"}, {"role": "tool", "content": 3}]},
        {"messages": []},
        {"messages": "text"},
        {"prompt": ["p1", 2, "p2"]},
        {"input": "i"},
        {},
    ],
)
def test_prompt_texts_is_the_prompt_and_the_last_user_text(body: dict[str, Any]) -> None:
    assert prompt_texts(body) == (prompt_text(body), prompt_text(body, last_user_only=True))


def test_describe_never_raises_on_a_partial_body() -> None:
    p = describe({"user": "u1", "max_tokens": "many"}, "chat.completions")
    assert (p.model, p.max_tokens, p.messages, p.text) == ("", None, (), "")


async def test_the_body_is_parsed_once_when_the_limiter_needs_it(
    upstream, gateway, http, monkeypatch
):
    calls: list[Endpoint] = []
    real = parsed_request.parse

    def counting(body: dict[str, Any], endpoint: Endpoint, cap: int | None = None) -> Any:
        calls.append(endpoint)
        return real(body, endpoint, cap)

    monkeypatch.setattr(parsed_request, "parse", counting)
    seen: list[RequestContext] = []

    class Spy:
        @hookimpl
        def select_model(self, ctx, models):
            seen.append(ctx)

    up = await upstream("m1")
    gw = await gateway(
        {"backends": backends(up), "rate_limits": {"tokens_per_minute": 10_000}}, plugins=(Spy(),)
    )
    body = {"model": "m1", "messages": MSG, "max_tokens": 10_000_000}
    async with http.post(gw.url + "/v1/chat/completions", json=body) as r:
        assert r.status == 200
    assert calls == ["chat.completions"]
    parsed = seen[0].request
    assert parsed is not None and parsed.body is seen[0].body
    assert up.requests[0].body["max_tokens"] == body["max_tokens"]  # no cap configured
    async with http.post(gw.url + "/v1/chat/completions", json={"model": "m1"}) as r:
        assert r.status == 400 and (await r.json())["error"]["param"] == "messages"
    assert calls == ["chat.completions"] * 2


async def test_each_attempt_has_its_own_context_and_the_request_keeps_its_own(upstream, gateway):
    attempts: list[RequestContext] = []
    routing: list[RequestContext] = []

    class Spy:
        @hookimpl
        def select_model(self, ctx, models):
            routing.append(ctx)

        @hookimpl
        def rewrite_request(self, ctx, body, backend):
            attempts.append(ctx)
            return None

    m1, m2 = await upstream("m1"), await upstream("m2", name="two")
    m1.always = Fault(status=500)
    gw = await gateway(
        {"backends": backends(m1, m2), "models": {"m1": {"fallback": ["m2"]}}}, plugins=(Spy(),)
    )
    async with gw.openai() as client:
        raw = await client.chat.completions.with_raw_response.create(model="m1", messages=MSG)
    assert raw.headers["x-switchgear-fallback"] == "m1 -> m2"
    assert [c.model for c in attempts] == ["m1"] * 3 + ["m2"]
    assert attempts[0] is not attempts[-1]  # the m2 attempt did not rewrite m1's context
    assert routing[0].model == "m1"  # nothing changed the context select_model saw
    assert all(c.attributes is routing[0].attributes for c in attempts)
    resolution = attempts[-1].resolution
    assert resolution is not None and (resolution.requested, resolution.model) == ("m1", "m1")
    assert resolution.answered_model == "m2" and resolution.backend is not None
    assert resolution.backend.url == m2.url


def test_derived_contexts_carry_every_field() -> None:
    base = RequestContext(
        "r1",
        "completions",
        {"model": "a"},
        "a",
        "a",
        stream=True,
        api_key_id="key-0",
        route_rule="old",
        attributes={"k": 1},
        request=describe({"model": "a", "prompt": "hi"}, "completions"),
    )
    resolution = ModelResolution("a", "b", "rule:x")
    changed = {"for_model": {"model"}, "routed": {"model", "route_rule", "resolution"}}
    for made, names in (
        (base.for_model("c"), changed["for_model"]),
        (base.routed(resolution), changed["routed"]),
    ):
        for f in fields(RequestContext):
            if f.name not in names:
                assert getattr(made, f.name) is getattr(base, f.name), f.name
    assert base.for_model("c").model == "c" and base.model == "a"
    routed = base.routed(resolution)
    assert (routed.model, routed.route_rule, routed.resolution) == ("b", "rule:x", resolution)
