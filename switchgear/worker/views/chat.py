"""POST /v1/chat/completions (the tokenizer's chat template).

``continue_final_message: true`` (with ``add_generation_prompt: false``), as vLLM accepts it:
the last message must be the assistant's and the answer continues its text instead of
starting a new turn. The gateway uses it to resume a stream cut on another backend.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from switchgear.errors import InvalidRequest
from switchgear.worker.keys import SLOT
from switchgear.worker.views.common import (
    GenerationBody,
    check_model,
    collect,
    completion_id,
    encode,
    events,
    json_response,
    now,
    parse,
    sampling,
    stream_sse,
    usage,
)


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatBody(GenerationBody):
    messages: list[Message]
    continue_final_message: bool = False
    add_generation_prompt: bool = True


def render(
    tokenizer: Any,
    messages: list[Message],
    *,
    continue_final: bool = False,
    context: int | None = None,
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
    plain = []
    for m in messages:
        content = m.content
        if isinstance(content, list):
            content = "".join(str(p.get("text", "")) for p in content if p.get("type") == "text")
        plain.append({"role": m.role, "content": content or ""})
    if continue_final:
        if plain[-1]["role"] != "assistant" or not plain[-1]["content"]:
            raise InvalidRequest(
                "continue_final_message needs a final assistant message with text",
                param="messages",
            )
        text = tokenizer.apply_chat_template(
            plain, tokenize=False, add_generation_prompt=False, continue_final_message=True
        )
    else:
        text = tokenizer.apply_chat_template(plain, tokenize=False, add_generation_prompt=True)
    if context is None:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return encode(tokenizer, text, context, "messages", add_special_tokens=False)


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
    ids = await engine.prepare(
        lambda b: render(
            b.tokenizer,
            body.messages,
            continue_final=body.continue_final_message,
            context=b.context_length,
        )
    )
    params = sampling(request, body, len(ids), bundle.context_length, "messages")
    cid, created, model = completion_id("chatcmpl"), now(), bundle.name

    if body.stream:
        include_usage = bool((body.stream_options or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
            return {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }

        async def chunks() -> Any:
            yield chunk({"role": "assistant", "content": ""}, None)
            async for ev in events(request, ids, params):
                yield chunk({"content": ev.text} if ev.text else {}, ev.finish_reason)
                if ev.finish_reason and include_usage:
                    yield {
                        "id": cid,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "choices": [],
                        "usage": usage(ev.prompt_tokens, ev.completion_tokens),
                    }

        return await stream_sse(request, chunks())
    text, last = await collect(request, ids, params)
    return json_response(
        {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": last.finish_reason,
                }
            ],
            "usage": usage(last.prompt_tokens, last.completion_tokens),
        }
    )
