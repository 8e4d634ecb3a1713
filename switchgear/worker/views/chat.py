"""POST /v1/chat/completions (the tokenizer's chat template).

``continue_final_message: true`` (with ``add_generation_prompt: false``), as vLLM accepts it:
the last message must be the assistant's and the answer continues its text instead of
starting a new turn. The gateway uses it to resume a stream cut on another backend.

``tools`` go to the template (``apply_chat_template(tools=...)``) and the answer is parsed for
calls (:mod:`switchgear.worker.tools`); ``response_format`` and forced tool calls constrain
decoding (:mod:`switchgear.worker.structured`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from switchgear.errors import InvalidRequest
from switchgear.worker.decode import eos_ids
from switchgear.worker.keys import SLOT
from switchgear.worker.structured import Constraint
from switchgear.worker.tools import detect_format
from switchgear.worker.views.chat_stream import stream_chat
from switchgear.worker.views.chat_tools import ToolPlan, answer, plan
from switchgear.worker.views.common import (
    GenerationBody,
    check_model,
    collect,
    completion_id,
    encode,
    json_response,
    now,
    parse,
    sampling,
)
from switchgear.worker.views.params import chat_logprobs, per_choice


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    name: str | None = None


class ChatBody(GenerationBody):
    messages: list[Message]
    continue_final_message: bool = False
    add_generation_prompt: bool = True
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)


def _plain(messages: list[Message]) -> list[dict[str, Any]]:
    plain = []
    for m in messages:
        content = m.content
        if isinstance(content, list):
            content = "".join(str(p.get("text", "")) for p in content if p.get("type") == "text")
        item: dict[str, Any] = {"role": m.role, "content": content or ""}
        if m.tool_calls:
            item["tool_calls"] = m.tool_calls
        if m.tool_call_id:
            item["tool_call_id"] = m.tool_call_id
        if m.name:
            item["name"] = m.name
        plain.append(item)
    return plain


def _apply(tokenizer: Any, plain: list[dict[str, Any]], tools: Any, final: bool) -> str:
    kw: dict[str, Any] = {"tokenize": False}
    if tools:
        kw["tools"] = tools
    if final:
        kw.update(add_generation_prompt=False, continue_final_message=True)
    else:
        kw["add_generation_prompt"] = True
    return str(tokenizer.apply_chat_template(plain, **kw))


def render(
    tokenizer: Any,
    messages: list[Message],
    *,
    continue_final: bool = False,
    context: int | None = None,
    tools: list[dict[str, Any]] | None = None,
) -> list[int]:
    """The prompt's token ids: the chat template applied, then tokenized (through
    :func:`encode`, which refuses a prompt far beyond ``context``, when one is given)."""
    if not messages:
        raise InvalidRequest("messages must not be empty", param="messages")
    if not getattr(tokenizer, "chat_template", None):
        raise InvalidRequest(
            "this model's tokenizer has no chat template and no adapter supplies one; "
            "use /v1/completions or add a chat_template to the tokenizer",
            param="messages",
            code="chat_template_missing",
        )
    plain = _plain(messages)
    if continue_final and (plain[-1]["role"] != "assistant" or not plain[-1]["content"]):
        raise InvalidRequest(
            "continue_final_message needs a final assistant message with text",
            param="messages",
        )
    text = _apply(tokenizer, plain, tools, continue_final)
    if tools and text == _apply(tokenizer, plain, None, continue_final):
        raise InvalidRequest(
            "this model's chat template cannot take tools",
            param="tools",
            code="unsupported_parameter",
        )
    if context is None:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return encode(tokenizer, text, context, "messages", add_special_tokens=False)


def _prepare(body: ChatBody, tp: ToolPlan) -> Any:
    def run(b: Any) -> tuple[list[int], Constraint | None]:
        ids = render(
            b.tokenizer,
            body.messages,
            continue_final=body.continue_final_message,
            context=b.context_length,
            tools=tp.tools,
        )
        if not tp.constrained:
            return ids, None
        return ids, Constraint(b.tokenizer, tp.schema, eos_ids(b))

    return run


async def chat_completions(request: web.Request) -> web.StreamResponse:
    body: ChatBody = await parse(request, ChatBody)
    engine = await request.app[SLOT].current()
    bundle = engine.bundle
    check_model(request, body.model, bundle.name)
    if body.continue_final_message and body.add_generation_prompt:
        raise InvalidRequest(
            "continue_final_message and add_generation_prompt cannot both be true",
            param="add_generation_prompt",
        )
    if body.top_logprobs is not None and not body.logprobs:
        raise InvalidRequest("top_logprobs needs logprobs: true", param="top_logprobs")
    fmt = detect_format(
        bundle.tokenizer, getattr(getattr(bundle.model, "config", None), "model_type", None)
    )
    tp = plan(body.tools, body.tool_choice, body.parallel_tool_calls, body.response_format, fmt)
    ids, constraint = await engine.prepare(_prepare(body, tp))
    params = sampling(
        request, body, len(ids), bundle.context_length, "messages", len(bundle.tokenizer)
    )
    params = dataclasses.replace(
        params,
        logprobs=(body.top_logprobs or 0) if body.logprobs else None,
        constraint=constraint,
    )
    choices = per_choice(params, body.n)
    head = {"id": completion_id("chatcmpl"), "created": now(), "model": bundle.name}
    if body.stream:
        include_usage = bool((body.stream_options or {}).get("include_usage"))
        return await stream_chat(request, head, ids, choices, tp, body.logprobs, include_usage)
    results, used = await collect(request, ids, choices)
    out = []
    for i, c in enumerate(results):
        content, calls = answer(c.text, tp)
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            message["tool_calls"] = [call.openai() for call in calls]
        out.append(
            {
                "index": i,
                "message": message,
                "logprobs": chat_logprobs(c.logprobs) if body.logprobs else None,
                "finish_reason": "tool_calls" if calls else c.finish_reason,
            }
        )
    return json_response({**head, "object": "chat.completion", "choices": out, "usage": used})
