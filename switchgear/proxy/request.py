"""The client's request, parsed and validated once at the gateway's edge.

:func:`read_request` reads the body of a proxied endpoint (``switchgear.bodies``: body limit,
JSON object), checks the fields the gateway relies on (:data:`RULES`), and keeps the
:class:`~switchgear.types.ParsedRequest` under ``keys.PARSED_REQUEST``. Whoever needs it
first parses it (the rate limiter, when it limits tokens, else the endpoint's handler);
every later reader (rate limiter, router, resume, shadow) uses that one object.

The rules are also the request schemas of ``/openapi.json`` (:func:`request_schema`), so the
document cannot promise less than the gateway checks. Unknown fields pass through to the
backend untouched, which is why every schema allows additional properties.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web

from switchgear.bodies import read_json_object
from switchgear.errors import InvalidRequest
from switchgear.proxy import keys
from switchgear.proxy.responses.request import PATH as RESPONSES_PATH
from switchgear.proxy.responses.request import to_chat
from switchgear.proxy.text import estimate_prompt_tokens, prompt_texts, required_capabilities
from switchgear.types import Endpoint, ParsedRequest

__all__ = ["ENDPOINTS", "RULES", "ParsedRequest", "describe", "parse", "read_request"]

#: The proxied routes, path → endpoint.
ENDPOINTS: Mapping[str, Endpoint] = {
    "/v1/chat/completions": "chat.completions",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
    # The Responses API is parsed as its chat translation (see ``read_request``).
    RESPONSES_PATH: "chat.completions",
}
_CAPPED = ("max_tokens", "max_completion_tokens")


@dataclass(frozen=True, slots=True)
class Rule:
    """One checked field: its JSON Schema (for /openapi.json), its test, and the 400 message.

    ``valid`` sees ``None`` for a missing field, so a required field is one whose test
    rejects ``None``.
    """

    name: str
    schema: Mapping[str, Any]
    valid: Callable[[Any], bool]
    message: str
    required: bool = False


def _positive_int(v: Any) -> bool:
    return v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1)


def _messages(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(m, dict) for m in v)


_TEXT_OR_LIST = {
    "anyOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": "string"}},
        {"type": "array", "items": {"type": "integer"}},
    ]
}
_MODEL = Rule(
    "model",
    {"type": "string", "minLength": 1},
    lambda v: isinstance(v, str) and bool(v),
    "you must provide a model parameter",
    required=True,
)
_MESSAGES = Rule(
    "messages",
    {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Message"}},
    _messages,
    "'messages' must be a non-empty array of message objects",
    required=True,
)


def _text_rule(name: str) -> Rule:
    return Rule(
        name,
        _TEXT_OR_LIST,
        lambda v: isinstance(v, str | list),
        f"'{name}' must be a string or an array",
        required=True,
    )


_OPTIONS: tuple[Rule, ...] = (
    Rule(
        "stream",
        {"type": "boolean"},
        lambda v: v is None or isinstance(v, bool),
        "'stream' must be a boolean",
    ),
    Rule(
        "stream_options",
        {"type": ["object", "null"]},
        lambda v: v is None or isinstance(v, dict),
        "'stream_options' must be an object",
    ),
    *(
        Rule(
            name,
            {"type": "integer", "minimum": 1},
            _positive_int,
            f"'{name}' must be a positive integer",
        )
        for name in ("max_tokens", "max_completion_tokens", "n")
    ),
)

#: The checks of each endpoint, in the order their errors are reported.
RULES: Mapping[Endpoint, tuple[Rule, ...]] = {
    "chat.completions": (_MODEL, _MESSAGES, *_OPTIONS),
    "completions": (_MODEL, _text_rule("prompt"), *_OPTIONS),
    "embeddings": (_MODEL, _text_rule("input"), *_OPTIONS),
}


def validate(body: Mapping[str, Any], endpoint: Endpoint) -> None:
    """Raise :class:`InvalidRequest` (naming the field) at the first rule ``body`` breaks."""
    for rule in RULES[endpoint]:
        if not rule.valid(body.get(rule.name)):
            raise InvalidRequest(rule.message, param=rule.name)


def describe(body: dict[str, Any], endpoint: Endpoint, cap: int | None = None) -> ParsedRequest:
    """The parsed form of ``body``, without checking it (fields of the wrong type are left out).

    ``cap`` lowers ``max_tokens`` / ``max_completion_tokens`` in the body to forward.
    """
    if cap is not None:
        over = {n: cap for n in _CAPPED if (_int(body.get(n)) or 0) > cap}
        if over:
            body = {**body, **over}
    messages = body.get("messages")
    text, last_user_text = prompt_texts(body)
    model = body.get("model")
    return ParsedRequest(
        endpoint=endpoint,
        model=model if isinstance(model, str) else "",
        body=body,
        stream=endpoint != "embeddings" and body.get("stream") is True,
        max_tokens=_int(body.get("max_completion_tokens")) or _int(body.get("max_tokens")),
        n=_int(body.get("n")),
        messages=tuple([m for m in messages if isinstance(m, dict)])
        if isinstance(messages, list)
        else (),
        text=text,
        last_user_text=last_user_text,
        capabilities=required_capabilities(body),
        prompt_tokens=estimate_prompt_tokens(body, text),
    )


def parse(body: dict[str, Any], endpoint: Endpoint, cap: int | None = None) -> ParsedRequest:
    """``body`` checked (:func:`validate`) and parsed (:func:`describe`)."""
    validate(body, endpoint)
    return describe(body, endpoint, cap)


async def read_request(request: web.Request, endpoint: Endpoint) -> ParsedRequest:
    """The request's :class:`ParsedRequest`, parsed on the first call and kept on the request.

    Raises the client's error (400, 413) when the body is not a valid request. A body sent
    to the Responses API is checked and translated into a chat request first
    (:mod:`switchgear.proxy.responses`).
    """
    if keys.PARSED_REQUEST in request:
        return request[keys.PARSED_REQUEST]
    limits = request.app[keys.SETTINGS].limits
    body = await read_json_object(request, limits.max_body_bytes)
    if request.path == RESPONSES_PATH:
        parsed = replace(parse(to_chat(body), endpoint, limits.max_tokens_cap), responses=body)
    else:
        parsed = parse(body, endpoint, limits.max_tokens_cap)
    request[keys.PARSED_REQUEST] = parsed
    return parsed


def request_schema(endpoint: Endpoint) -> dict[str, Any]:
    """The JSON Schema of the fields the gateway checks on ``endpoint``."""
    rules = RULES[endpoint]
    return {
        "type": "object",
        "required": [r.name for r in rules if r.required],
        "additionalProperties": True,
        "properties": {r.name: dict(r.schema) for r in rules},
    }


def _int(v: Any) -> int | None:
    """``v`` when it is a positive integer, else None."""
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 1 else None
