"""Shared pieces of the OpenAI routes: request bodies, model check, generation, SSE."""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from switchgear.bodies import read_json_object
from switchgear.errors import ContextLengthExceeded, InvalidRequest, ModelNotFound
from switchgear.worker.engine import EngineClosed
from switchgear.worker.generation import GenEvent, SamplingParams, TokenLogprob
from switchgear.worker.keys import SETTINGS, SLOT
from switchgear.worker.views.params import logit_bias, refuse_unknown

_INLINE_BYTES = 64 * 1024
_PREFIX_CHARS_PER_TOKEN = 16  # how much text :func:`encode` samples per token of context
_CUT_MARGIN = 16
_CHUNK = 1000


class GenerationBody(BaseModel):
    """Fields common to chat and text completions; any other field is refused
    (:func:`switchgear.worker.views.params.refuse_unknown`)."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    n: int = Field(1, ge=1, le=16)
    user: str | None = None
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None


async def parse(request: web.Request, model: type[BaseModel]) -> Any:
    """The body read by :func:`switchgear.bodies.read_json_object`, validated as ``model``.

    Validating a large body (tens of thousands of messages) takes long enough to stall the
    event loop, so bodies over ``_INLINE_BYTES`` (or of unknown length) are validated on a
    thread.
    """
    data = await read_json_object(request, request.app[SETTINGS].limits.max_body_bytes)
    size = request.content_length
    if size is not None and size <= _INLINE_BYTES:
        body = _validate(model, data)
    else:
        body = await asyncio.to_thread(_validate, model, data)
    refuse_unknown(body)
    return body


def _validate(model: type[BaseModel], data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(_messages_in_chunks(model, data))
    except ValidationError as exc:
        raise _invalid(exc) from None


def _messages_in_chunks(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with a long ``messages`` list validated ``_CHUNK`` items at a time.

    One pydantic call holds the GIL until it returns, so validating 60,000 messages at once
    stalled the event loop for over a second even from another thread; between chunks the
    loop runs. Validated messages are model instances, which the final validation keeps.
    """
    field = model.model_fields.get("messages")
    messages = data.get("messages")
    if field is None or not isinstance(messages, list) or len(messages) <= _CHUNK:
        return data
    annotation: Any = field.annotation
    adapter = _adapter(annotation)
    validated: list[Any] = []
    for start in range(0, len(messages), _CHUNK):
        try:
            validated += adapter.validate_python(messages[start : start + _CHUNK])
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ["messages", start + int(err["loc"][0]), *err["loc"][1:]] if err["loc"] else []
            param = ".".join(str(p) for p in loc) or "messages"
            raise InvalidRequest(f"{param}: {err['msg']}", param=param) from None
    return {**data, "messages": validated}


@functools.cache
def _adapter(annotation: Any) -> TypeAdapter[Any]:
    return TypeAdapter(annotation)


def _invalid(exc: ValidationError) -> InvalidRequest:
    err = exc.errors()[0]
    param = ".".join(str(p) for p in err["loc"]) or None
    return InvalidRequest(f"{param}: {err['msg']}" if param else err["msg"], param=param)


def encode(tokenizer: Any, text: str, context: int, param: str, **kw: Any) -> list[int]:
    """The token ids of ``text``, refusing (400 ``context_length_exceeded``) a text far longer
    than ``context`` after tokenizing only a prefix of it.

    Tokenizing costs time in the length of the text (a 3.9 MB prompt took tens of seconds on
    one core, on the thread every request is prepared on). If a prefix already has more
    tokens than the context holds, so does the whole text: the rest is never tokenized. The
    margin covers a token split differently where the prefix is cut.
    """
    limit = context * _PREFIX_CHARS_PER_TOKEN
    if len(text) > limit:
        head = len(tokenizer(text[:limit], **kw)["input_ids"])
        if head > context + _CUT_MARGIN:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {context} tokens; your prompt has "
                f"more than {head - _CUT_MARGIN} tokens.",
                param=param,
            )
    return list(tokenizer(text, **kw)["input_ids"])


def check_model(request: web.Request, name: str | None, served: str) -> None:
    if name and name != served:
        raise ModelNotFound(
            f"The model `{name}` does not exist. Available models: {served}", param="model"
        )


def sampling(
    request: web.Request,
    body: GenerationBody,
    prompt_len: int,
    context: int,
    param: str,
    vocab: int = 0,
) -> SamplingParams:
    if prompt_len >= context:
        raise ContextLengthExceeded(
            f"This model's maximum context length is {context} tokens; your prompt has {prompt_len} tokens.",
            param=param,
        )
    default = request.app[SETTINGS].worker.max_tokens_default  # type: ignore[union-attr]
    wanted = body.max_completion_tokens or body.max_tokens or default
    if prompt_len + wanted > context and (body.max_tokens or body.max_completion_tokens):
        raise ContextLengthExceeded(
            f"This model's maximum context length is {context} tokens; you requested {prompt_len + wanted} "
            f"tokens ({prompt_len} in the prompt, {wanted} for the completion).",
            param="max_tokens",
        )
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    if len(stop) > 4:
        raise InvalidRequest("at most 4 stop sequences are allowed", param="stop")
    return SamplingParams(
        max_tokens=min(wanted, context - prompt_len),
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        stop=stop,
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
        logit_bias=logit_bias(body.logit_bias, vocab),
    )


async def events(
    request: web.Request, ids: list[int], params: list[SamplingParams]
) -> AsyncIterator[tuple[int, GenEvent]]:
    """``(choice, event)`` generated on the current engine, one choice per ``params``; a
    request that meets a closing engine moves to the new one."""
    slot = request.app[SLOT]
    for _ in range(3):
        engine = await slot.current()
        gen = engine.generate_many(ids, params)
        try:
            first = await gen.__anext__()
        except EngineClosed:
            await gen.aclose()
            continue
        try:
            yield first
            async for ev in gen:
                yield ev
        finally:
            await gen.aclose()
        return
    raise EngineClosed("no engine accepted the request")


def completion_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


@dataclass(eq=False)
class Choice:
    """One generated choice, collected."""

    parts: list[str] = field(default_factory=list)
    finish_reason: str = "stop"
    completion_tokens: int = 0
    logprobs: list[TokenLogprob] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.parts)


async def collect(
    request: web.Request, ids: list[int], params: list[SamplingParams]
) -> tuple[list[Choice], dict[str, int]]:
    """Every choice to its end, and the request's usage (the prompt counted once)."""
    choices = [Choice() for _ in params]
    prompt = len(ids)
    async for i, ev in events(request, ids, params):
        c = choices[i]
        c.parts.append(ev.text)
        c.logprobs.extend(ev.logprobs)
        if ev.finish_reason is not None:
            c.finish_reason, c.completion_tokens = ev.finish_reason, ev.completion_tokens
            prompt = ev.prompt_tokens
    return choices, usage(prompt, sum(c.completion_tokens for c in choices))


async def stream_sse(
    request: web.Request, chunks: AsyncIterator[dict[str, Any]]
) -> web.StreamResponse:
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await resp.prepare(request)
    async for chunk in chunks:
        await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def now() -> int:
    return int(time.time())
