"""POST /v1/completions."""

from __future__ import annotations

from typing import Any

from aiohttp import web

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


class CompletionBody(GenerationBody):
    prompt: str | list[str] | list[int]


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
    params = sampling(request, body, len(ids), bundle.context_length, "prompt")
    cid, created, model = completion_id("cmpl"), now(), bundle.name

    if body.stream:
        include_usage = bool((body.stream_options or {}).get("include_usage"))

        async def chunks() -> Any:
            async for ev in events(request, ids, params):
                yield {
                    "id": cid,
                    "object": "text_completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "text": ev.text,
                            "logprobs": None,
                            "finish_reason": ev.finish_reason,
                        }
                    ],
                }
                if ev.finish_reason and include_usage:
                    yield {
                        "id": cid,
                        "object": "text_completion",
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
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [
                {"index": 0, "text": text, "logprobs": None, "finish_reason": last.finish_reason}
            ],
            "usage": usage(last.prompt_tokens, last.completion_tokens),
        }
    )
