"""POST /v1/completions."""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web
from pydantic import Field

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
from switchgear.worker.views.params import per_choice, text_logprobs


class CompletionBody(GenerationBody):
    prompt: str | list[str] | list[int]
    logprobs: int | None = Field(None, ge=0, le=20)


async def completions(request: web.Request) -> web.StreamResponse:
    body: CompletionBody = await parse(request, CompletionBody)
    engine = await request.app[SLOT].current()
    bundle = engine.bundle
    check_model(request, body.model, bundle.name)
    if isinstance(body.prompt, list) and body.prompt and isinstance(body.prompt[0], int):
        ids = list(body.prompt)
    else:
        if isinstance(body.prompt, list) and len(body.prompt) != 1:
            raise InvalidRequest("only one prompt per request is supported", param="prompt")
        text = str(body.prompt[0] if isinstance(body.prompt, list) else body.prompt)
        ids = await engine.prepare(lambda b: encode(b.tokenizer, text, b.context_length, "prompt"))
    vocab = len(bundle.tokenizer)
    params = sampling(request, body, len(ids), bundle.context_length, "prompt", vocab)
    params = dataclasses.replace(params, logprobs=body.logprobs)
    choices = per_choice(params, body.n)
    cid, created, model = completion_id("cmpl"), now(), bundle.name
    head = {"id": cid, "object": "text_completion", "created": created, "model": model}

    if body.stream:
        include_usage = bool((body.stream_options or {}).get("include_usage"))

        async def chunks() -> Any:
            prompt, done = len(ids), 0
            async for i, ev in events(request, ids, choices):
                lp = text_logprobs(list(ev.logprobs)) if body.logprobs is not None else None
                yield {
                    **head,
                    "choices": [
                        {
                            "index": i,
                            "text": ev.text,
                            "logprobs": lp,
                            "finish_reason": ev.finish_reason,
                        }
                    ],
                }
                if ev.finish_reason:
                    prompt, done = ev.prompt_tokens, done + ev.completion_tokens
            if include_usage:
                yield {**head, "choices": [], "usage": usage(prompt, done)}

        return await stream_sse(request, chunks())
    results, used = await collect(request, ids, choices)
    return json_response(
        {
            **head,
            "choices": [
                {
                    "index": i,
                    "text": c.text,
                    "logprobs": text_logprobs(c.logprobs) if body.logprobs is not None else None,
                    "finish_reason": c.finish_reason,
                }
                for i, c in enumerate(results)
            ],
            "usage": used,
        }
    )
